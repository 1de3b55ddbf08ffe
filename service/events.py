"""The per-job event log: ascending, gap-free `seq` numbers starting at 1.

The next number comes from the job row's `last_event_seq`, incremented by the same
UPDATE that reserves it. The row lock that UPDATE takes (PostgreSQL) or the database
write lock (SQLite) serializes writers of one job. The increment and the insert share a
transaction, so a rollback releases the number with the row and no gap or duplicate
can appear.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert, update
from sqlalchemy.orm import Session

from service.models import EventRecord, Job, utc_now


def append_event(
    session: Session,
    job_id: str,
    event_type: str,
    message: str,
    data: dict[str, Any] | None = None,
    *,
    attempt: int | None = None,
    report_key: str | None = None,
) -> int:
    """Add an event to the job's log inside the caller's transaction; return its seq.

    `attempt` and `report_key` are set for an event a worker reported with a key; the
    database stores that pair once per job.
    """
    seq = session.execute(
        update(Job)
        .where(Job.id == job_id)
        .values(last_event_seq=Job.last_event_seq + 1)
        .returning(Job.last_event_seq)
    ).scalar_one()
    session.execute(
        insert(EventRecord).values(
            job_id=job_id,
            seq=seq,
            type=event_type,
            message=message,
            data=data,
            created_at=utc_now(),
            attempt=attempt,
            report_key=report_key,
        )
    )
    return int(seq)
