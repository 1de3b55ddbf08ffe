"""The transition table, pair by pair, applied to a real job row on both databases."""

from __future__ import annotations

import itertools
import uuid

import pytest
from sqlalchemy import select, update

from service.auth import create_api_key
from service.db import Database
from service.errors import TransitionRejected
from service.ids import new_id
from service.models import EventRecord, Job
from service.settings import Settings
from service.states import (
    TERMINAL,
    Decision,
    JobEvent,
    JobStatus,
    decide,
    insert_job,
    transition,
)

S, E = JobStatus, JobEvent

# Written out independently of service.states, so a change to the table there fails here.
EXPECTED_MOVES = {
    (S.VALIDATING, E.VALIDATION_PASSED): S.QUEUED,
    (S.VALIDATING, E.VALIDATION_FAILED): S.FAILED,
    (S.VALIDATING, E.CANCEL_REQUESTED): S.CANCELLED,
    (S.QUEUED, E.ATTEMPT_STARTED): S.RUNNING,
    (S.QUEUED, E.CANCEL_REQUESTED): S.CANCELLED,
    (S.RUNNING, E.ATTEMPT_SUCCEEDED): S.SUCCEEDED,
    (S.RUNNING, E.ATTEMPT_FAILED): S.FAILED,
    (S.RUNNING, E.ATTEMPT_LOST): S.RECOVERING,
    (S.RUNNING, E.CANCEL_REQUESTED): S.CANCELLING,
    (S.RECOVERING, E.ATTEMPT_STARTED): S.RUNNING,
    (S.RECOVERING, E.ATTEMPT_FAILED): S.FAILED,
    (S.RECOVERING, E.CANCEL_REQUESTED): S.CANCELLED,
    (S.CANCELLING, E.ATTEMPT_SUCCEEDED): S.SUCCEEDED,
    (S.CANCELLING, E.ATTEMPT_FAILED): S.CANCELLED,
    (S.CANCELLING, E.ATTEMPT_LOST): S.CANCELLED,
    (S.CANCELLING, E.CANCEL_CONFIRMED): S.CANCELLED,
}
# Repeats of an event that already took effect: accepted, nothing changes.
EXPECTED_NO_OPS = {
    (S.QUEUED, E.VALIDATION_PASSED),
    (S.FAILED, E.VALIDATION_FAILED),
    (S.FAILED, E.ATTEMPT_FAILED),
    (S.RUNNING, E.ATTEMPT_STARTED),
    (S.RECOVERING, E.ATTEMPT_LOST),
    (S.SUCCEEDED, E.ATTEMPT_SUCCEEDED),
    (S.CANCELLING, E.CANCEL_REQUESTED),
    (S.CANCELLED, E.CANCEL_REQUESTED),
    (S.CANCELLED, E.ATTEMPT_FAILED),
    (S.CANCELLED, E.ATTEMPT_LOST),
    (S.CANCELLED, E.CANCEL_CONFIRMED),
}
ALL_PAIRS = list(itertools.product(JobStatus, JobEvent))


@pytest.fixture(scope="module")
def state_db(shared_database_url: str) -> Database:
    return Database(Settings(database_url=shared_database_url, dispatcher_enabled=False))


@pytest.fixture(scope="module")
def project_id(state_db: Database) -> str:
    principal, _ = create_api_key(state_db, f"states-{uuid.uuid4().hex[:8]}")
    return principal.project_id


def job_in(db: Database, project_id: str, status: JobStatus) -> str:
    """A job forced into `status`, as a fixture for one transition."""
    job_id = new_id("job")
    with db.write() as session:
        insert_job(session, {"id": job_id, "project_id": project_id, "kind": "train",
                             "spec": {}, "resolved_spec": {}, "labels": {}})
        session.execute(update(Job).where(Job.id == job_id).values(status=status.value))
    return job_id


def row(db: Database, job_id: str) -> tuple[str, int, int]:
    with db.read() as session:
        job = session.get_one(Job, job_id)
        return job.status, job.version, job.last_event_seq


@pytest.mark.parametrize(("status", "event"), ALL_PAIRS, ids=[f"{s}-{e}" for s, e in ALL_PAIRS])
def test_transition_pair(state_db: Database, project_id: str, status: JobStatus,
                         event: JobEvent) -> None:
    job_id = job_in(state_db, project_id, status)
    before = row(state_db, job_id)

    if (status, event) in EXPECTED_MOVES:
        with state_db.write() as session:
            result = transition(session, job_id, event, message="test")
        after = row(state_db, job_id)
        assert result.changed
        assert after[0] == EXPECTED_MOVES[(status, event)]
        assert after[1] == before[1] + 1
        assert after[2] == before[2] + 1
    elif (status, event) in EXPECTED_NO_OPS:
        with state_db.write() as session:
            result = transition(session, job_id, event, message="test")
        assert not result.changed
        assert row(state_db, job_id) == before
    else:
        with pytest.raises(TransitionRejected), state_db.write() as session:
            transition(session, job_id, event, message="test")
        assert row(state_db, job_id) == before


def test_terminal_states_only_accept_repeats() -> None:
    for status in TERMINAL:
        for event in JobEvent:
            decision, target = decide(status, event)
            assert decision is not Decision.MOVE
            assert target == status


def test_tables_agree() -> None:
    from service.states import TRANSITIONS

    assert TRANSITIONS == EXPECTED_MOVES


def test_transition_writes_event(state_db: Database, project_id: str) -> None:
    job_id = job_in(state_db, project_id, JobStatus.RUNNING)
    with state_db.write() as session:
        transition(session, job_id, JobEvent.ATTEMPT_FAILED, message="boom",
                   error={"code": "job_failed", "message": "boom", "details": []})
    with state_db.read() as session:
        event = session.execute(
            select(EventRecord).where(EventRecord.job_id == job_id)
            .order_by(EventRecord.seq.desc()).limit(1)
        ).scalar_one()
        job = session.get_one(Job, job_id)
    assert event.type == "attempt_failed"
    assert event.data == {"from": "running", "to": "failed"}
    assert job.finished_at is not None
    assert job.error == {"code": "job_failed", "message": "boom", "details": []}


def test_rolled_back_transition_leaves_no_event(state_db: Database, project_id: str) -> None:
    job_id = job_in(state_db, project_id, JobStatus.QUEUED)
    with pytest.raises(RuntimeError), state_db.write() as session:
        transition(session, job_id, JobEvent.ATTEMPT_STARTED, message="test")
        raise RuntimeError("the executor call after the transition failed")
    assert row(state_db, job_id)[0] == "queued"
    with state_db.read() as session:
        seqs = list(session.execute(
            select(EventRecord.seq).where(EventRecord.job_id == job_id)).scalars())
    assert seqs == [1]
