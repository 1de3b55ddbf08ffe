"""Races through a real HTTP server: idempotent creation, and cancel against completion."""

from __future__ import annotations

import contextlib
import threading
import uuid
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, select

from service.auth import WORKER_TOKEN_PREFIX, create_api_key, hash_secret, new_secret
from service.errors import TransitionRejected
from service.ids import new_id
from service.models import Attempt, Job
from service.states import TERMINAL, JobEvent, insert_job, transition
from tests.service.conftest import LiveServer, make_settings

SPEC = {"dataset": {"path": "pairs.jsonl.gz"}}


def test_ten_concurrent_creates_make_one_job(
    shared_database_url: str, data_root: Path, tmp_path: Path
) -> None:
    settings = make_settings(shared_database_url, data_root, tmp_path)
    with LiveServer(settings) as server:
        principal, key = create_api_key(server.app.state.db, f"idem-{uuid.uuid4().hex[:8]}")
        headers = {"Authorization": f"Bearer {key}", "Idempotency-Key": "ten-at-once"}
        barrier = threading.Barrier(10)
        responses: list[httpx.Response] = []
        lock = threading.Lock()

        def create() -> None:
            with httpx.Client(base_url=server.url, timeout=30) as client:
                barrier.wait()
                response = client.post("/v1/jobs", json={"spec": SPEC}, headers=headers)
            with lock:
                responses.append(response)

        threads = [threading.Thread(target=create) for _ in range(10)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)

        with server.app.state.db.read() as session:
            job_count = session.execute(
                select(func.count()).select_from(Job).where(Job.project_id == principal.project_id)
            ).scalar_one()
        # Every late request either replays the first response or gets a 409 because the
        # first is in flight. Retrying now replays the first response.
        with httpx.Client(base_url=server.url, timeout=30) as client:
            retry = client.post("/v1/jobs", json={"spec": SPEC}, headers=headers)
            other = client.post("/v1/jobs", json={"spec": SPEC, "metadata": {"x": "y"}},
                                headers=headers)

    created = [r for r in responses if r.status_code == 201]
    statuses = sorted({r.status_code for r in responses})
    assert job_count == 1
    assert len(responses) == 10
    assert set(statuses) <= {201, 409}
    assert len({r.json()["id"] for r in created}) == 1
    assert all(r.json()["error"]["code"] == "idempotency_key_in_flight"
               for r in responses if r.status_code == 409)
    assert retry.status_code == 201
    assert retry.headers["idempotent-replayed"] == "true"
    assert retry.json()["id"] == created[0].json()["id"]
    assert other.status_code == 422
    assert other.json()["error"]["code"] == "idempotency_key_reused"


def running_job(server: LiveServer, project_id: str) -> tuple[str, str]:
    """A job in `running` with attempt 1, and that attempt's worker token."""
    db = server.app.state.db
    job_id, token = new_id("job"), new_secret(WORKER_TOKEN_PREFIX)
    with db.write() as session:
        insert_job(session, {"id": job_id, "project_id": project_id, "kind": "train",
                             "spec": SPEC, "resolved_spec": SPEC, "labels": {}})
        transition(session, job_id, JobEvent.VALIDATION_PASSED, message="test")
        session.add(Attempt(id=new_id("att"), job_id=job_id, number=1,
                            token_hash=hash_secret(token), executor="test", handle="h"))
        transition(session, job_id, JobEvent.ATTEMPT_STARTED, message="test", attempt=1)
    return job_id, token


def test_cancel_racing_completion(
    shared_database_url: str, data_root: Path, tmp_path: Path
) -> None:
    settings = make_settings(shared_database_url, data_root, tmp_path)
    outcomes: list[tuple[str, list[dict[str, Any]]]] = []
    with LiveServer(settings) as server:
        db = server.app.state.db
        principal, key = create_api_key(db, f"race-{uuid.uuid4().hex[:8]}")
        api_headers = {"Authorization": f"Bearer {key}"}
        for _ in range(8):
            job_id, token = running_job(server, principal.project_id)
            barrier = threading.Barrier(2)

            def cancel(job_id: str = job_id, barrier: threading.Barrier = barrier) -> None:
                # The client's cancel, then the executor confirming the attempt stopped.
                with httpx.Client(base_url=server.url, timeout=30) as client:
                    barrier.wait()
                    response = client.post(f"/v1/jobs/{job_id}/cancel", headers=api_headers)
                if response.status_code == 200 and response.json()["status"] == "cancelling":
                    # Rejected when the completion got in first, as the dispatcher's is.
                    with contextlib.suppress(TransitionRejected), db.write() as session:
                        transition(session, job_id, JobEvent.CANCEL_CONFIRMED, message="test")

            def complete(job_id: str = job_id, token: str = token,
                         barrier: threading.Barrier = barrier) -> None:
                with httpx.Client(base_url=server.url, timeout=30) as client:
                    barrier.wait()
                    client.post(f"/v1/internal/jobs/{job_id}/status", json={"state": "succeeded"},
                                headers={"Authorization": f"Bearer {token}"})

            threads = [threading.Thread(target=cancel), threading.Thread(target=complete)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(60)
            with httpx.Client(base_url=server.url, timeout=30) as client:
                job = client.get(f"/v1/jobs/{job_id}", headers=api_headers).json()
                events = client.get(f"/v1/jobs/{job_id}/events", headers=api_headers).json()
            outcomes.append((job["status"], events["data"]))

    for status, events in outcomes:
        terminal_events = [e for e in events if (e["data"] or {}).get("to") in TERMINAL]
        assert status in TERMINAL
        assert len(terminal_events) == 1
        assert terminal_events[0]["data"]["to"] == status
        assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
