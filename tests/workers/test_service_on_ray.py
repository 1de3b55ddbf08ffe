"""A train job submitted over REST to a service that runs it on its own Ray head.

One service (SQLite, `CRINGE_EXECUTOR=ray`, a local token-authenticated Ray head) serves
every test of the module, since starting a head costs tens of seconds on two cores.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.workers.ray_service import Client, ray_service, stop, train_spec
from tests.workers.service_process import ServiceProcess

# Slow: a Ray head of the service's own and a real training job take minutes on two cores.
pytestmark = pytest.mark.slow

MAX_STEPS = 30


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory,
            tiny_policy_path: Path) -> Iterator[ServiceProcess]:
    process = ray_service(tmp_path_factory.mktemp("ray-service"), tiny_policy_path)
    process.start()
    yield process
    stop(process)


@pytest.fixture(scope="module")
def client(service: ServiceProcess) -> Client:
    return Client(service)


@pytest.fixture(scope="module")
def finished(service: ServiceProcess, client: Client) -> dict[str, Any]:
    """Run one job to the end, noting what the API showed while it was running."""
    job_id = client.submit(train_spec(service.data_dir, MAX_STEPS))
    seen_while_running: list[int] = []
    deadline = time.monotonic() + 600
    while (job := client.job(job_id))["status"] not in ("succeeded", "failed", "cancelled"):
        assert time.monotonic() < deadline, job
        if job["status"] == "running":
            seen_while_running.append(len(client.all(job_id, "metrics", name="loss")))
        time.sleep(0.5)
    return {"job": job, "seen_while_running": seen_while_running,
            "metrics": client.all(job_id, "metrics", name="loss"),
            "events": client.all(job_id, "events"),
            "checkpoints": client.all(job_id, "checkpoints")}


def test_job_succeeds(finished: dict[str, Any]) -> None:
    assert finished["job"]["status"] == "succeeded", finished["job"].get("error")


def test_ran_on_ray(finished: dict[str, Any]) -> None:
    started = [e for e in finished["events"] if e["type"] == "attempt_started"]
    assert {e["data"]["executor"] for e in started} == {"ray"}


def test_metrics_streamed(finished: dict[str, Any]) -> None:
    partial = [n for n in finished["seen_while_running"] if 0 < n < MAX_STEPS]
    assert partial, finished["seen_while_running"]


def test_every_step_once(finished: dict[str, Any]) -> None:
    assert [p["step"] for p in finished["metrics"]] == list(range(1, MAX_STEPS + 1))


def test_progress_at_end(finished: dict[str, Any]) -> None:
    assert finished["job"]["progress"]["step"] == MAX_STEPS


def test_checkpoints_reported(finished: dict[str, Any]) -> None:
    resumable = sorted(c["step"] for c in finished["checkpoints"] if c["kind"] == "resumable")
    assert resumable == [5, 10, 15, 20, 25, 30]


def test_model_reported(finished: dict[str, Any]) -> None:
    models = [c for c in finished["checkpoints"] if c["kind"] == "model"]
    assert [Path(c["path"]).name for c in models] == ["model"]


def test_model_saved(finished: dict[str, Any]) -> None:
    model = next(c for c in finished["checkpoints"] if c["kind"] == "model")
    assert (Path(model["path"]) / "config.json").exists()


def test_failure_reported(service: ServiceProcess, client: Client) -> None:
    # Valid JSON, so it is accepted at submit; its rows lack `rejected`, which only the
    # worker finds when it reads them.
    rows = [json.dumps({"prompt": f"question {i}", "chosen": "yes"}) for i in range(8)]
    (service.data_dir / "datasets" / "no_rejected.jsonl").write_text("\n".join(rows) + "\n")
    spec = train_spec(service.data_dir, 3)
    spec["dataset"] = {"path": "no_rejected.jsonl"}
    job_id = client.submit(spec)
    job = client.wait(job_id, {"failed"}, timeout_s=300)
    assert job["error"]["code"] == "job_failed"
