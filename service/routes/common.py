"""Helpers shared by the routers: the database, settings and JSON responses with ETags."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from fastapi import Request, Response

from service.db import Database
from service.schemas import ErrorEnvelope
from service.settings import Settings

ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorEnvelope}
    for status in (400, 401, 404, 409, 413, 415, 422, 500, 503)
}


def database(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


def settings_of(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def json_response(
    request: Request, payload: Any, status_code: int = 200, headers: dict[str, str] | None = None
) -> Response:
    """Render `payload` with a weak ETag; return 304 when If-None-Match already has it."""
    body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    etag = 'W/"' + hashlib.blake2b(body, digest_size=12).hexdigest() + '"'
    all_headers = {"ETag": etag, **(headers or {})}
    if status_code == 200 and etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=all_headers)
    return Response(body, status_code=status_code, media_type="application/json",
                    headers=all_headers)
