"""Results of a job: metrics, iterations, evaluations and checkpoints."""


from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from sqlalchemy import select, tuple_

from service.auth import Principal, authenticate
from service.jobs import load_job
from service.models import Checkpoint, Evaluation, Iteration, MetricPoint
from service.pagination import decode_cursor, encode_cursor
from service.routes.common import ERROR_RESPONSES, database, json_response
from service.schemas import (
    CheckpointPublic,
    EvaluationPublic,
    IterationPublic,
    MetricPointPublic,
    Page,
)

Cursor = Annotated[str | None, Query(max_length=512, description="`next_cursor` of the last page.")]


def _page(rows: list[Any], limit: int, kind: str, key_of: Any, public: Any) -> dict[str, Any]:
    has_more = len(rows) > limit
    rows = rows[:limit]
    return {
        "object": "list",
        "data": [public(row) for row in rows],
        "has_more": has_more,
        "next_cursor": encode_cursor(kind, key_of(rows[-1])) if has_more else None,
    }


def _dump(model: Any, row: Any) -> dict[str, Any]:
    return dict(model.model_validate(row, from_attributes=True).model_dump(mode="json"))


def build(max_page_size: int, max_metrics_page_size: int) -> APIRouter:
    router = APIRouter(prefix="/v1/jobs", tags=["results"], responses=ERROR_RESPONSES)

    @router.get("/{job_id}/metrics", response_model=Page[MetricPointPublic],
                summary="Metric points, by step, then name, round and attempt")
    def metrics(
        job_id: str,
        request: Request,
        principal: Annotated[Principal, Depends(authenticate)],
        name: Annotated[str | None, Query(max_length=128, description="Only this metric.")] = None,
        after_step: Annotated[
            int | None, Query(ge=-1, le=2**62, description="Only points with step > this.")
        ] = None,
        limit: Annotated[int, Query(ge=1, le=max_metrics_page_size)] = 1000,
        cursor: Cursor = None,
    ) -> Response:
        order = (MetricPoint.step, MetricPoint.name, MetricPoint.iteration, MetricPoint.attempt)
        with database(request).read() as session:
            job = load_job(session, principal, job_id)
            query = select(*order, MetricPoint.value).where(MetricPoint.job_id == job.id)
            if name is not None:
                query = query.where(MetricPoint.name == name)
            if after_step is not None:
                query = query.where(MetricPoint.step > after_step)
            if cursor is not None:
                key = decode_cursor(cursor, "metrics", {"s": int, "n": str, "i": int, "a": int})
                query = query.where(tuple_(*order) > tuple_(key["s"], key["n"], key["i"], key["a"]))
            rows = list(session.execute(query.order_by(*order).limit(limit + 1)))
        page = _page(
            rows, limit, "metrics",
            lambda p: {"s": p.step, "n": p.name, "i": p.iteration, "a": p.attempt},
            lambda p: {"name": p.name, "step": p.step, "value": p.value,
                       "iteration": p.iteration, "attempt": p.attempt},
        )
        return json_response(request, page)

    @router.get("/{job_id}/iterations", response_model=Page[IterationPublic],
                summary="Rounds of an iterative job, in order")
    def iterations(
        job_id: str,
        request: Request,
        principal: Annotated[Principal, Depends(authenticate)],
        limit: Annotated[int, Query(ge=1, le=max_page_size)] = 50,
        cursor: Cursor = None,
    ) -> Response:
        with database(request).read() as session:
            job = load_job(session, principal, job_id)
            query = select(Iteration).where(Iteration.job_id == job.id)
            if cursor is not None:
                query = query.where(Iteration.round > decode_cursor(cursor, "iterations",
                                                                    {"r": int})["r"])
            rows = list(session.execute(query.order_by(Iteration.round).limit(limit + 1))
                        .scalars())
            page = _page(rows, limit, "iterations", lambda r: {"r": r.round},
                         lambda r: _dump(IterationPublic, r))
        return json_response(request, page)

    @router.get("/{job_id}/evaluations", response_model=Page[EvaluationPublic],
                summary="Win-rate evaluations, oldest first")
    def evaluations(
        job_id: str,
        request: Request,
        principal: Annotated[Principal, Depends(authenticate)],
        limit: Annotated[int, Query(ge=1, le=max_page_size)] = 50,
        cursor: Cursor = None,
    ) -> Response:
        with database(request).read() as session:
            job = load_job(session, principal, job_id)
            query = select(Evaluation).where(Evaluation.job_id == job.id)
            if cursor is not None:
                query = query.where(Evaluation.id > decode_cursor(cursor, "evaluations",
                                                                  {"id": str})["id"])
            rows = list(session.execute(query.order_by(Evaluation.id).limit(limit + 1))
                        .scalars())
            page = _page(rows, limit, "evaluations", lambda e: {"id": e.id},
                         lambda e: _dump(EvaluationPublic, e))
        return json_response(request, page)

    @router.get("/{job_id}/checkpoints", response_model=Page[CheckpointPublic],
                summary="Checkpoints, in the order they were saved")
    def checkpoints(
        job_id: str,
        request: Request,
        principal: Annotated[Principal, Depends(authenticate)],
        limit: Annotated[int, Query(ge=1, le=max_page_size)] = 50,
        cursor: Cursor = None,
    ) -> Response:
        with database(request).read() as session:
            job = load_job(session, principal, job_id)
            query = select(Checkpoint).where(Checkpoint.job_id == job.id)
            if cursor is not None:
                query = query.where(Checkpoint.id > decode_cursor(cursor, "checkpoints",
                                                                  {"id": str})["id"])
            rows = list(session.execute(query.order_by(Checkpoint.id).limit(limit + 1))
                        .scalars())
            page = _page(rows, limit, "checkpoints", lambda c: {"id": c.id},
                         lambda c: _dump(CheckpointPublic, c))
        return json_response(request, page)

    return router
