"""Checks every request passes before routing: a request id, media type, body size.

Pure ASGI, so a too-large body is refused while it arrives, before anything buffers it.
"""

from __future__ import annotations

import re

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.errors import (
    REQUEST_ID_KEY,
    BodyTooLarge,
    DomainError,
    FrameworkHttpError,
    UnsupportedMediaType,
    error_response,
)
from service.ids import new_id

_CLIENT_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


def is_json_media_type(content_type: str) -> bool:
    media_type = content_type.split(";", 1)[0].strip().lower()
    return media_type == "application/json" or (
        media_type.startswith("application/") and media_type.endswith("+json")
    )


class RequestGuard:
    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        client_id = headers.get("x-request-id", "")
        request_id = client_id if _CLIENT_REQUEST_ID.match(client_id) else new_id("req")
        scope[REQUEST_ID_KEY] = request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                response_headers = MutableHeaders(scope=message)
                if "x-request-id" not in response_headers:
                    response_headers.append("X-Request-ID", request_id)
            await send(message)

        if scope["method"] not in _BODY_METHODS:
            await self.app(scope, receive, send_with_id)
            return
        try:
            body = await self._read_body(headers, receive)
        except DomainError as error:
            await error_response(error, request_id)(scope, receive, send_with_id)
            return
        if body is None:  # the client went away
            return

        delivered = False

        async def replay(_: None = None) -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send_with_id)

    async def _read_body(self, headers: Headers, receive: Receive) -> bytes | None:
        declared = headers.get("content-length")
        if declared is not None and not declared.isdigit():
            raise FrameworkHttpError(f"invalid Content-Length {declared!r}", 400)
        chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        if not chunked and (declared is None or int(declared) == 0):
            return b""
        content_type = headers.get("content-type", "")
        if not is_json_media_type(content_type):
            raise UnsupportedMediaType(
                f"unsupported Content-Type {content_type or '(none)'!r}; send the body as "
                "JSON with Content-Type: application/json",
                param="Content-Type",
            )
        too_large = BodyTooLarge(
            f"request body is over the limit of {self.max_body_bytes} bytes; send a smaller "
            "body (large inputs belong in data set files)"
        )
        if declared is not None and int(declared) > self.max_body_bytes:
            raise too_large
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                raise too_large
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)
