"""Restarting the API while a job runs: nothing lost, nothing duplicated, gone attempts end."""

from __future__ import annotations

import os
import signal
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.auth import create_api_key
from service.settings import Settings
from tests.service.conftest import (
    DatabaseFactory,
    LiveServer,
    fake_job_command,
    make_settings,
    wait_for,
)

STEPS = 30


@pytest.fixture
def restart_settings(database_factory: DatabaseFactory, data_root: Path,
                     tmp_path: Path) -> Any:
    def build(**overrides: Any) -> Settings:
        command = fake_job_command("--steps", str(STEPS), "--delay", "0.08",
                                   "--checkpoint-every", "10",
                                   "--runs-log", str(tmp_path / "runs.log"))
        return make_settings(database_factory.migrated(), data_root, tmp_path,
                             dispatcher_enabled=True, job_command=command, **overrides)

    return build


class Client:
    def __init__(self, server: LiveServer, key: str) -> None:
        self.http = httpx.Client(base_url=server.url, timeout=30,
                                 headers={"Authorization": f"Bearer {key}"})

    def get(self, path: str) -> Any:
        response = self.http.get(path)
        assert response.status_code == 200, response.text
        return response.json()

    def all_metrics(self, job_id: str) -> list[dict[str, Any]]:
        return list(self.get(f"/v1/jobs/{job_id}/metrics?limit=1000")["data"])


def start_job(settings: Settings) -> tuple[str, str, int]:
    """Submit a job on a first server, stop that server once the job has logged metrics.

    Returns the job id, the API key and the pid of the attempt, which outlives the server.
    """
    with LiveServer(settings) as server:
        _, key = create_api_key(server.app.state.db, f"restart-{uuid.uuid4().hex[:8]}")
        client = Client(server, key)
        response = client.http.post("/v1/jobs", json={"spec": {"dataset": {
            "path": "pairs.jsonl.gz"}}})
        job_id = response.json()["id"]
        wait_for(lambda: len(client.all_metrics(job_id)) >= 4, 30, "first metrics")
        assert client.get(f"/v1/jobs/{job_id}")["status"] == "running"
        pid = _attempt_pid(settings, job_id)
    return job_id, key, pid


def _attempt_pid(settings: Settings, job_id: str) -> int:
    handle_file = settings.output_root / job_id / ".attempts" / "1" / "handle"
    return int(handle_file.read_text().split(":")[0])


def test_restart_loses_and_duplicates_nothing(restart_settings: Any, tmp_path: Path) -> None:
    settings = restart_settings()
    job_id, key, _ = start_job(settings)
    with LiveServer(settings) as server:
        client = Client(server, key)
        job = wait_for(lambda: (j := client.get(f"/v1/jobs/{job_id}"))["is_terminal"] and j,
                       60, "the job to end")
        metrics = client.all_metrics(job_id)
        events = client.get(f"/v1/jobs/{job_id}/events")["data"]
        checkpoints = client.get(f"/v1/jobs/{job_id}/checkpoints")["data"]

    runs = (tmp_path / "runs.log").read_text().splitlines()
    keys = Counter((p["name"], p["step"], p["attempt"]) for p in metrics)
    types = Counter(e["type"] for e in events)
    assert job["status"] == "succeeded"
    assert job["attempt"] == 1
    assert len(runs) == 1
    assert len(metrics) == 2 * STEPS
    assert set(keys.values()) == {1}
    assert {p["step"] for p in metrics} == set(range(1, STEPS + 1))
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert types["attempt_started"] == 1
    assert types["attempt_succeeded"] == 1
    assert [(c["kind"], c["step"]) for c in checkpoints] == [
        ("resumable", 10), ("resumable", 20), ("resumable", 30), ("model", STEPS)]


def test_attempt_gone_after_restart_fails_job(restart_settings: Any) -> None:
    settings = restart_settings()
    job_id, key, pid = start_job(settings)
    os.killpg(pid, signal.SIGKILL)
    with LiveServer(settings) as server:
        client = Client(server, key)
        job = wait_for(lambda: (j := client.get(f"/v1/jobs/{job_id}"))["is_terminal"] and j,
                       30, "the job to end")
    assert job["status"] == "failed"
    assert job["error"]["code"] == "attempt_lost"
    assert "gone" in job["error"]["message"]


def test_attempt_gone_with_retry_resumes(restart_settings: Any, tmp_path: Path) -> None:
    settings = restart_settings(max_infra_retries=1)
    job_id, key, pid = start_job(settings)
    os.killpg(pid, signal.SIGKILL)
    with LiveServer(settings) as server:
        client = Client(server, key)
        job = wait_for(lambda: (j := client.get(f"/v1/jobs/{job_id}"))["is_terminal"] and j,
                       60, "the job to end")
        metrics = client.all_metrics(job_id)
        events = [e["type"] for e in client.get(f"/v1/jobs/{job_id}/events")["data"]]

    runs = (tmp_path / "runs.log").read_text().splitlines()
    keys = Counter((p["name"], p["step"], p["attempt"]) for p in metrics)
    second = {p["step"] for p in metrics if p["attempt"] == 2}
    assert job["status"] == "succeeded"
    assert job["attempt"] == 2
    assert [run.split()[1] for run in runs] == ["resume=False", "resume=True"]
    assert set(keys.values()) == {1}
    assert max(second) == STEPS
    assert min(second) in (1, 11, 21)  # the step after the checkpoint it resumed from
    assert "attempt_lost" in events
