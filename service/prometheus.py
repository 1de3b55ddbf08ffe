"""Prometheus metrics at `/metrics`: jobs by status and kind, request latency by route.

Job counts are read from the database at scrape time, so every API process reports the
same numbers. Request latency is a histogram kept in the process that served the request.
NOTE: with `cringe serve --workers N` each scrape reaches one worker and reports only that
worker's requests; run one API process per scrape target to get every request counted.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cringe_core.spec import JOB_KINDS
from service.db import Database
from service.models import Job
from service.states import JobStatus

logger = logging.getLogger(__name__)

# Seconds; dense below 50 ms, where the API's reads fall.
LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)
UNMATCHED_ROUTE = "unmatched"


class JobsCollector(Collector):
    """`cringe_jobs{status, kind}`, counted in the database at each scrape.

    Every known (status, kind) pair is reported, as 0 when no job has it, so an alert on
    `cringe_jobs{status="failed"}` gets a value rather than an absent series.
    """

    def __init__(self, db: Database) -> None:
        self.db = db

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily("cringe_jobs", "Jobs by status and kind, all projects.",
                                   labels=["status", "kind"])
        up = GaugeMetricFamily("cringe_database_up",
                               "1 when the last scrape could count jobs in the database.")
        try:
            with self.db.read() as session:
                rows = session.execute(
                    select(Job.status, Job.kind, func.count()).group_by(Job.status, Job.kind)
                ).all()
        except SQLAlchemyError as error:
            logger.warning("metrics: cannot count jobs: %s", error)
            up.add_metric([], 0)
            yield up
            return
        counts = {(status.value, kind): 0 for status in JobStatus for kind in JOB_KINDS}
        counts.update({(status, kind): count for status, kind, count in rows})
        for (status, kind), count in sorted(counts.items()):
            family.add_metric([status, kind], count)
        up.add_metric([], 1)
        yield family
        yield up


class ApiMetrics:
    """The registry of one app: the jobs collector and the request latency histogram."""

    def __init__(self, db: Database) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(JobsCollector(db))
        self.latency = Histogram(
            "cringe_http_request_duration_seconds",
            "Time from request to the end of the response, by route template.",
            labelnames=["method", "route", "status"],
            buckets=LATENCY_BUCKETS_S,
            registry=self.registry,
        )

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class RequestTimer:
    """Pure ASGI middleware that observes each HTTP request's latency.

    The label is the matched route's template (`/v1/jobs/{job_id}`), never the raw path,
    so the number of series stays bounded whatever paths clients send.
    """

    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or UNMATCHED_ROUTE
            self.metrics.latency.labels(scope["method"], template, str(status)).observe(
                time.perf_counter() - started
            )


router = APIRouter(tags=["health"])


@router.get("/metrics", summary="Prometheus metrics", response_class=Response,
            responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}})
def metrics(request: Request) -> Response:
    api_metrics: ApiMetrics = request.app.state.api_metrics
    return Response(api_metrics.exposition(), media_type=CONTENT_TYPE_LATEST)
