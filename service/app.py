"""The FastAPI application: `create_app()` builds it from settings.

It refuses to start on a database whose schema is not at the latest migration, and
names the command that fixes it.
"""

from __future__ import annotations

import copy
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from anyio import to_thread
from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from cringe_core.spec import json_schema
from service.auth import KeyCache
from service.db import Database
from service.dispatcher import Dispatcher
from service.errors import install_handlers
from service.executor import Executor
from service.executor_setup import RunningExecutor, start_executor
from service.middleware import RequestGuard
from service.migrations import schema_state
from service.prometheus import ApiMetrics, RequestTimer
from service.prometheus import router as prometheus_router
from service.routes import dashboard, events, health, internal, jobs, results
from service.settings import Settings

logger = logging.getLogger(__name__)
API_VERSION = "1.0.0"


class SchemaNotCurrent(RuntimeError):
    """The database schema is older (or newer) than this server's migrations."""


def check_schema(db: Database) -> None:
    state = schema_state(db.engine)
    if not state.is_current:
        raise SchemaNotCurrent(state.describe())


def create_app(
    settings: Settings | None = None, executor: Executor | None = None
) -> FastAPI:
    settings = settings or Settings()
    db = Database(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            check_schema(db)
        except SchemaNotCurrent as error:
            logger.error("not serving: %s", error)
            raise
        # Sync routes run in this pool; more threads than cores mostly add GIL contention.
        to_thread.current_default_thread_limiter().total_tokens = settings.threadpool_size
        dispatcher = None
        running: RunningExecutor | None = None
        if settings.dispatcher_enabled:
            chosen = executor
            if chosen is None:
                running = await to_thread.run_sync(start_executor, settings)
                chosen = running.executor
            dispatcher = Dispatcher(db, settings, chosen)
            dispatcher.start()
        app.state.dispatcher = dispatcher
        # Everything allocated so far (modules, routes, schemas, the ORM's mappers) lives
        # as long as the process. Frozen, the garbage collector stops rescanning it, so its
        # full collections take milliseconds instead of pausing a request for tens of them.
        if settings.gc_freeze:
            gc.collect()
            gc.freeze()
        logger.info("serving on %s", db.engine.url.render_as_string(hide_password=True))
        try:
            yield
        finally:
            if dispatcher is not None:
                dispatcher.stop()
            if running is not None:
                await to_thread.run_sync(running.stop)
            db.dispose()

    app = FastAPI(
        title="cringe",
        version=API_VERSION,
        summary="Preference-optimization training jobs (Pairwise Cringe Loss, DPO) as "
        "durable jobs.",
        lifespan=lifespan,
    )
    app.state.db = db
    app.state.settings = settings
    app.state.key_cache = KeyCache()
    app.state.dispatcher = None
    install_handlers(app, settings.db_retry_after_s)
    app.include_router(health.router)
    app.include_router(jobs.build(settings.max_page_size))
    app.include_router(events.build(settings.max_page_size))
    app.include_router(results.build(settings.max_page_size, settings.max_metrics_page_size))
    app.include_router(internal.router)
    app.include_router(prometheus_router)
    app.include_router(dashboard.router)
    app.add_middleware(RequestGuard, max_body_bytes=settings.max_body_bytes)
    # Added last, so it is outermost and its latency includes the guard's body checks.
    app.state.api_metrics = ApiMetrics(db)
    app.add_middleware(RequestTimer, metrics=app.state.api_metrics)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def _openapi(app: FastAPI) -> dict[str, Any]:
    """Build the OpenAPI document, with the job spec's own schema as component `JobSpec`."""
    if app.openapi_schema:
        return app.openapi_schema
    document = get_openapi(title=app.title, version=app.version, summary=app.summary,
                           routes=app.routes)
    components = document.setdefault("components", {}).setdefault("schemas", {})
    spec_schema = copy.deepcopy(json_schema())
    for name, definition in spec_schema.pop("$defs", {}).items():
        components[f"spec.{name}"] = definition
    components["JobSpec"] = spec_schema
    _rewrite_refs(components, "#/$defs/", "#/components/schemas/spec.")
    job_create = components.get("JobCreate", {}).get("properties", {})
    if "spec" in job_create:
        job_create["spec"] = {"$ref": "#/components/schemas/JobSpec",
                              "description": job_create["spec"].get("description", "")}
    app.openapi_schema = document
    return document


def _rewrite_refs(node: Any, old: str, new: str) -> None:
    if isinstance(node, dict):
        reference = node.get("$ref")
        if isinstance(reference, str) and reference.startswith(old):
            node["$ref"] = new + reference[len(old):]
        for value in node.values():
            _rewrite_refs(value, old, new)
    elif isinstance(node, list):
        for value in node:
            _rewrite_refs(value, old, new)
