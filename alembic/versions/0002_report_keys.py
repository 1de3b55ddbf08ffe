"""Report keys: a worker's event or evaluation is stored once per job, attempt and key.

A worker that lost the response to a report sends it again with the same key; the
unique index turns the repeat into a lookup of the row already stored. Rows without a
key (events the service writes itself) are not constrained, since NULLs are distinct.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-18
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("job_events") as batch:
        batch.add_column(sa.Column("attempt", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("report_key", sa.String(255), nullable=True))
    op.create_index(op.f("ix_job_events_job_id_attempt_report_key"), "job_events",
                    ["job_id", "attempt", "report_key"], unique=True)
    with op.batch_alter_table("evaluations") as batch:
        batch.add_column(sa.Column("report_key", sa.String(255), nullable=True))
    op.create_index(op.f("ix_evaluations_job_id_attempt_report_key"), "evaluations",
                    ["job_id", "attempt", "report_key"], unique=True)


def downgrade() -> None:
    op.drop_index(op.f("ix_evaluations_job_id_attempt_report_key"), "evaluations")
    with op.batch_alter_table("evaluations") as batch:
        batch.drop_column("report_key")
    op.drop_index(op.f("ix_job_events_job_id_attempt_report_key"), "job_events")
    with op.batch_alter_table("job_events") as batch:
        batch.drop_column("report_key")
        batch.drop_column("attempt")
