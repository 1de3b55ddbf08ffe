"""`/v1/jobs`: submit, list, read and cancel jobs."""


from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request, Response

from service.auth import Principal, authenticate
from service.idempotency import HEADER, check_key
from service.jobs import cancel_job, create_job, get_job, list_jobs
from service.routes.common import ERROR_RESPONSES, database, json_response, settings_of
from service.schemas import JobCreate, JobPublic, Page
from service.states import JobStatus

IdempotencyKey = Annotated[
    str | None,
    Header(alias=HEADER, max_length=255,
           description="Makes a retry of this request return the first one's response."),
]


def build(max_page_size: int) -> APIRouter:
    router = APIRouter(prefix="/v1/jobs", tags=["jobs"], responses=ERROR_RESPONSES)

    @router.post("", status_code=201, response_model=JobPublic,
                 summary="Submit a job; it is durable once this returns")
    def create(
        body: JobCreate,
        request: Request,
        principal: Annotated[Principal, Depends(authenticate)],
        idempotency_key: IdempotencyKey = None,
    ) -> Response:
        key = check_key(idempotency_key) if idempotency_key is not None else None
        status, payload, replayed = create_job(
            database(request), settings_of(request), principal, body, key
        )
        dispatcher = getattr(request.app.state, "dispatcher", None)
        if dispatcher is not None and not replayed:
            dispatcher.wake()
        headers = {"Location": f"/v1/jobs/{payload['id']}"} if "id" in payload else {}
        if replayed:
            headers["Idempotent-Replayed"] = "true"
        return json_response(request, payload, status, headers)

    @router.get("", response_model=Page[JobPublic], summary="List jobs, newest first")
    def list_(
        request: Request,
        principal: Annotated[Principal, Depends(authenticate)],
        status: Annotated[JobStatus | None, Query(description="Only jobs in this state.")] = None,
        kind: Annotated[str | None, Query(max_length=32, description="Only this kind.")] = None,
        limit: Annotated[int, Query(ge=1, le=max_page_size)] = 50,
        cursor: Annotated[str | None, Query(max_length=512,
                                            description="`next_cursor` of the last page.")] = None,
    ) -> Response:
        page = list_jobs(database(request), principal, status=status, kind=kind, limit=limit,
                         cursor=cursor)
        return json_response(request, page)

    @router.get("/{job_id}", response_model=JobPublic, summary="Read a job")
    def read(
        job_id: str, request: Request, principal: Annotated[Principal, Depends(authenticate)]
    ) -> Response:
        return json_response(request, get_job(database(request), principal, job_id))

    @router.post("/{job_id}/cancel", response_model=JobPublic, summary="Cancel a job")
    def cancel(
        job_id: str,
        request: Request,
        principal: Annotated[Principal, Depends(authenticate)],
        idempotency_key: IdempotencyKey = None,
    ) -> Response:
        key = check_key(idempotency_key) if idempotency_key is not None else None
        status, payload, replayed = cancel_job(
            database(request), settings_of(request), principal, job_id, key
        )
        dispatcher = getattr(request.app.state, "dispatcher", None)
        if dispatcher is not None and not replayed:
            dispatcher.wake()
        headers = {"Idempotent-Replayed": "true"} if replayed else {}
        return json_response(request, payload, status, headers)

    return router
