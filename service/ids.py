"""Opaque, prefixed, time-ordered ids (`job_01J...`).

The 26 characters after the prefix are a ULID: 48 bits of milliseconds since the epoch
and 80 random bits in Crockford's base32, so ids sort by creation time to the
millisecond and a lexical order on the id column is a stable order for cursors.

Within one process the ids are also monotonic: an id made in the same millisecond as
the one before it takes the previous random part plus one, so rows that one request
inserts in a row (a step's checkpoints, say) list in the order they were made.
"""

from __future__ import annotations

import re
import secrets
import threading
import time

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
ULID_LENGTH = 26


def _encode(number: int, length: int) -> str:
    chars = []
    for _ in range(length):
        number, digit = divmod(number, 32)
        chars.append(_ALPHABET[digit])
    return "".join(reversed(chars))


_RANDOM_LIMIT = 2**80
_lock = threading.Lock()
_last = (0, 0)  # (milliseconds, random bits) of the previous id made in this process


def new_id(prefix: str) -> str:
    """Return `prefix_` followed by a fresh ULID, greater than the previous one made here."""
    global _last
    with _lock:
        milliseconds = time.time_ns() // 1_000_000
        last_milliseconds, last_random = _last
        if milliseconds <= last_milliseconds:
            # The same millisecond, or a clock that stepped back: count on from the last id.
            milliseconds, random_bits = last_milliseconds, last_random + 1
            if random_bits >= _RANDOM_LIMIT:
                milliseconds, random_bits = milliseconds + 1, secrets.randbits(79)
        else:
            # 79 bits leave room to count on within the millisecond without overflowing.
            random_bits = secrets.randbits(79)
        _last = (milliseconds, random_bits)
    return f"{prefix}_{_encode(milliseconds, 10)}{_encode(random_bits, 16)}"


def id_pattern(prefix: str) -> re.Pattern[str]:
    return re.compile(rf"^{prefix}_[{_ALPHABET}]{{{ULID_LENGTH}}}$")
