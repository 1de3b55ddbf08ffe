"""Domain errors, the one table that maps them to HTTP, and the error envelope.

Every error a client sees is `{"error": {code, message, param, details, request_id}}`:
`code` is stable snake_case, `param` a JSON pointer into the request body (or the name
of a query parameter or header), `details` every field problem. No traceback is ever
put in a response; unexpected exceptions are logged with the request id and sent to the
client as `internal_error`.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException

logger = logging.getLogger(__name__)

REQUEST_ID_KEY = "cringe.request_id"


class DomainError(Exception):
    """An error with a message for the client; the HTTP mapping is in `HTTP_ERRORS`."""

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        details: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.details = details or []
        self.headers = headers or {}


class InvalidJson(DomainError): ...
class UnsupportedMediaType(DomainError): ...
class BodyTooLarge(DomainError): ...
class RequestInvalid(DomainError): ...
class SpecInvalid(DomainError): ...
class KindUnsupported(DomainError): ...
class SpecTooLarge(DomainError): ...
class MetadataInvalid(DomainError): ...
class DatasetPathNotAllowed(DomainError): ...
class DatasetNotFound(DomainError): ...
class DatasetUnreadable(DomainError): ...
class DatasetEmpty(DomainError): ...
class DatasetFormatUnknown(DomainError): ...
class ModelUnknown(DomainError): ...
class ApiKeyMissing(DomainError): ...
class ApiKeyInvalid(DomainError): ...
class WorkerTokenInvalid(DomainError): ...
class TokenNotForJob(DomainError): ...
class AttemptSuperseded(DomainError): ...
class JobNotFound(DomainError): ...
class RouteNotFound(DomainError): ...
class MethodNotAllowed(DomainError): ...
class JobAlreadyFinished(DomainError): ...
class TransitionRejected(DomainError): ...
class IdempotencyKeyInvalid(DomainError): ...
class IdempotencyKeyReused(DomainError): ...
class IdempotencyKeyInFlight(DomainError): ...
class InvalidCursor(DomainError): ...
class DatabaseUnavailable(DomainError): ...
class InternalError(DomainError): ...
class ValueNotStorable(DomainError): ...


class FrameworkHttpError(DomainError):
    """An HTTP error raised inside the framework, kept at its own status."""

    def __init__(self, message: str, status: int, headers: dict[str, str] | None = None) -> None:
        super().__init__(message, headers=headers)
        self.status = status


_FRAMEWORK_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden",
                    413: "body_too_large", 415: "unsupported_media_type"}


HTTP_ERRORS: dict[type[DomainError], tuple[int, str]] = {
    InvalidJson: (400, "invalid_json"),
    InvalidCursor: (400, "invalid_cursor"),
    ApiKeyMissing: (401, "missing_api_key"),
    ApiKeyInvalid: (401, "invalid_api_key"),
    WorkerTokenInvalid: (401, "invalid_worker_token"),
    TokenNotForJob: (403, "token_not_for_job"),
    JobNotFound: (404, "job_not_found"),
    RouteNotFound: (404, "not_found"),
    MethodNotAllowed: (405, "method_not_allowed"),
    JobAlreadyFinished: (409, "job_already_finished"),
    TransitionRejected: (409, "invalid_transition"),
    AttemptSuperseded: (409, "attempt_superseded"),
    IdempotencyKeyInFlight: (409, "idempotency_key_in_flight"),
    BodyTooLarge: (413, "body_too_large"),
    UnsupportedMediaType: (415, "unsupported_media_type"),
    RequestInvalid: (422, "validation_error"),
    SpecInvalid: (422, "invalid_spec"),
    KindUnsupported: (422, "unsupported_kind"),
    SpecTooLarge: (422, "spec_too_large"),
    MetadataInvalid: (422, "invalid_metadata"),
    DatasetPathNotAllowed: (422, "dataset_path_not_allowed"),
    DatasetNotFound: (422, "dataset_not_found"),
    DatasetUnreadable: (422, "dataset_unreadable"),
    DatasetEmpty: (422, "dataset_empty"),
    DatasetFormatUnknown: (422, "dataset_format_unknown"),
    ModelUnknown: (422, "unknown_model"),
    IdempotencyKeyInvalid: (422, "invalid_idempotency_key"),
    IdempotencyKeyReused: (422, "idempotency_key_reused"),
    ValueNotStorable: (422, "value_not_storable"),
    InternalError: (500, "internal_error"),
    DatabaseUnavailable: (503, "database_unavailable"),
}


def http_status_and_code(error: DomainError) -> tuple[int, str]:
    if isinstance(error, FrameworkHttpError):
        return error.status, _FRAMEWORK_CODES.get(error.status, "http_error")
    for cls in type(error).__mro__:
        if cls in HTTP_ERRORS:
            return HTTP_ERRORS[cls]
    return HTTP_ERRORS[InternalError]


def request_id_of(scope_holder: Request | dict[str, Any]) -> str | None:
    scope = scope_holder.scope if isinstance(scope_holder, Request) else scope_holder
    value = scope.get(REQUEST_ID_KEY)
    return value if isinstance(value, str) else None


def envelope(code: str, error: DomainError, request_id: str | None) -> dict[str, Any]:
    return {
        "error": {
            "code": code,
            "message": error.message,
            "param": error.param,
            "details": error.details,
            "request_id": request_id,
        }
    }


def error_response(error: DomainError, request_id: str | None) -> JSONResponse:
    status, code = http_status_and_code(error)
    headers = dict(error.headers)
    if request_id:
        headers["X-Request-ID"] = request_id
    return JSONResponse(envelope(code, error, request_id), status_code=status, headers=headers)


def _pointer(location: tuple[Any, ...]) -> str:
    """Turn a FastAPI error location into the `param` of the envelope."""
    if not location:
        return "/"
    source, *rest = location
    if source == "body":
        return "/" + "/".join(str(part) for part in rest)
    return str(rest[0]) if rest else str(source)


def from_validation_error(exc: RequestValidationError) -> DomainError:
    problems = list(exc.errors())
    if any(problem.get("type") == "json_invalid" for problem in problems):
        reason = problems[0].get("ctx", {}).get("error", "invalid JSON")
        return InvalidJson(
            f"request body is not valid JSON ({reason}); send a JSON object with "
            "Content-Type: application/json"
        )
    details = [
        {
            "param": _pointer(tuple(problem.get("loc", ()))),
            "message": _describe(problem),
            "type": problem.get("type", "value_error"),
        }
        for problem in problems
    ]
    summary = "; ".join(f"{d['param']}: {d['message']}" for d in details[:5])
    return RequestInvalid(
        f"{len(details)} invalid field(s): {summary}",
        param=details[0]["param"] if details else None,
        details=details,
    )


def _describe(problem: dict[str, Any]) -> str:
    kind = problem.get("type")
    if kind == "missing":
        return "missing required field; add it"
    if kind == "extra_forbidden":
        return "unknown field; remove it"
    return f"{problem.get('msg', 'invalid value')} (got {problem.get('input')!r})"


def install_handlers(app: FastAPI, retry_after_s: int) -> None:
    """Send every error, the framework's included, in the one envelope."""

    async def domain(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, DomainError)
        return error_response(exc, request_id_of(request))

    async def validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return error_response(from_validation_error(exc), request_id_of(request))

    async def http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        return error_response(from_http_exception(exc, request), request_id_of(request))

    async def database(request: Request, exc: Exception) -> JSONResponse:
        logger.warning("database unavailable (request %s): %s", request_id_of(request), exc)
        error = DatabaseUnavailable(
            "the database is unavailable; retry after the number of seconds in Retry-After",
            headers={"Retry-After": str(retry_after_s)},
        )
        return error_response(error, request_id_of(request))

    async def unstorable(request: Request, exc: Exception) -> JSONResponse:
        logger.info("value rejected by the database (request %s): %s", request_id_of(request),
                    exc)
        error = ValueNotStorable(
            "a value in this request cannot be stored: remove NUL characters, NaN or infinite "
            "numbers, and integers out of the documented ranges"
        )
        return error_response(error, request_id_of(request))

    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        request_id = request_id_of(request)
        logger.exception("unhandled error (request %s)", request_id)
        error = InternalError(
            f"internal error; report request id {request_id} to the operator of this server"
        )
        return error_response(error, request_id)

    app.add_exception_handler(DomainError, domain)
    app.add_exception_handler(RequestValidationError, validation)
    app.add_exception_handler(StarletteHTTPException, http)
    app.add_exception_handler(OperationalError, database)
    app.add_exception_handler(InterfaceError, database)
    app.add_exception_handler(PoolTimeoutError, database)
    app.add_exception_handler(DataError, unstorable)
    app.add_exception_handler(Exception, unexpected)


def from_http_exception(exc: StarletteHTTPException, request: Request) -> DomainError:
    if exc.status_code == 404:
        return RouteNotFound(f"no such endpoint: {request.method} {request.url.path}")
    if exc.status_code == 405:
        return MethodNotAllowed(
            f"{request.method} is not allowed on {request.url.path}",
            headers=dict(exc.headers or {}),
        )
    return FrameworkHttpError(str(exc.detail), exc.status_code, dict(exc.headers or {}))
