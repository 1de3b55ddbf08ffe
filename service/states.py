"""The job state machine, and the only code that writes a job's `status`.

    validating -> queued -> running -> succeeded | failed | cancelled
    cancelling: between a cancel request and the release of every resource
    recovering: while a new attempt starts after an infrastructure fault

Each change is a compare-and-set on the row's `version` and writes its event in the same
transaction, so a late or duplicated report can never undo a newer state. `succeeded`,
`failed` and `cancelled` are final. An event repeated after it already took effect (a
worker retrying its report, a second cancel) is accepted without a change.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.orm import Session

from service.errors import JobNotFound, TransitionRejected
from service.events import append_event
from service.models import Job, utc_now

logger = logging.getLogger(__name__)

# A writer that loses the compare-and-set rereads and decides again. More than a few
# losses in a row mean something keeps rewriting the row, which is a bug to surface.
MAX_CAS_TRIES = 8


class JobStatus(StrEnum):
    VALIDATING = "validating"
    QUEUED = "queued"
    RUNNING = "running"
    CANCELLING = "cancelling"
    RECOVERING = "recovering"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


TERMINAL = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED})
# States in which an attempt may be running and must be watched.
ATTEMPT_STATES = frozenset({JobStatus.RUNNING, JobStatus.CANCELLING})


class JobEvent(StrEnum):
    VALIDATION_PASSED = "validation_passed"
    VALIDATION_FAILED = "validation_failed"
    ATTEMPT_STARTED = "attempt_started"
    ATTEMPT_SUCCEEDED = "attempt_succeeded"
    ATTEMPT_FAILED = "attempt_failed"  # the work itself failed, or retries are used up
    ATTEMPT_LOST = "attempt_lost"  # infrastructure fault; a new attempt will resume
    CANCEL_REQUESTED = "cancel_requested"
    CANCEL_CONFIRMED = "cancel_confirmed"  # the executor stopped the attempt


S, E = JobStatus, JobEvent
TRANSITIONS: dict[tuple[JobStatus, JobEvent], JobStatus] = {
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
    # No attempt is alive while recovering, so nothing is left to release.
    (S.RECOVERING, E.CANCEL_REQUESTED): S.CANCELLED,
    # A job that finishes before the stop lands keeps its real outcome. One that dies or
    # is lost while cancelling ends cancelled, because that is what was requested.
    (S.CANCELLING, E.ATTEMPT_SUCCEEDED): S.SUCCEEDED,
    (S.CANCELLING, E.ATTEMPT_FAILED): S.CANCELLED,
    (S.CANCELLING, E.ATTEMPT_LOST): S.CANCELLED,
    (S.CANCELLING, E.CANCEL_CONFIRMED): S.CANCELLED,
}


class Decision(StrEnum):
    MOVE = "move"
    NO_OP = "no_op"
    REJECT = "reject"


def decide(status: JobStatus, event: JobEvent) -> tuple[Decision, JobStatus]:
    """Return what `event` does in `status`: move to a state, nothing, or rejection."""
    target = TRANSITIONS.get((status, event))
    if target is not None:
        return Decision.MOVE, target
    # A repeat of an event that already led here (a retried report) changes nothing.
    if any(to == status and on == event for (_, on), to in TRANSITIONS.items()):
        return Decision.NO_OP, status
    return Decision.REJECT, status


@dataclass(frozen=True)
class TransitionResult:
    previous: JobStatus
    status: JobStatus
    changed: bool
    version: int


def insert_job(session: Session, values: dict[str, Any]) -> None:
    """Create a job in `validating`, with its first event, in the caller's transaction."""
    now = utc_now()
    session.execute(
        insert(Job).values(
            **values,
            status=JobStatus.VALIDATING.value,
            version=1,
            attempt=0,
            last_event_seq=0,
            created_at=now,
            updated_at=now,
        )
    )
    append_event(
        session, values["id"], "job_created", "job accepted; validating",
        {"to": JobStatus.VALIDATING.value},
    )


def transition(
    session: Session,
    job_id: str,
    event: JobEvent,
    *,
    message: str,
    error: dict[str, Any] | None = None,
    attempt: int | None = None,
    phase: str | None = None,
    data: dict[str, Any] | None = None,
) -> TransitionResult:
    """Apply `event` to the job, compare-and-set on `version`, with its event row.

    Raises JobNotFound, or TransitionRejected when the event is not allowed in the
    job's current state (the message names that state). Runs in the caller's
    transaction, which must be a write transaction.
    """
    for _ in range(MAX_CAS_TRIES):
        row = session.execute(
            select(Job.status, Job.version).where(Job.id == job_id)
        ).one_or_none()
        if row is None:
            raise JobNotFound(f"job {job_id!r} not found")
        current = JobStatus(row.status)
        decision, target = decide(current, event)
        if decision is Decision.NO_OP:
            return TransitionResult(current, current, changed=False, version=row.version)
        if decision is Decision.REJECT:
            raise TransitionRejected(
                f"event {event.value!r} is not allowed while the job is {current.value!r}",
                details=[{"status": current.value, "event": event.value}],
            )

        values = _row_values(target, error=error, attempt=attempt, phase=phase)
        values["version"] = row.version + 1
        updated = session.execute(
            update(Job)
            .where(Job.id == job_id, Job.version == row.version)
            .values(**values)
        )
        if updated.rowcount == 1:  # type: ignore[attr-defined]
            event_data = {"from": current.value, "to": target.value, **(data or {})}
            append_event(session, job_id, event.value, message, event_data)
            logger.info("job %s: %s -> %s on %s", job_id, current, target, event)
            return TransitionResult(current, target, changed=True, version=row.version + 1)
    raise RuntimeError(
        f"job {job_id}: compare-and-set on version lost {MAX_CAS_TRIES} times in a row"
    )


def _row_values(
    target: JobStatus,
    *,
    error: dict[str, Any] | None,
    attempt: int | None,
    phase: str | None,
) -> dict[str, Any]:
    now = utc_now()
    values: dict[str, Any] = {"status": target.value, "updated_at": now}
    if target is JobStatus.RUNNING:
        # The first start sets started_at; a recovery keeps the original one.
        values["started_at"] = func.coalesce(Job.started_at, now)
    if target in TERMINAL:
        values["finished_at"] = now
    if error is not None:
        values["error"] = error
    if attempt is not None:
        values["attempt"] = attempt
    if phase is not None:
        values["phase"] = phase
    return values

