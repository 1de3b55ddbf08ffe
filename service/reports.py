"""Reports of an attempt: status, events, metrics, checkpoints, rounds, evaluations.

The internal worker endpoints and the local executor's output reader both write through
these functions. Each runs inside the caller's write transaction and first locks the job
row and checks that the reporting attempt still owns the job, so a report from an
attempt that a newer one replaced is refused instead of mixed in.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import select
from sqlalchemy.orm import Session

from service.db import insert_or_ignore
from service.errors import AttemptSuperseded, JobNotFound
from service.events import append_event
from service.ids import new_id
from service.models import (
    Checkpoint,
    Evaluation,
    EventRecord,
    Iteration,
    Job,
    MetricPoint,
    utc_now,
)
from service.states import JobEvent, TransitionResult, transition

_INSERT_CHUNK_ROWS = 1000
INT32_MAX = 2**31 - 1  # the largest value of an INTEGER column on PostgreSQL
STEP_MAX = 2**62
REPORT_KEY_MAX_CHARS = 255


class Report(BaseModel):
    # JSON has no NaN or infinity; a worker sends null for them.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class MetricIn(Report):
    name: str = Field(..., min_length=1, max_length=128)
    step: int = Field(..., ge=0, le=STEP_MAX)
    value: float | None = Field(..., description="null for a NaN or infinite value")
    iteration: int = Field(default=0, ge=0, le=INT32_MAX)


class MetricsReport(Report):
    points: list[MetricIn] = Field(..., min_length=1)


class ErrorIn(Report):
    code: str = Field(..., min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_]*$")
    message: str = Field(..., max_length=8192)
    details: list[dict[str, Any]] = Field(default_factory=list, max_length=100)


class StatusReport(Report):
    state: Literal["running", "succeeded", "failed"]
    phase: str | None = Field(default=None, max_length=64)
    step: int | None = Field(default=None, ge=0, le=STEP_MAX)
    total_steps: int | None = Field(default=None, ge=0, le=STEP_MAX)
    round: int | None = Field(default=None, ge=0, le=INT32_MAX)
    error: ErrorIn | None = None


class EventIn(Report):
    level: Literal["debug", "info", "warning", "error"] = "info"
    message: str = Field(..., min_length=1, max_length=8192)
    data: dict[str, Any] | None = Field(
        default=None,
        description="Free-form; a string `key` makes the event idempotent: a report with a "
        "key this attempt already sent returns the stored event instead of adding one.",
    )

    @field_validator("data")
    @classmethod
    def _key_is_short_text(cls, data: dict[str, Any] | None) -> dict[str, Any] | None:
        key = (data or {}).get("key")
        if key is not None and not (isinstance(key, str)
                                    and 1 <= len(key) <= REPORT_KEY_MAX_CHARS):
            raise ValueError(
                f"data.key {key!r} is not a report key; send a string of 1 to "
                f"{REPORT_KEY_MAX_CHARS} characters, or leave the key out"
            )
        return data

    @property
    def key(self) -> str | None:
        return (self.data or {}).get("key")


class EventsReport(Report):
    events: list[EventIn] = Field(..., min_length=1, max_length=1000)


class CheckpointIn(Report):
    step: int = Field(..., ge=0, le=STEP_MAX)
    round: int | None = Field(default=None, ge=0, le=INT32_MAX)
    kind: Literal["resumable", "model"]
    path: str = Field(..., min_length=1, max_length=4096)
    size_bytes: int | None = Field(default=None, ge=0, le=STEP_MAX)
    metrics: dict[str, Any] | None = None


class IterationIn(Report):
    round: int = Field(..., ge=0, le=INT32_MAX)
    phase: str | None = Field(default=None, max_length=64)
    pairs_generated: int | None = Field(default=None, ge=0, le=INT32_MAX)
    pairs_kept: int | None = Field(default=None, ge=0, le=INT32_MAX)
    reward_stats: dict[str, Any] | None = None
    checkpoint: str | None = Field(default=None, max_length=4096)
    win_rate: float | None = Field(default=None, ge=0, le=1)


class EvaluationIn(Report):
    round: int | None = Field(default=None, ge=0, le=INT32_MAX)
    candidate: str = Field(..., min_length=1, max_length=256)
    reference: str = Field(..., min_length=1, max_length=256)
    judge: str = Field(..., min_length=1, max_length=256)
    n: int = Field(..., ge=0, le=INT32_MAX)
    wins: int = Field(..., ge=0, le=INT32_MAX)
    ties: int = Field(..., ge=0, le=INT32_MAX)
    losses: int = Field(..., ge=0, le=INT32_MAX)
    win_rate: float = Field(..., ge=0, le=1)
    ci_low: float = Field(..., ge=0, le=1)
    ci_high: float = Field(..., ge=0, le=1)
    key: str | None = Field(
        default=None, min_length=1, max_length=REPORT_KEY_MAX_CHARS,
        description="Makes the report idempotent: a repeat with a key this attempt already "
        "sent returns the stored evaluation's id instead of adding one.",
    )


def lock_for_attempt(session: Session, job_id: str, attempt: int) -> Job:
    """Lock the job row and check that `attempt` is still the job's current attempt."""
    job = session.execute(
        select(Job).where(Job.id == job_id).with_for_update()
    ).scalar_one_or_none()
    if job is None:
        raise JobNotFound(f"job {job_id!r} not found")
    if job.attempt != attempt:
        raise AttemptSuperseded(
            f"attempt {attempt} of job {job_id} no longer owns it; attempt {job.attempt} "
            "does. Stop this worker.",
            details=[{"attempt": attempt, "current_attempt": job.attempt}],
        )
    return job


def record_metrics(session: Session, job: Job, attempt: int, points: list[MetricIn]) -> None:
    """Append points. A point already stored (same job, step, name, round and attempt)
    is kept as it is, so reading the same output twice stores nothing twice."""
    rows = [
        {"job_id": job.id, "step": p.step, "name": p.name, "iteration": p.iteration,
         "attempt": attempt, "value": p.value}
        for p in points
    ]
    statement = insert_or_ignore(session, MetricPoint).on_conflict_do_nothing()
    for start in range(0, len(rows), _INSERT_CHUNK_ROWS):
        session.execute(statement, rows[start : start + _INSERT_CHUNK_ROWS])

    # Key metrics are the values at the newest step. Progress never moves backwards, so a
    # resumed attempt that replays steps does not make a progress bar jump back.
    latest_step = max(p.step for p in points)
    progress = dict(job.progress or {})
    if latest_step >= (progress.get("step") or 0):
        latest = dict(job.latest_metrics or {})
        latest.update({p.name: p.value for p in points if p.step == latest_step})
        progress["step"] = latest_step
        job.latest_metrics = latest
        job.progress = progress
        job.updated_at = utc_now()


def record_status(
    session: Session, job: Job, attempt: int, report: StatusReport
) -> TransitionResult | None:
    """Store phase and progress; a `succeeded` or `failed` report also ends the job."""
    progress = dict(job.progress or {})
    if report.step is not None:
        progress["step"] = max(report.step, progress.get("step") or 0)
    if report.total_steps is not None:
        progress["total_steps"] = report.total_steps
    if report.round is not None:
        progress["round"] = report.round
    if progress != job.progress:
        job.progress = progress
        job.updated_at = utc_now()
    if report.phase is not None and report.phase != job.phase:
        job.phase = report.phase
        job.updated_at = utc_now()
    session.flush()
    if report.state == "running":
        return None

    if report.state == "succeeded":
        return transition(session, job.id, JobEvent.ATTEMPT_SUCCEEDED,
                          message=f"attempt {attempt} succeeded", data={"attempt": attempt})
    error = report.error or ErrorIn(code="job_failed", message="the worker reported a failure")
    return transition(
        session, job.id, JobEvent.ATTEMPT_FAILED,
        message=f"attempt {attempt} failed: {error.message[:500]}",
        error=error.model_dump(), data={"attempt": attempt, "code": error.code},
    )


def record_events(session: Session, job: Job, attempt: int, events: list[EventIn]) -> list[int]:
    """Append events; return their seqs. An event whose key this attempt already sent is
    not added again: its stored seq is returned (the caller holds the job row lock, so
    the lookup and the insert cannot interleave with another report of the job)."""
    seqs = []
    for event in events:
        stored = _stored_event_seq(session, job.id, attempt, event.key)
        if stored is None:
            stored = append_event(
                session, job.id, "log", event.message,
                {"level": event.level, "attempt": attempt, **(event.data or {})},
                attempt=attempt if event.key is not None else None, report_key=event.key,
            )
        seqs.append(stored)
    return seqs


def _stored_event_seq(session: Session, job_id: str, attempt: int,
                      key: str | None) -> int | None:
    if key is None:
        return None
    return session.execute(
        select(EventRecord.seq).where(EventRecord.job_id == job_id,
                                      EventRecord.attempt == attempt,
                                      EventRecord.report_key == key)
    ).scalar_one_or_none()


def record_checkpoint(session: Session, job: Job, attempt: int, report: CheckpointIn) -> None:
    inserted = session.execute(
        insert_or_ignore(session, Checkpoint)
        .values(id=new_id("ckpt"), job_id=job.id, attempt=attempt, created_at=utc_now(),
                **report.model_dump())
        .on_conflict_do_nothing()
        .returning(Checkpoint.id)
    ).first()
    if inserted is not None:
        append_event(session, job.id, "checkpoint_saved",
                     f"{report.kind} checkpoint at step {report.step}",
                     {"attempt": attempt, "step": report.step, "path": report.path})


def record_iteration(session: Session, job: Job, report: IterationIn) -> None:
    values = {**report.model_dump(), "updated_at": utc_now()}
    statement = insert_or_ignore(session, Iteration).values(job_id=job.id, **values)
    session.execute(
        statement.on_conflict_do_update(index_elements=["job_id", "round"], set_=values)
    )


def record_evaluation(session: Session, job: Job, attempt: int, report: EvaluationIn) -> str:
    """Store an evaluation and return its id; a repeat of a key returns the stored id."""
    if report.key is not None:
        stored = session.execute(
            select(Evaluation.id).where(Evaluation.job_id == job.id,
                                        Evaluation.attempt == attempt,
                                        Evaluation.report_key == report.key)
        ).scalar_one_or_none()
        if stored is not None:
            return stored
    evaluation_id = new_id("eval")
    session.add(Evaluation(id=evaluation_id, job_id=job.id, attempt=attempt,
                           created_at=utc_now(), report_key=report.key,
                           **report.model_dump(exclude={"key"})))
    # The newest evaluation's win rate is a key metric: job lists show it without a
    # request per job.
    job.latest_metrics = {**(job.latest_metrics or {}), "win_rate": report.win_rate}
    job.updated_at = utc_now()
    append_event(session, job.id, "evaluation_recorded",
                 f"{report.candidate} vs {report.reference}: win rate {report.win_rate:.3f}",
                 {"attempt": attempt, "evaluation_id": evaluation_id})
    return evaluation_id
