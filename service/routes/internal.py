"""`/v1/internal/jobs/{id}/...`: where an attempt's workers report.

Authenticated by the attempt's own token (not an API key): accepted only for that
attempt's job, and refused with 409 `attempt_superseded` once a newer attempt owns it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from sqlalchemy.orm import Session

from service.auth import WorkerIdentity, authenticate_worker
from service.errors import RequestInvalid
from service.models import Job
from service.reports import (
    CheckpointIn,
    EvaluationIn,
    EventsReport,
    IterationIn,
    MetricsReport,
    StatusReport,
    lock_for_attempt,
    record_checkpoint,
    record_evaluation,
    record_events,
    record_iteration,
    record_metrics,
    record_status,
)
from service.routes.common import ERROR_RESPONSES, database, settings_of

Worker = Annotated[WorkerIdentity, Depends(authenticate_worker)]


def _apply(request: Request, worker: WorkerIdentity,
           write: Callable[[Session, Job], dict[str, Any]]) -> dict[str, Any]:
    with database(request).write() as session:
        job = lock_for_attempt(session, worker.job_id, worker.attempt)
        return write(session, job)


router = APIRouter(prefix="/v1/internal/jobs", tags=["internal"], responses=ERROR_RESPONSES)


@router.post("/{job_id}/status", summary="Report phase and progress, or the attempt's end")
def report_status(job_id: str, report: StatusReport, request: Request,
                  worker: Worker) -> dict[str, Any]:
    def write(session: Session, job: Job) -> dict[str, Any]:
        result = record_status(session, job, worker.attempt, report)
        if result is None:
            return {"status": job.status, "changed": False}
        return {"status": result.status.value, "changed": result.changed}

    return _apply(request, worker, write)


@router.post("/{job_id}/events", summary="Append log events")
def report_events(job_id: str, report: EventsReport, request: Request,
                  worker: Worker) -> dict[str, Any]:
    return _apply(request, worker, lambda session, job: {
        "seqs": record_events(session, job, worker.attempt, report.events)})


@router.post("/{job_id}/metrics", summary="Append a batch of metric points")
def report_metrics(job_id: str, report: MetricsReport, request: Request,
                   worker: Worker) -> dict[str, Any]:
    limit = settings_of(request).max_report_points
    if len(report.points) > limit:
        raise RequestInvalid(
            f"{len(report.points)} points in one report, over the limit of {limit}; "
            "send them in smaller batches",
            param="/points",
        )

    def write(session: Session, job: Job) -> dict[str, Any]:
        record_metrics(session, job, worker.attempt, report.points)
        return {"received": len(report.points)}

    return _apply(request, worker, write)


@router.post("/{job_id}/checkpoints", summary="Record a saved checkpoint")
def report_checkpoint(job_id: str, report: CheckpointIn, request: Request,
                      worker: Worker) -> dict[str, Any]:
    def write(session: Session, job: Job) -> dict[str, Any]:
        record_checkpoint(session, job, worker.attempt, report)
        return {"recorded": True}

    return _apply(request, worker, write)


@router.post("/{job_id}/iterations", summary="Create or update one round")
def report_iteration(job_id: str, report: IterationIn, request: Request,
                     worker: Worker) -> dict[str, Any]:
    def write(session: Session, job: Job) -> dict[str, Any]:
        record_iteration(session, job, report)
        return {"recorded": True}

    return _apply(request, worker, write)


@router.post("/{job_id}/evaluations", summary="Record an evaluation")
def report_evaluation(job_id: str, report: EvaluationIn, request: Request,
                      worker: Worker) -> dict[str, Any]:
    return _apply(request, worker, lambda session, job: {
        "id": record_evaluation(session, job, worker.attempt, report)})
