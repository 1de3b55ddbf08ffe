"""Report an attempt's progress to the service's internal endpoints, surviving outages.

Every write goes into an in-memory FIFO buffer first; a background thread sends the
buffer in order. When the service is unreachable, times out or answers 5xx or 429, the
head of the buffer is retried with exponential backoff and nothing is dropped. Each
write carries a key (attempt, name, step). The service stores each one once: metric
points and checkpoints by their own fields, events by `data.key` and evaluations by
`key`, so a write resent after a lost response adds nothing. The client never enqueues
one key twice, so a replayed step after a resume sends nothing new.

A 409 `attempt_superseded` means a newer attempt owns the job: the client stops, drops
its buffer and sets `superseded`, and the caller should stop working. Any other 4xx is
a bug in what was sent; it is logged with the service's message and dropped, since
sending it again cannot succeed.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import httpx

logger = logging.getLogger(__name__)

_RETRY_STATUS = {408, 425, 429, 500, 502, 503, 504}
MAX_POINTS_PER_REQUEST = 1000


@dataclass
class PendingWrite:
    resource: str  # status, events, metrics, checkpoints, iterations, evaluations
    body: dict[str, Any]
    key: str


class ReportClient:
    def __init__(
        self,
        base_url: str,
        job_id: str,
        attempt: int,
        token: str,
        *,
        timeout_s: float = 10.0,
        initial_backoff_s: float = 0.2,
        max_backoff_s: float = 30.0,
    ) -> None:
        self.job_id = job_id
        self.attempt = attempt
        self.initial_backoff_s = initial_backoff_s
        self.max_backoff_s = max_backoff_s
        self.superseded = False
        self.retries = 0
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"),
            headers={"Authorization": f"Bearer {token}"},
            timeout=timeout_s,
        )
        self._buffer: deque[PendingWrite] = deque()
        self._keys: set[str] = set()
        self._lock = threading.Condition()
        self._closing = False
        self._thread = threading.Thread(target=self._send_loop, name="report-client",
                                        daemon=True)
        self._thread.start()

    # ---- writes ---------------------------------------------------------------------

    def _enqueue(self, resource: str, body: dict[str, Any], key: str) -> None:
        with self._lock:
            if self.superseded or key in self._keys:
                return
            self._keys.add(key)
            self._buffer.append(PendingWrite(resource, body, key))
            self._lock.notify()

    def status(self, state: str, *, phase: str | None = None, step: int | None = None,
               total_steps: int | None = None, round_index: int | None = None,
               error: dict[str, Any] | None = None) -> None:
        body = {"state": state, "phase": phase, "step": step, "total_steps": total_steps,
                "round": round_index, "error": error}
        body = {name: value for name, value in body.items() if value is not None}
        key = f"{self.attempt}:status:{state}:{phase}:{round_index}:{step}"
        self._enqueue("status", body, key)

    def event(self, name: str, message: str, *, step: int | None = None, level: str = "info",
              data: dict[str, Any] | None = None) -> None:
        key = f"{self.attempt}:{name}:{step}"
        body = {"events": [{"level": level, "message": message,
                            "data": {**(data or {}), "name": name, "step": step, "key": key}}]}
        self._enqueue("events", body, key)

    def metrics(self, step: int, values: dict[str, float | None], iteration: int = 0) -> None:
        points = [{"name": name, "step": step, "value": _finite_or_none(value),
                   "iteration": iteration} for name, value in sorted(values.items())]
        for start in range(0, len(points), MAX_POINTS_PER_REQUEST):
            chunk = points[start : start + MAX_POINTS_PER_REQUEST]
            key = f"{self.attempt}:metrics:{iteration}:{step}:{start}"
            self._enqueue("metrics", {"points": chunk}, key)

    def checkpoint(self, step: int, kind: str, path: str, *, round_index: int | None = None,
                   size_bytes: int | None = None, metrics: dict[str, Any] | None = None) -> None:
        body = {"step": step, "kind": kind, "path": path, "round": round_index,
                "size_bytes": size_bytes, "metrics": metrics}
        key = f"{self.attempt}:checkpoint:{kind}:{round_index}:{step}"
        self._enqueue("checkpoints", {k: v for k, v in body.items() if v is not None}, key)

    def iteration(self, round_index: int, fields: dict[str, Any]) -> None:
        # The service upserts a round, so every report of it is sent (the last one wins).
        key = f"{self.attempt}:iteration:{round_index}:{time.monotonic_ns()}"
        self._enqueue("iterations", {"round": round_index, **fields}, key)

    def evaluation(self, body: dict[str, Any]) -> None:
        key = f"{self.attempt}:evaluation:{body.get('round')}:{body['candidate']}"
        self._enqueue("evaluations", {**body, "key": key}, key)

    # ---- sending --------------------------------------------------------------------

    def pending(self) -> int:
        with self._lock:
            return len(self._buffer)

    def flush(self, timeout_s: float = 60.0) -> bool:
        """Wait until the buffer is sent; False when `timeout_s` passed first."""
        deadline = time.monotonic() + timeout_s
        with self._lock:
            while self._buffer and not self.superseded:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._lock.wait(min(remaining, 0.5))
        return True

    def close(self, timeout_s: float = 60.0) -> bool:
        """Send what is buffered (up to `timeout_s`), then stop the sender thread."""
        sent = self.flush(timeout_s)
        with self._lock:
            self._closing = True
            self._lock.notify_all()
        self._thread.join(timeout=5)
        self._http.close()
        if not sent:
            logger.error("job %s attempt %d: %d reports still unsent at close", self.job_id,
                         self.attempt, self.pending())
        return sent

    def _send_loop(self) -> None:
        backoff_s = self.initial_backoff_s
        while True:
            with self._lock:
                while not self._buffer and not self._closing:
                    self._lock.wait()
                if self._closing and not self._buffer:
                    return
                write = self._buffer[0]
            outcome = self._send(write)
            with self._lock:
                if outcome != "retry":
                    if self._buffer and self._buffer[0] is write:
                        self._buffer.popleft()
                    self._lock.notify_all()
                if self._closing and outcome == "retry":
                    return
            if outcome == "retry":
                # Jitter spreads the retries of many workers after one service restart.
                time.sleep(backoff_s * random.uniform(0.5, 1.0))
                backoff_s = min(backoff_s * 2, self.max_backoff_s)
            else:
                backoff_s = self.initial_backoff_s

    def _send(self, write: PendingWrite) -> str:
        """Post one write; return 'sent', 'dropped' or 'retry'."""
        url = f"/v1/internal/jobs/{self.job_id}/{write.resource}"
        try:
            response = self._http.post(url, json=write.body)
        except httpx.TransportError as error:
            self.retries += 1
            logger.warning("job %s attempt %d: report %s failed (%s); will retry",
                           self.job_id, self.attempt, write.key, type(error).__name__)
            return "retry"
        if response.status_code < 300:
            return "sent"
        if response.status_code in _RETRY_STATUS:
            self.retries += 1
            logger.warning("job %s attempt %d: report %s got HTTP %d; will retry", self.job_id,
                           self.attempt, write.key, response.status_code)
            return "retry"
        code = _error_code(response)
        if response.status_code == 409 and code == "attempt_superseded":
            logger.error("job %s attempt %d: a newer attempt owns the job; reporting stops",
                         self.job_id, self.attempt)
            with self._lock:
                self.superseded = True
                self._buffer.clear()
            return "dropped"
        logger.error("job %s attempt %d: report %s rejected with HTTP %d: %s", self.job_id,
                     self.attempt, write.key, response.status_code, response.text[:500])
        return "dropped"


def _error_code(response: httpx.Response) -> str | None:
    try:
        return str(response.json()["error"]["code"])
    except (ValueError, KeyError, TypeError):
        return None


def _finite_or_none(value: float | None) -> float | None:
    if value is None or value != value or value in (float("inf"), float("-inf")):
        return None
    return float(value)
