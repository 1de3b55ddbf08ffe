"""`/healthz` (the process is alive) and `/readyz` (the database is reachable and migrated)."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import SQLAlchemyError

from service.migrations import schema_state
from service.routes.common import database
from service.schemas import Health

logger = logging.getLogger(__name__)
router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
def healthz() -> Health:
    return Health(status="ok", database="not checked")


@router.get("/readyz", response_model=Health, responses={503: {"model": Health}})
def readyz(request: Request) -> JSONResponse:
    dispatcher = getattr(request.app.state, "dispatcher", None)
    executor = dispatcher.executor.name if dispatcher is not None else "none in this process"
    try:
        state = schema_state(database(request).engine)
    except SQLAlchemyError as error:
        logger.warning("readiness: database unreachable: %s", error)
        health = Health(status="unavailable", database="unreachable", executor=executor,
                        detail="cannot connect to the database")
        return JSONResponse(health.model_dump(), status_code=503, headers={"Retry-After": "5"})
    health = Health(
        status="ok" if state.is_current else "unavailable",
        database="migrated" if state.is_current else "not migrated",
        schema_revision=state.current,
        executor=executor,
        detail=None if state.is_current else state.describe(),
    )
    return JSONResponse(health.model_dump(), status_code=200 if state.is_current else 503)
