"""The dispatcher: drives the executor towards the state the database records, and back.

Each tick it (1) validates new jobs, (2) watches running attempts, reading their outputs
and ending jobs whose attempt ended, and (3) starts queued and recovering jobs while
there is capacity. On PostgreSQL a job is claimed with SELECT ... FOR UPDATE SKIP LOCKED,
so two API processes never start the same job; on SQLite the database write lock does
the same. At start it reconciles: attempts still running are re-attached, attempts that
are gone are ended with the reason.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import func, select, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from service.auth import WORKER_TOKEN_PREFIX, hash_secret, new_secret
from service.data_paths import check_spec_paths
from service.db import Database
from service.errors import DomainError
from service.executor import Execution, ExecutionState, Executor, ExecutorUnavailable, Launch
from service.idempotency import purge_expired
from service.ids import new_id
from service.models import Attempt, Job, utc_now
from service.outputs import ingest_outputs
from service.settings import Settings
from service.states import JobEvent, JobStatus, transition

logger = logging.getLogger(__name__)

# Serializes claims across API processes on PostgreSQL, so max_running_jobs holds.
_CLAIM_LOCK_ID = 0x6372696E6765
_EXIT_BAD_INPUT = 2
_PURGE_EVERY_TICKS = 600


@dataclass(frozen=True)
class RetryPolicy:
    """Policy for a lost attempt (an infrastructure fault, not a failure of the job)."""

    max_infra_retries: int

    def event_after_lost(self, attempt: int) -> JobEvent:
        if attempt <= self.max_infra_retries:
            return JobEvent.ATTEMPT_LOST
        return JobEvent.ATTEMPT_FAILED


def failure_of(exit_code: int, stderr_text: str) -> dict[str, object]:
    """Build the job's `error` for a run that exited non-zero, without any traceback."""
    lines = [line for line in stderr_text.splitlines() if line.strip()]
    if exit_code == _EXIT_BAD_INPUT:
        start = max((i for i, line in enumerate(lines) if line.startswith("error:")), default=0)
        message = "\n".join(
            line for line in lines[start:]
            if not line.startswith(("Traceback ", "  File ", "    "))
        )[-4000:]
        return {"code": "invalid_input", "details": [],
                "message": message or "the spec or its data was rejected (exit code 2)"}
    last = lines[-1][-1000:] if lines else ""
    return {"code": "job_failed", "details": [{"exit_code": exit_code}],
            "message": f"the job exited with code {exit_code}" + (f": {last}" if last else "")}


class Dispatcher:
    def __init__(self, db: Database, settings: Settings, executor: Executor) -> None:
        self.db = db
        self.settings = settings
        self.executor = executor
        self.retry = RetryPolicy(settings.max_infra_retries)
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._ticks = 0

    # ---- lifecycle ------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="cringe-dispatcher", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def wake(self) -> None:
        """Run the next tick now, e.g. right after a job was submitted."""
        self._wake.set()

    def _run(self) -> None:
        logger.info("dispatcher started (executor %s)", self.executor.name)
        self._guarded(self.reconcile)
        while not self._stop.is_set():
            self.tick()
            self._wake.wait(self.settings.dispatch_interval_s)
            self._wake.clear()
        logger.info("dispatcher stopped")

    def _guarded(self, step: Callable[[], None]) -> None:
        try:
            step()
        except SQLAlchemyError as error:
            logger.warning("dispatcher: database error, retrying next tick: %s", error)
        except Exception:
            logger.exception("dispatcher: unexpected error, retrying next tick")

    def tick(self) -> None:
        self._guarded(self.validate_pending)
        self._guarded(self.watch_attempts)
        self._guarded(self.start_queued)
        self._ticks += 1
        if self._ticks % _PURGE_EVERY_TICKS == 1:
            self._guarded(self._purge)

    def _purge(self) -> None:
        with self.db.write() as session:
            purge_expired(session, self.settings.idempotency_ttl_s)

    # ---- validating -> queued ---------------------------------------------------------

    def validate_pending(self) -> None:
        """Check again, just before queueing, that every file of the spec is still there."""
        with self.db.read() as session:
            pending = list(session.execute(
                select(Job.id, Job.resolved_spec).where(Job.status == JobStatus.VALIDATING)
                .order_by(Job.id).limit(100)
            ))
        settings = self.settings
        for job_id, resolved in pending:
            _, problems = check_spec_paths(
                resolved, settings.data_roots, [*settings.data_roots, settings.output_root],
                settings.models, "/spec",
            )
            with self.db.write() as session:
                if problems:
                    transition(
                        session, job_id, JobEvent.VALIDATION_FAILED,
                        message=f"validation failed: {problems[0].message}",
                        error={"code": "invalid_input", "message": problems[0].message,
                               "details": [{"param": p.param, "message": p.message}
                                           for p in problems]},
                    )
                else:
                    transition(session, job_id, JobEvent.VALIDATION_PASSED,
                               message="spec and data files checked; queued")

    # ---- queued / recovering -> running -------------------------------------------------

    def start_queued(self) -> None:
        while not self._stop.is_set() and self._claim_one():
            pass

    def _claim_one(self) -> bool:
        """Start one queued or recovering job if there is capacity; True if one started."""
        with self.db.write() as session:
            if self.db.is_postgresql:
                session.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _CLAIM_LOCK_ID})
            running = session.execute(
                select(func.count()).select_from(Job)
                .where(Job.status.in_([JobStatus.RUNNING, JobStatus.CANCELLING]))
            ).scalar_one()
            if running >= self.settings.max_running_jobs:
                return False
            query = (
                select(Job)
                .where(Job.status.in_([JobStatus.QUEUED, JobStatus.RECOVERING]))
                .order_by(Job.id)
                .limit(1)
            )
            if self.db.is_postgresql:
                query = query.with_for_update(skip_locked=True)
            job = session.execute(query).scalar_one_or_none()
            if job is None:
                return False

            number = job.attempt + 1
            token = new_secret(WORKER_TOKEN_PREFIX)
            output_dir = self.settings.output_root / job.id
            output_dir.mkdir(parents=True, exist_ok=True)
            launched_at = utc_now()
            launch = Launch(job_id=job.id, attempt=number, kind=job.kind,
                            resolved_spec=job.resolved_spec, output_dir=output_dir,
                            resume=number > 1, worker_token=token)
            try:
                handle = self.executor.submit(launch)
            except ExecutorUnavailable as error:
                logger.warning("job %s stays %s: executor unavailable: %s", job.id, job.status,
                               error)
                return False
            session.add(Attempt(
                id=new_id("att"), job_id=job.id, number=number, token_hash=hash_secret(token),
                executor=self.executor.name, handle=handle, resume=number > 1,
                metrics_offset=0, launched_at=launched_at,
            ))
            job.output_dir = str(output_dir)
            transition(session, job.id, JobEvent.ATTEMPT_STARTED, attempt=number,
                       message=f"attempt {number} started" + (" (resuming)" if number > 1 else ""),
                       data={"attempt": number, "executor": self.executor.name})
        return True

    # ---- running / cancelling -> terminal --------------------------------------------

    def reconcile(self) -> None:
        """After a start: log which attempts are re-attached, then end the gone ones."""
        for job_id, attempt in self._watched():
            execution = self.executor.status(attempt.handle or "")
            if execution.state is ExecutionState.RUNNING:
                logger.info("job %s: re-attached to running attempt %d", job_id, attempt.number)
        self.watch_attempts()

    def _watched(self) -> list[tuple[str, Attempt]]:
        with self.db.read() as session:
            rows = session.execute(
                select(Job.id, Attempt)
                .join(Attempt, (Attempt.job_id == Job.id) & (Attempt.number == Job.attempt))
                .where(Job.status.in_([JobStatus.RUNNING, JobStatus.CANCELLING]))
            ).all()
        return [(job_id, attempt) for job_id, attempt in rows]

    def watch_attempts(self) -> None:
        for job_id, attempt in self._watched():
            execution = self.executor.status(attempt.handle or "")
            try:
                self._observe(job_id, attempt, execution)
            except DomainError as error:
                logger.info("job %s: report not applied: %s", job_id, error.message)

    def _observe(self, job_id: str, attempt: Attempt, execution: Execution) -> None:
        with self.db.write() as session:
            query = select(Job).where(Job.id == job_id)
            if self.db.is_postgresql:
                query = query.with_for_update(skip_locked=True)
            job = session.execute(query).scalar_one_or_none()
            if job is None or job.attempt != attempt.number or job.status not in (
                JobStatus.RUNNING, JobStatus.CANCELLING
            ):
                return  # another process has it, or it moved on since it was listed
            attempt = session.get_one(Attempt, attempt.id)
            exited_ok = execution.state is ExecutionState.EXITED and execution.exit_code == 0
            ingest_outputs(session, job, attempt, finished=exited_ok)

            if execution.state is ExecutionState.RUNNING:
                if job.status == JobStatus.CANCELLING:
                    self.executor.cancel(attempt.handle or "")
                return
            self._end_attempt(session, job, attempt, execution)

    def _end_attempt(self, session: Session, job: Job, attempt: Attempt,
                     execution: Execution) -> None:
        attempt.ended_at = utc_now()
        attempt.exit_code = execution.exit_code
        data = {"attempt": attempt.number, "exit_code": execution.exit_code}
        if execution.state is ExecutionState.LOST:
            attempt.outcome = "lost"
            attempt.reason = execution.detail
            event = self.retry.event_after_lost(attempt.number)
            reason = f"attempt {attempt.number} was lost: {execution.detail}"
            error = None
            if event is JobEvent.ATTEMPT_FAILED:
                reason += f"; no retries left (max_infra_retries={self.retry.max_infra_retries})"
                error = {"code": "attempt_lost", "message": reason, "details": []}
            transition(session, job.id, event, message=reason, error=error, data=data)
            return

        exit_code = execution.exit_code or 0
        if exit_code == 0:
            attempt.outcome = "succeeded"
            transition(session, job.id, JobEvent.ATTEMPT_SUCCEEDED, data=data,
                       message=f"attempt {attempt.number} finished")
            return
        attempt.outcome = "failed"
        failure = failure_of(exit_code, execution.detail or "")
        attempt.reason = str(failure["message"])
        if exit_code < 0 and job.status == JobStatus.RUNNING:
            # Killed by a signal nobody here sent (the OOM killer, an operator): a fault of
            # the machine rather than of the job, so the retry policy decides.
            attempt.outcome = "lost"
            event = self.retry.event_after_lost(attempt.number)
            transition(session, job.id, event, data=data,
                       message=f"attempt {attempt.number} was killed by signal {-exit_code}",
                       error=failure if event is JobEvent.ATTEMPT_FAILED else None)
            return
        transition(session, job.id, JobEvent.ATTEMPT_FAILED, data=data, error=failure,
                   message=f"attempt {attempt.number} failed: {str(failure['message'])[:300]}")

