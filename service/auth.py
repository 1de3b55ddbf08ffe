"""API keys (bearer, one project each, stored hashed) and per-attempt worker tokens."""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from dataclasses import dataclass

from fastapi import Request
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from service.db import Database
from service.errors import (
    ApiKeyInvalid,
    ApiKeyMissing,
    AttemptSuperseded,
    JobNotFound,
    TokenNotForJob,
    WorkerTokenInvalid,
)
from service.ids import new_id
from service.models import ApiKey, Attempt, Job, Project

API_KEY_PREFIX = "ck_"
WORKER_TOKEN_PREFIX = "cw_"
# Lookups of a valid key are cached this long; a revoked key keeps working until then.
KEY_CACHE_TTL_S = 10.0
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="cringe"'}


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def new_secret(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(32)


@dataclass(frozen=True)
class Principal:
    project_id: str
    key_id: str


def create_api_key(db: Database, project_name: str) -> tuple[Principal, str]:
    """Create a key for `project_name` (creating the project if new); return the secret.

    Only the hash is stored, so the secret returned here cannot be shown again.
    """
    secret = new_secret(API_KEY_PREFIX)
    with db.write() as session:
        project = session.execute(
            select(Project).where(Project.name == project_name)
        ).scalar_one_or_none()
        if project is None:
            project = Project(id=new_id("proj"), name=project_name)
            session.add(project)
            session.flush()
        key = ApiKey(
            id=new_id("key"), project_id=project.id, key_hash=hash_secret(secret),
            prefix=secret[:10],
        )
        session.add(key)
    return Principal(project_id=project.id, key_id=key.id), secret


def _bearer(request: Request, missing_message: str) -> str:
    header = request.headers.get("authorization")
    if not header:
        raise ApiKeyMissing(missing_message, param="Authorization", headers=_CHALLENGE)
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiKeyInvalid(
            "Authorization header is not of the form 'Bearer <key>'",
            param="Authorization", headers=_CHALLENGE,
        )
    return token.strip()


class KeyCache:
    """Key hash -> principal, for KEY_CACHE_TTL_S, so a poll costs one query, not two."""

    def __init__(self) -> None:
        self._entries: dict[str, tuple[float, Principal]] = {}
        self._lock = threading.Lock()

    def get(self, key_hash: str) -> Principal | None:
        with self._lock:
            entry = self._entries.get(key_hash)
        if entry is None or entry[0] < time.monotonic():
            return None
        return entry[1]

    def put(self, key_hash: str, principal: Principal) -> None:
        with self._lock:
            if len(self._entries) > 10_000:
                self._entries.clear()
            self._entries[key_hash] = (time.monotonic() + KEY_CACHE_TTL_S, principal)


async def authenticate(request: Request) -> Principal:
    """Return the project of the bearer API key, or raise a 401 (a FastAPI dependency).

    It is asynchronous so that a cached key costs no trip through the thread pool. A key
    missing from the cache is looked up in a worker thread.
    """
    secret = _bearer(request, "missing API key; send 'Authorization: Bearer <key>' "
                     "(create one with `cringe keys create --project NAME`)")
    key_hash = hash_secret(secret)
    cache: KeyCache = request.app.state.key_cache
    cached = cache.get(key_hash)
    if cached is not None:
        return cached
    principal = await run_in_threadpool(_lookup_key, request.app.state.db, key_hash)
    cache.put(key_hash, principal)
    return principal


def _lookup_key(db: Database, key_hash: str) -> Principal:
    with db.read() as session:
        row = session.execute(
            select(ApiKey.id, ApiKey.project_id).where(
                ApiKey.key_hash == key_hash, ApiKey.revoked_at.is_(None)
            )
        ).one_or_none()
    if row is None:
        raise ApiKeyInvalid(
            "invalid API key; check the key, or create one with "
            "`cringe keys create --project NAME`",
            param="Authorization", headers=_CHALLENGE,
        )
    return Principal(project_id=row.project_id, key_id=row.id)


@dataclass(frozen=True)
class WorkerIdentity:
    job_id: str
    attempt: int


def authenticate_worker(request: Request, job_id: str) -> WorkerIdentity:
    """Check a worker's token: its own attempt's job, and still that job's attempt.

    A token of an older attempt is refused once a newer attempt owns the job, so a
    worker that lost ownership (fencing) cannot overwrite what the new one reports.
    """
    secret = _bearer(request, "missing worker token; send 'Authorization: Bearer <token>'")
    db: Database = request.app.state.db
    with db.read() as session:
        row = session.execute(
            select(Attempt.job_id, Attempt.number, Job.attempt)
            .join(Job, Job.id == Attempt.job_id)
            .where(Attempt.token_hash == hash_secret(secret))
        ).one_or_none()
        if row is None:
            raise WorkerTokenInvalid(
                "invalid worker token; use the token given to this attempt at launch",
                param="Authorization", headers=_CHALLENGE,
            )
        if row.job_id != job_id:
            exists = session.get(Job, job_id) is not None
            if not exists:
                raise JobNotFound(f"job {job_id!r} not found")
            raise TokenNotForJob(
                f"this worker token belongs to job {row.job_id!r}, not {job_id!r}",
                param="Authorization",
            )
    if row.number != row.attempt:
        raise AttemptSuperseded(
            f"attempt {row.number} of job {job_id} no longer owns it; attempt "
            f"{row.attempt} does. Stop this worker.",
            details=[{"attempt": row.number, "current_attempt": row.attempt}],
        )
    return WorkerIdentity(job_id=job_id, attempt=row.number)
