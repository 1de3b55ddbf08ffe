"""`/v1/jobs/{id}/events`: the job's event log, as pages and as server-sent events."""


import json
import re
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.responses import StreamingResponse
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from service.auth import Principal, authenticate
from service.db import Database
from service.errors import InvalidCursor
from service.jobs import load_job
from service.models import EventRecord
from service.routes.common import ERROR_RESPONSES, database, json_response, settings_of
from service.schemas import EventPage
from service.states import TERMINAL, JobStatus

_STREAM_BATCH = 500
_SEQ = re.compile(r"^[0-9]{1,10}$")


def _event_public(event: EventRecord) -> dict[str, Any]:
    return {"seq": event.seq, "type": event.type, "message": event.message,
            "data": event.data, "created_at": event.created_at.isoformat().replace("+00:00", "Z")}


def read_events(
    db: Database, principal: Principal, job_id: str, after: int, limit: int
) -> tuple[list[dict[str, Any]], bool, bool]:
    """Events with seq > after, whether more follow, and whether the job has ended.

    The status is read before the events: a terminal status and its event commit
    together, so a job seen as ended has all its status events visible to the next read.
    """
    with db.read() as session:
        job = load_job(session, principal, job_id)
        ended = JobStatus(job.status) in TERMINAL
        events = list(session.execute(
            select(EventRecord).where(EventRecord.job_id == job.id, EventRecord.seq > after)
            .order_by(EventRecord.seq).limit(limit + 1)
        ).scalars())
    return [_event_public(e) for e in events[:limit]], len(events) > limit, ended


def _start_seq(after: int | None, last_event_id: str | None) -> int:
    if last_event_id is None:
        return after or 0
    if not _SEQ.match(last_event_id):
        raise InvalidCursor(
            f"Last-Event-ID {last_event_id[:40]!r} is not an event seq; send the `id` of "
            "the last event received",
            param="Last-Event-ID",
        )
    return int(last_event_id)


def build(max_page_size: int) -> APIRouter:
    router = APIRouter(prefix="/v1/jobs", tags=["events"], responses=ERROR_RESPONSES)

    @router.get("/{job_id}/events", response_model=EventPage,
                summary="Events in ascending, gap-free seq order")
    def list_events(
        job_id: str,
        request: Request,
        principal: Annotated[Principal, Depends(authenticate)],
        after: Annotated[int, Query(ge=0, le=2**31, description="Return seq > after.")] = 0,
        limit: Annotated[int, Query(ge=1, le=max_page_size)] = 100,
    ) -> Response:
        events, has_more, _ = read_events(database(request), principal, job_id, after, limit)
        last_seq = events[-1]["seq"] if events else after
        return json_response(request, {"object": "list", "data": events, "has_more": has_more,
                                       "last_seq": last_seq})

    @router.get(
        "/{job_id}/events/stream",
        response_class=StreamingResponse,
        responses={200: {"content": {"text/event-stream": {}},
                         "description": "Server-sent events; `id` is the event seq."}},
        summary="Stream events; resumes after Last-Event-ID, ends when the job has ended",
    )
    async def stream_events(
        job_id: str,
        request: Request,
        principal: Annotated[Principal, Depends(authenticate)],
        after: Annotated[int | None, Query(ge=0, le=2**31)] = None,
        last_event_id: Annotated[str | None, Header(alias="Last-Event-ID", max_length=20)] = None,
    ) -> StreamingResponse:
        db = database(request)
        settings = settings_of(request)
        start = _start_seq(after, last_event_id)
        # Raise a 404 now, before the 200 of the stream is sent.
        await run_in_threadpool(read_events, db, principal, job_id, start, 1)

        async def frames() -> AsyncIterator[str]:
            last_seq = start
            last_sent = time.monotonic()
            yield f"retry: {int(settings.sse_poll_interval_s * 4000)}\n\n"
            while True:
                events, has_more, ended = await run_in_threadpool(
                    read_events, db, principal, job_id, last_seq, _STREAM_BATCH
                )
                for event in events:
                    last_seq = event["seq"]
                    yield (f"id: {event['seq']}\nevent: {event['type']}\n"
                           f"data: {json.dumps(event, separators=(',', ':'))}\n\n")
                    last_sent = time.monotonic()
                if ended and not has_more:
                    return
                if has_more:
                    continue
                if time.monotonic() - last_sent > settings.sse_keepalive_s:
                    yield ": keep-alive\n\n"
                    last_sent = time.monotonic()
                await anyio.sleep(settings.sse_poll_interval_s)

        return StreamingResponse(
            frames(), media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    return router



