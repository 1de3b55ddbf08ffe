"""The executor interface: what the dispatcher needs from whatever runs an attempt.

This service ships `LocalExecutor` (a subprocess on this machine); a Ray executor can
implement the same three calls.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol


@dataclass(frozen=True)
class Launch:
    """Everything an executor needs to start one attempt of a job."""

    job_id: str
    attempt: int
    kind: str
    resolved_spec: dict[str, Any]
    output_dir: Path  # shared by all attempts of the job, so a retry can resume
    resume: bool
    worker_token: str  # lets the attempt report to the internal endpoints


class ExecutionState(StrEnum):
    RUNNING = "running"
    EXITED = "exited"  # ended and left an exit code
    LOST = "lost"  # gone without an exit code: killed, or its machine went away


@dataclass(frozen=True)
class Execution:
    state: ExecutionState
    exit_code: int | None = None
    detail: str | None = None


class ExecutorUnavailable(Exception):
    """The executor cannot take work now; the job stays queued and is tried again."""


class Executor(Protocol):
    name: str

    def submit(self, launch: Launch) -> str:
        """Start the attempt and return its handle.

        Must be idempotent per (job_id, attempt): submitting an attempt that is already
        running returns its existing handle, so a dispatcher that crashed after starting
        it and before recording it does not start it twice.
        """
        ...

    def status(self, handle: str) -> Execution: ...

    def cancel(self, handle: str) -> None:
        """Ask the attempt to stop; repeated calls escalate, and never raise if it ended."""
        ...
