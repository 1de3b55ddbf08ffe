"""Opaque cursors for keyset pagination.

A cursor is the sort key of the last item of a page, as URL-safe base64 of compact JSON,
so the next page is `WHERE key > cursor` on an index, however deep the page. Clients
must treat it as opaque; a cursor that does not decode to the expected fields is a 400.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from service.errors import InvalidCursor

_VERSION = 1
_MAX_INT = 2**63 - 1  # the largest value of a BIGINT column


def encode_cursor(kind: str, key: dict[str, Any]) -> str:
    payload = json.dumps({"v": _VERSION, "k": kind, **key}, separators=(",", ":"))
    return base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, kind: str, fields: dict[str, type]) -> dict[str, Any]:
    """Return the key fields of `cursor`, checking the list it came from and the types."""
    problem = (
        f"invalid cursor {cursor[:64]!r}; pass the `next_cursor` of the previous page of "
        "this same list unchanged, or omit `cursor` to start from the first page"
    )
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
    except (ValueError, UnicodeError, binascii.Error):
        raise InvalidCursor(problem, param="cursor") from None
    if not isinstance(data, dict) or data.get("v") != _VERSION or data.get("k") != kind:
        raise InvalidCursor(problem, param="cursor")
    key = {}
    for name, expected in fields.items():
        value = data.get(name)
        # bool is an int in Python, never a valid key here.
        if not isinstance(value, expected) or isinstance(value, bool):
            raise InvalidCursor(problem, param="cursor")
        if isinstance(value, int) and not -_MAX_INT <= value <= _MAX_INT:
            raise InvalidCursor(problem, param="cursor")
        if isinstance(value, str) and ("\x00" in value or len(value) > 256):
            raise InvalidCursor(problem, param="cursor")
        key[name] = value
    return key
