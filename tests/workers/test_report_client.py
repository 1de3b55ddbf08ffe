"""The report client against a real service process that is killed and restarted."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from service.auth import WORKER_TOKEN_PREFIX, create_api_key, hash_secret, new_secret
from service.db import Database
from service.ids import new_id
from service.models import Attempt, EventRecord, MetricPoint
from service.states import JobEvent, transition
from tests.workers.service_process import ServiceProcess
from workers.report_client import ReportClient


@pytest.fixture
def service(tmp_path: Path) -> Iterator[ServiceProcess]:
    process = ServiceProcess(tmp_path / "service")
    process.start("--no-dispatcher")
    yield process
    process.kill()


def _running_attempt(service: ServiceProcess) -> tuple[str, str, Database]:
    import httpx

    db = Database(service.settings())
    _, key = create_api_key(db, "workers-test")
    response = httpx.post(f"{service.url}/v1/jobs", headers={"Authorization": f"Bearer {key}"},
                          json={"spec": {"dataset": {"path": "pairs.jsonl.gz"}}})
    assert response.status_code == 201, response.text
    job_id = response.json()["id"]
    token = new_secret(WORKER_TOKEN_PREFIX)
    with db.write() as session:
        session.add(Attempt(id=new_id("att"), job_id=job_id, number=1,
                            token_hash=hash_secret(token), executor="test", handle="h"))
        transition(session, job_id, JobEvent.VALIDATION_PASSED, message="test")
        transition(session, job_id, JobEvent.ATTEMPT_STARTED, message="test", attempt=1)
    return job_id, token, db


def _log_keys(db: Database, job_id: str) -> list[str]:
    with db.read() as session:
        events = session.execute(
            select(EventRecord).where(EventRecord.job_id == job_id, EventRecord.type == "log")
        ).scalars()
        return [event.data["key"] for event in events]


def test_outage_loses_and_duplicates_nothing(service: ServiceProcess) -> None:
    job_id, token, db = _running_attempt(service)
    client = ReportClient(service.url, job_id, 1, token, initial_backoff_s=0.05,
                          max_backoff_s=0.5)
    for step in range(1, 6):
        client.event("step_done", f"step {step}", step=step)
        client.metrics(step, {"loss": 1.0 / step})
    assert client.flush(30)

    service.kill()
    for step in range(6, 11):
        client.event("step_done", f"step {step}", step=step)
        client.metrics(step, {"loss": 1.0 / step})
    time.sleep(1.0)
    assert client.pending() > 0
    service.start("--no-dispatcher")
    assert client.flush(60)
    # A resumed step reported again is not sent twice.
    client.event("step_done", "step 10", step=10)
    assert client.close(30)

    keys = _log_keys(db, job_id)
    assert sorted(keys) == sorted(f"1:step_done:{step}" for step in range(1, 11))
    assert client.retries > 0
    with db.read() as session:
        steps = session.execute(
            select(MetricPoint.step).where(MetricPoint.job_id == job_id)
        ).scalars().all()
    assert sorted(steps) == list(range(1, 11))


def test_superseded_attempt_stops(service: ServiceProcess) -> None:
    job_id, token, db = _running_attempt(service)
    with db.write() as session:
        session.add(Attempt(id=new_id("att"), job_id=job_id, number=2,
                            token_hash=hash_secret(new_secret(WORKER_TOKEN_PREFIX)),
                            executor="test", handle="h2"))
        transition(session, job_id, JobEvent.ATTEMPT_LOST, message="test")
        transition(session, job_id, JobEvent.ATTEMPT_STARTED, message="test", attempt=2)
    client = ReportClient(service.url, job_id, 1, token)
    client.event("late", "from the old attempt", step=1)
    client.close(30)
    assert client.superseded
    assert _log_keys(db, job_id) == []
