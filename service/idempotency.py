"""`Idempotency-Key`: a retried mutating request returns the first one's response.

A key belongs to a project and an endpoint (its scope). The first request reserves the
key in its own short transaction and stores its response in the same transaction as its
work, so a job and the record of the request that made it commit together. A repeat
with the same body replays the stored response. A repeat with another body is a 422, and
one while the first is still in flight is a 409. A request that fails releases its key, so the
client can retry it. A reservation whose request died without releasing it (a crashed
process) is taken over after `idempotency_in_flight_timeout_s`.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from service.db import Database, insert_or_ignore
from service.errors import IdempotencyKeyInFlight, IdempotencyKeyInvalid, IdempotencyKeyReused
from service.models import IdempotencyRecord, utc_now
from service.settings import Settings

HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 255
_KEY_PATTERN = re.compile(r"^[\x21-\x7e]+$")  # visible ASCII, no spaces


@dataclass(frozen=True)
class Reservation:
    project_id: str
    scope: str
    key: str
    request_hash: str


@dataclass(frozen=True)
class Replay:
    status: int
    body: dict[str, Any]


def request_hash(scope: str, body: Any) -> str:
    """Hash of the endpoint and the parsed body, so key order and spacing do not matter."""
    canonical = json.dumps([scope, body], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def check_key(key: str) -> str:
    if len(key) > MAX_KEY_LENGTH or not _KEY_PATTERN.match(key):
        raise IdempotencyKeyInvalid(
            f"{HEADER} {key[:40]!r} is invalid; use 1 to {MAX_KEY_LENGTH} visible ASCII "
            "characters without spaces, such as a UUID",
            param=HEADER,
        )
    return key


def reserve(db: Database, settings: Settings, reservation: Reservation) -> Replay | None:
    """Reserve the key for this request, or return the stored response of the first one."""
    now = utc_now()
    primary_key = (
        IdempotencyRecord.project_id == reservation.project_id,
        IdempotencyRecord.scope == reservation.scope,
        IdempotencyRecord.key == reservation.key,
    )
    with db.write() as session:
        inserted = session.execute(
            insert_or_ignore(session, IdempotencyRecord)
            .values(
                project_id=reservation.project_id,
                scope=reservation.scope,
                key=reservation.key,
                request_hash=reservation.request_hash,
                state="in_flight",
                created_at=now,
                locked_at=now,
            )
            .on_conflict_do_nothing()
            .returning(IdempotencyRecord.key)
        ).first()
        if inserted is not None:
            return None

        record = session.execute(select(IdempotencyRecord).where(*primary_key)).scalar_one()
        expired = record.created_at < now - timedelta(seconds=settings.idempotency_ttl_s)
        abandoned = record.state == "in_flight" and record.locked_at < now - timedelta(
            seconds=settings.idempotency_in_flight_timeout_s
        )
        if expired or (abandoned and record.request_hash == reservation.request_hash):
            # Take the key over; the compare on locked_at lets one taker win a race.
            taken = session.execute(
                update(IdempotencyRecord)
                .where(*primary_key, IdempotencyRecord.locked_at == record.locked_at)
                .values(request_hash=reservation.request_hash, state="in_flight",
                        response_status=None, response_body=None, created_at=now,
                        locked_at=now)
            )
            if taken.rowcount == 1:  # type: ignore[attr-defined]
                return None
            raise _in_flight(reservation)

        if record.request_hash != reservation.request_hash:
            raise IdempotencyKeyReused(
                f"{HEADER} {reservation.key!r} was already used for a request with a "
                "different body; send a new key for a new request, or repeat the original "
                "body to get its response",
                param=HEADER,
            )
        if record.state == "completed" and record.response_status is not None:
            return Replay(status=record.response_status, body=record.response_body or {})
        raise _in_flight(reservation)


def _in_flight(reservation: Reservation) -> IdempotencyKeyInFlight:
    return IdempotencyKeyInFlight(
        f"a request with {HEADER} {reservation.key!r} is still in progress; retry after it "
        "finishes to get its response",
        param=HEADER,
        headers={"Retry-After": "1"},
    )


def complete(session: Session, reservation: Reservation, status: int, body: dict[str, Any]) -> None:
    """Store the response, inside the transaction that does the request's work."""
    session.execute(
        update(IdempotencyRecord)
        .where(
            IdempotencyRecord.project_id == reservation.project_id,
            IdempotencyRecord.scope == reservation.scope,
            IdempotencyRecord.key == reservation.key,
        )
        .values(state="completed", response_status=status, response_body=body)
    )


def release(db: Database, reservation: Reservation) -> None:
    """Forget a reservation whose request failed, so that a retry runs it again."""
    with db.write() as session:
        session.execute(
            delete(IdempotencyRecord).where(
                IdempotencyRecord.project_id == reservation.project_id,
                IdempotencyRecord.scope == reservation.scope,
                IdempotencyRecord.key == reservation.key,
                IdempotencyRecord.state == "in_flight",
            )
        )


def purge_expired(session: Session, ttl_s: int) -> int:
    result = session.execute(
        delete(IdempotencyRecord).where(
            IdempotencyRecord.created_at < utc_now() - timedelta(seconds=ttl_s)
        )
    )
    return int(result.rowcount)  # type: ignore[attr-defined]
