"""Log records stamped with the job id, attempt and rank they come from."""

from __future__ import annotations

import logging
import os
from collections.abc import MutableMapping
from typing import Any

JOB_ID_ENV = "CRINGE_JOB_ID"
ATTEMPT_ENV = "CRINGE_ATTEMPT"


def job_stamp(rank: int | None = None) -> dict[str, Any]:
    """Return the job id and attempt from the environment, with this process's rank."""
    return {
        "job_id": os.environ.get(JOB_ID_ENV, "-"),
        "attempt": int(os.environ.get(ATTEMPT_ENV, "0") or 0),
        "rank": rank if rank is not None else "-",
    }


class StampedLogger(logging.LoggerAdapter):
    """Prefix every message with `[job attempt rank]` and attach the ids as extras."""

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, Any]:
        stamp = self.extra or {}
        prefix = f"[{stamp.get('job_id')} a{stamp.get('attempt')} r{stamp.get('rank')}]"
        kwargs.setdefault("extra", {}).update(stamp)
        return f"{prefix} {msg}", kwargs


def stamped(name: str, rank: int | None = None) -> StampedLogger:
    return StampedLogger(logging.getLogger(name), job_stamp(rank))
