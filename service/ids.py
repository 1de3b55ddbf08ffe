"""Opaque, prefixed, time-ordered ids (`job_01J...`).

The 26 characters after the prefix are a ULID: 48 bits of milliseconds since the epoch
and 80 random bits in Crockford's base32, so ids sort by creation time to the
millisecond and a lexical order on the id column is a stable order for cursors.
"""

from __future__ import annotations

import re
import secrets
import time

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
ULID_LENGTH = 26


def _encode(number: int, length: int) -> str:
    chars = []
    for _ in range(length):
        number, digit = divmod(number, 32)
        chars.append(_ALPHABET[digit])
    return "".join(reversed(chars))


def new_id(prefix: str) -> str:
    """Return `prefix_` followed by a fresh ULID."""
    milliseconds = time.time_ns() // 1_000_000
    random_bits = secrets.randbits(80)
    return f"{prefix}_{_encode(milliseconds, 10)}{_encode(random_bits, 16)}"


def id_pattern(prefix: str) -> re.Pattern[str]:
    return re.compile(rf"^{prefix}_[{_ALPHABET}]{{{ULID_LENGTH}}}$")
