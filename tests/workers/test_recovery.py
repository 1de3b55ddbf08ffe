"""Faults during a train job on the Ray executor: a killed training worker, a killed API.

Slow (a few minutes each on two cores): run with `pytest -m slow tests/workers`.
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.workers.ray_service import (
    Client,
    ray_service,
    stop,
    train_spec,
    training_worker_pids,
)
from tests.workers.service_process import ServiceProcess

pytestmark = pytest.mark.slow
MAX_STEPS = 40


@pytest.fixture
def service(tmp_path: Path, tiny_policy_path: Path) -> Iterator[ServiceProcess]:
    process = ray_service(tmp_path / "service", tiny_policy_path)
    process.start()
    yield process
    stop(process)


def _wait_for_steps(client: Client, job_id: str, steps: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while len(client.all(job_id, "metrics", name="loss")) < steps:
        assert time.monotonic() < deadline, client.job(job_id)
        time.sleep(0.5)


def _outcome(client: Client, job_id: str) -> dict[str, Any]:
    job = client.wait(job_id, {"succeeded"}, timeout_s=600)
    return {"job": job, "steps": [p["step"] for p in client.all(job_id, "metrics", name="loss")],
            "events": client.all(job_id, "events")}


def test_killed_worker_recovers(service: ServiceProcess) -> None:
    client = Client(service)
    job_id = client.submit({**train_spec(service.data_dir, MAX_STEPS), "max_failures": 1})
    _wait_for_steps(client, job_id, 12, timeout_s=300)
    pids = training_worker_pids(job_id)
    assert pids, "no training worker of the job found"
    os.kill(pids[0], signal.SIGKILL)
    phases = set()
    deadline = time.monotonic() + 600
    while (job := client.job(job_id))["status"] == "running" and time.monotonic() < deadline:
        phases.add(job["phase"])
        time.sleep(0.3)
    outcome = _outcome(client, job_id)
    restarts = [e for e in outcome["events"]
                if (e.get("data") or {}).get("name") == "worker_group_restarted"]
    assert len(restarts) == 1, outcome["events"]
    assert "recovering" in phases, phases
    assert outcome["steps"] == list(range(1, MAX_STEPS + 1))


def test_killed_api_loses_nothing(service: ServiceProcess) -> None:
    client = Client(service)
    job_id = client.submit(train_spec(service.data_dir, MAX_STEPS))
    _wait_for_steps(client, job_id, 8, timeout_s=300)
    service.kill()
    time.sleep(8)  # the attempt keeps training and buffers its reports meanwhile
    service.start()
    outcome = _outcome(client, job_id)
    assert outcome["steps"] == list(range(1, MAX_STEPS + 1))
    saved = Counter(e["data"]["step"] for e in outcome["events"]
                    if e["type"] == "checkpoint_saved" and "/checkpoints/" in e["data"]["path"])
    assert sorted(saved) == [*range(5, MAX_STEPS + 1, 5)]
    assert set(saved.values()) == {1}
    seqs = [e["seq"] for e in outcome["events"]]
    assert seqs == list(range(1, len(seqs) + 1))
