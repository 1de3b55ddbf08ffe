"""`cringe submit`, `jobs`, `status`, `watch` and `cancel` against a live server."""

from __future__ import annotations

import json
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.auth import create_api_key
from service.cli import main
from service.client import api as client_api
from service.client.api import ApiClient
from service.client.config import ClientConfig
from tests.service.conftest import LiveServer, fake_job_command, make_settings, wait_for

SPEC = "kind: train\ndataset:\n  path: pairs.jsonl.gz\n"


@pytest.fixture
def server(shared_database_url: str, data_root: Path, tmp_path: Path) -> Iterator[LiveServer]:
    settings = make_settings(
        shared_database_url, data_root, tmp_path, dispatcher_enabled=True,
        job_command=fake_job_command("--steps", "4", "--delay", "0.1"),
    )
    with LiveServer(settings) as live:
        yield live


@pytest.fixture
def cli_env(server: LiveServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    """Point the client at the server with a key of a new project; return the key."""
    _, key = create_api_key(server.app.state.db, f"cli-{uuid.uuid4().hex[:8]}")
    monkeypatch.setenv("CRINGE_API_URL", server.url)
    monkeypatch.setenv("CRINGE_API_KEY", key)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "no-config"))
    monkeypatch.delenv("CRINGE_CONFIG", raising=False)
    monkeypatch.setattr(client_api, "RETRY_BACKOFF_S", 0.0)
    return key


@pytest.fixture
def spec_file(data_root: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A spec with a relative data path, in the data root, which is the current folder."""
    monkeypatch.chdir(data_root)
    path = data_root / f"spec-{uuid.uuid4().hex[:8]}.yaml"
    path.write_text(SPEC, encoding="utf-8")
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return code, captured.out, captured.err


def test_submit_watch_status_jobs(cli_env: str, spec_file: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "submit", str(spec_file), "--metadata", "team=alignment")
    assert code == 0, err
    job_id = out.strip()
    assert job_id.startswith("job_")
    assert f"submitted train job {job_id}" in err

    code, out, err = run(capsys, "watch", job_id)
    assert code == 0, err
    assert "job_succeeded" in out or "succeeded" in out
    assert "succeeded" in err.splitlines()[-1]
    assert "[" + "#" * 30 + "] 4/4" in err

    code, out, _ = run(capsys, "status", job_id)
    assert code == 0
    assert f"job       {job_id} (train)" in out
    assert "status    succeeded" in out
    assert "step 4/4" in out

    code, out, _ = run(capsys, "jobs")
    assert code == 0
    header, row = out.splitlines()[:2]
    assert header.split() == ["ID", "KIND", "STATUS", "PHASE", "PROGRESS", "ROUND", "WIN",
                              "RATE", "UPDATED"]
    assert row.split()[:3] == [job_id, "train", "succeeded"]


def test_submit_sends_absolute_data_path(cli_env: str, spec_file: Path, data_root: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "submit", str(spec_file), "--json")
    assert code == 0, err
    job = json.loads(out)
    assert job["spec"]["dataset"]["path"] == str((data_root / "pairs.jsonl.gz").resolve())
    assert job["metadata"] == {}


def test_submit_invalid_spec_lists_fields(cli_env: str, spec_file: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    spec_file.write_text(SPEC + "loss:\n  name: pairwise_cringe\n  temperature: -1\n"
                         "  beta: 0.1\n", encoding="utf-8")
    code, out, err = run(capsys, "submit", str(spec_file))
    assert code == 2
    assert out == ""
    assert err.startswith("error: ")
    assert "/loss/temperature" in err
    assert "/loss/beta" in err


def test_submit_unreadable_spec_file(cli_env: str, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "submit", str(tmp_path / "missing.yaml"))
    assert code == 2
    assert "cannot read spec file" in err

    listed = tmp_path / "list.yaml"
    listed.write_text("- 1\n- 2\n", encoding="utf-8")
    code, _, err = run(capsys, "submit", str(listed))
    assert code == 2
    assert "not a mapping" in err


def test_metadata_without_equals_rejected(cli_env: str, spec_file: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "submit", str(spec_file), "--metadata", "novalue")
    assert code == 2
    assert "--metadata 'novalue' is not NAME=VALUE" in err


def test_cancel_running_then_finished(cli_env: str, server: LiveServer, spec_file: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "submit", str(spec_file))
    job_id = out.strip()
    code, out, err = run(capsys, "cancel", job_id)
    assert code == 0, err
    assert out.startswith(f"job {job_id} is ")

    code, _, err = run(capsys, "watch", job_id)
    assert code == 3
    assert "cancelled" in err

    code, out, err = run(capsys, "cancel", job_id)
    assert code == 0, err
    assert f"job {job_id} is cancelled" in out


def test_cancel_succeeded_job_conflict(cli_env: str, spec_file: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = run(capsys, "submit", str(spec_file), "--watch")
    job_id = out.strip().splitlines()[0]
    code, _, err = run(capsys, "cancel", job_id)
    assert code == 1
    assert err.startswith("error: ")
    assert "succeeded" in err
    assert "HTTP 409" in err


def test_unknown_job_is_not_found(cli_env: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "status", "job_01ARZ3NDEKTSV4RRFFQ69G5FAV")
    assert code == 1
    assert "HTTP 404" in err


def test_wrong_key_is_reported(cli_env: str, monkeypatch: pytest.MonkeyPatch,
                               capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("CRINGE_API_KEY", "ck_not-a-real-key")
    code, _, err = run(capsys, "jobs")
    assert code == 1
    assert "HTTP 401" in err


def test_missing_key_names_the_variable(cli_env: str, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("CRINGE_API_KEY")
    code, _, err = run(capsys, "jobs")
    assert code == 2
    assert "CRINGE_API_KEY" in err
    assert "cringe keys create" in err


def test_unreachable_server_is_reported(cli_env: str, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("CRINGE_API_URL", f"http://127.0.0.1:{port}")
    code, _, err = run(capsys, "jobs")
    assert code == 1
    assert f"cannot reach the cringe API at http://127.0.0.1:{port}" in err


def test_config_file_supplies_url_and_key(cli_env: str, server: LiveServer, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f'api_url = "{server.url}"\napi_key = "{cli_env}"\n', encoding="utf-8")
    monkeypatch.delenv("CRINGE_API_URL")
    monkeypatch.delenv("CRINGE_API_KEY")
    monkeypatch.setenv("CRINGE_CONFIG", str(config))
    code, _, err = run(capsys, "jobs")
    assert code == 0, err


@pytest.mark.parametrize(("text", "message"), [
    ("api_url = [1]\n", "must be a string"),
    ("api_token = 'x'\n", "unknown keys ['api_token']"),
    ("api_url = \n", "cannot read config file"),
    ("api_url = 'ftp://host'\napi_key = 'k'\n", "is not an http:// or https:// URL"),
])
def test_bad_config_file_is_reported(cli_env: str, tmp_path: Path, text: str, message: str,
                                     monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "config.toml"
    config.write_text(text, encoding="utf-8")
    monkeypatch.delenv("CRINGE_API_URL")
    monkeypatch.setenv("CRINGE_CONFIG", str(config))
    code, _, err = run(capsys, "jobs")
    assert code == 2
    assert message in err


class LoseFirstResponse(httpx.HTTPTransport):
    """Delivers the first request to the server, then drops its response: a timeout."""

    def __init__(self) -> None:
        super().__init__()
        self.lost = False

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        if not self.lost:
            self.lost = True
            response.read()
            raise httpx.ReadTimeout("response lost", request=request)
        return response


def test_submit_retry_makes_one_job(cli_env: str, server: LiveServer) -> None:
    transport = LoseFirstResponse()
    http = httpx.Client(base_url=server.url, transport=transport, timeout=30)
    client = ApiClient(ClientConfig(server.url, cli_env), http)
    spec: dict[str, Any] = {"kind": "train", "dataset": {"path": "pairs.jsonl.gz"}}
    job = client.submit(spec, {})
    assert transport.lost
    listed = client.list_jobs(None, None, 50)["data"]
    assert [row["id"] for row in listed] == [job["id"]]
    wait_for(lambda: client.get_job(job["id"])["is_terminal"], 30, "the job to end")
    client.close()
