"""A small synchronous client of the `/v1` REST API, on httpx.

Every mutating request carries an `Idempotency-Key`, so the retries here (after a
timeout, a dropped connection or a 503) can never create a second job.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx

from service.client.config import ClientConfig

RETRIES = 3
RETRY_BACKOFF_S = 1.0
TIMEOUT_S = 30.0


@dataclass
class ApiError(Exception):
    """An error response of the server, from its `{"error": {...}}` envelope."""

    status: int
    code: str
    message: str
    details: list[dict[str, Any]] = field(default_factory=list)

    def __str__(self) -> str:
        return f"{self.message} (HTTP {self.status}, {self.code})"


class ApiUnreachable(Exception):
    """No response came from the server after the retries."""


def _error_of(response: httpx.Response) -> ApiError:
    try:
        envelope = response.json()["error"]
        return ApiError(response.status_code, str(envelope["code"]), str(envelope["message"]),
                        list(envelope.get("details") or []))
    except (ValueError, KeyError, TypeError):
        # Not this API's envelope: a proxy's page or another server on that port.
        text = response.text.strip().replace("\n", " ")[:200]
        return ApiError(response.status_code, "unexpected_response",
                        f"unexpected response from {response.request.url}: {text!r}; check "
                        "that the API URL points at a cringe server")


class ApiClient:
    def __init__(self, config: ClientConfig, http: httpx.Client | None = None) -> None:
        self.config = config
        self.http = http or httpx.Client(base_url=config.api_url, timeout=TIMEOUT_S)
        self.http.headers["Authorization"] = f"Bearer {config.api_key}"

    def close(self) -> None:
        self.http.close()

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Send a request, retrying transport failures and 503s; raise ApiError on other
        4xx and 5xx responses."""
        last_failure = ""
        for attempt in range(RETRIES):
            if attempt:
                time.sleep(RETRY_BACKOFF_S * 2 ** (attempt - 1))
            try:
                response = self.http.request(method, path, **kwargs)
            except httpx.TransportError as error:
                last_failure = f"{type(error).__name__}: {error}"
                continue
            if response.status_code == 503:
                last_failure = str(_error_of(response))
                continue
            if response.status_code >= 400:
                raise _error_of(response)
            return response
        raise ApiUnreachable(
            f"cannot reach the cringe API at {self.config.api_url} ({last_failure}) after "
            f"{RETRIES} tries; start it with `cringe serve` or point CRINGE_API_URL at it"
        )

    def submit(self, spec: dict[str, Any], metadata: dict[str, str],
               idempotency_key: str | None = None) -> dict[str, Any]:
        headers = {"Idempotency-Key": idempotency_key or str(uuid.uuid4())}
        body = {"spec": spec, "metadata": metadata}
        job: dict[str, Any] = self.request("POST", "/v1/jobs", json=body,
                                           headers=headers).json()
        return job

    def list_jobs(self, status: str | None, kind: str | None, limit: int,
                  cursor: str | None = None) -> dict[str, Any]:
        params = {"status": status, "kind": kind, "limit": limit, "cursor": cursor}
        page: dict[str, Any] = self.request(
            "GET", "/v1/jobs", params={k: v for k, v in params.items() if v is not None}
        ).json()
        return page

    def get_job(self, job_id: str) -> dict[str, Any]:
        job: dict[str, Any] = self.request("GET", f"/v1/jobs/{job_id}").json()
        return job

    def events_after(self, job_id: str, after: int) -> list[dict[str, Any]]:
        page = self.request("GET", f"/v1/jobs/{job_id}/events",
                            params={"after": after, "limit": 200}).json()
        events: list[dict[str, Any]] = page["data"]
        return events

    def evaluations(self, job_id: str) -> list[dict[str, Any]]:
        page = self.request("GET", f"/v1/jobs/{job_id}/evaluations",
                            params={"limit": 200}).json()
        rows: list[dict[str, Any]] = page["data"]
        return rows

    def cancel(self, job_id: str, idempotency_key: str | None = None) -> dict[str, Any]:
        headers = {"Idempotency-Key": idempotency_key or str(uuid.uuid4())}
        job: dict[str, Any] = self.request("POST", f"/v1/jobs/{job_id}/cancel",
                                           headers=headers).json()
        return job
