"""Initial schema: projects, API keys, jobs, attempts, events, results, idempotency keys.

Revision ID: 0001
Revises:
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Written out here rather than imported from service.models, so that this migration keeps
# creating the same schema after the models change.
JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def _time(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _job_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["job_id"], ["jobs.id"], name=op.f(f"fk_{table}_job_id_jobs"), ondelete="CASCADE"
    )


def _project_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["project_id"], ["projects.id"], name=op.f(f"fk_{table}_project_id_projects"),
        ondelete="CASCADE",
    )


def upgrade() -> None:
    op.create_table(
        "projects",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        _time("created_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_projects")),
        sa.UniqueConstraint("name", name=op.f("uq_projects_name")),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("project_id", sa.String(40), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("prefix", sa.String(16), nullable=False),
        _time("created_at"),
        _time("revoked_at", nullable=True),
        _project_fk("api_keys"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
        sa.UniqueConstraint("key_hash", name=op.f("uq_api_keys_key_hash")),
    )
    op.create_table(
        "idempotency_keys",
        sa.Column("project_id", sa.String(40), nullable=False),
        sa.Column("scope", sa.String(128), nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("response_status", sa.Integer(), nullable=True),
        sa.Column("response_body", JSON, nullable=True),
        _time("created_at"),
        _time("locked_at"),
        _project_fk("idempotency_keys"),
        sa.PrimaryKeyConstraint("project_id", "scope", "key", name=op.f("pk_idempotency_keys")),
    )
    op.create_index(op.f("ix_idempotency_keys_created_at"), "idempotency_keys", ["created_at"])

    op.create_table(
        "jobs",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("project_id", sa.String(40), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("phase", sa.String(64), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("last_event_seq", sa.Integer(), nullable=False),
        sa.Column("spec", JSON, nullable=False),
        sa.Column("resolved_spec", JSON, nullable=False),
        sa.Column("metadata", JSON, nullable=False),
        sa.Column("error", JSON, nullable=True),
        sa.Column("progress", JSON, nullable=True),
        sa.Column("latest_metrics", JSON, nullable=True),
        sa.Column("output_dir", sa.Text(), nullable=True),
        _time("created_at"),
        _time("updated_at"),
        _time("started_at", nullable=True),
        _time("finished_at", nullable=True),
        _project_fk("jobs"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_jobs")),
    )
    op.create_index(op.f("ix_jobs_project_id_id"), "jobs", ["project_id", "id"])
    op.create_index(op.f("ix_jobs_project_id_kind_id"), "jobs", ["project_id", "kind", "id"])
    op.create_index(op.f("ix_jobs_project_id_status_id"), "jobs", ["project_id", "status", "id"])
    op.create_index(op.f("ix_jobs_status_id"), "jobs", ["status", "id"])

    op.create_table(
        "attempts",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("job_id", sa.String(40), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("executor", sa.String(32), nullable=False),
        sa.Column("handle", sa.Text(), nullable=True),
        sa.Column("resume", sa.Boolean(), nullable=False),
        sa.Column("metrics_offset", sa.BigInteger(), nullable=False),
        _time("launched_at"),
        _time("ended_at", nullable=True),
        sa.Column("outcome", sa.String(16), nullable=True),
        sa.Column("exit_code", sa.Integer(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        _job_fk("attempts"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_attempts")),
        sa.UniqueConstraint("job_id", "number", name=op.f("uq_attempts_job_id_number")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_attempts_token_hash")),
    )
    op.create_table(
        "job_events",
        sa.Column("job_id", sa.String(40), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("data", JSON, nullable=True),
        _time("created_at"),
        _job_fk("job_events"),
        sa.PrimaryKeyConstraint("job_id", "seq", name=op.f("pk_job_events")),
    )
    op.create_table(
        "metric_points",
        sa.Column("job_id", sa.String(40), nullable=False),
        sa.Column("step", sa.BigInteger(), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("iteration", sa.Integer(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        _job_fk("metric_points"),
        sa.PrimaryKeyConstraint(
            "job_id", "step", "name", "iteration", "attempt", name=op.f("pk_metric_points")
        ),
    )
    op.create_index(
        op.f("ix_metric_points_job_id_name_step"), "metric_points", ["job_id", "name", "step"]
    )
    _create_result_tables()


def _create_result_tables() -> None:
    op.create_table(
        "checkpoints",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("job_id", sa.String(40), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("step", sa.BigInteger(), nullable=False),
        sa.Column("round", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=True),
        sa.Column("metrics", JSON, nullable=True),
        _time("created_at"),
        _job_fk("checkpoints"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_checkpoints")),
        sa.UniqueConstraint("job_id", "path", name=op.f("uq_checkpoints_job_id_path")),
    )
    op.create_index(op.f("ix_checkpoints_job_id_step"), "checkpoints", ["job_id", "step"])
    op.create_table(
        "evaluations",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("job_id", sa.String(40), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("round", sa.Integer(), nullable=True),
        sa.Column("candidate", sa.String(256), nullable=False),
        sa.Column("reference", sa.String(256), nullable=False),
        sa.Column("judge", sa.String(256), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.Column("wins", sa.Integer(), nullable=False),
        sa.Column("ties", sa.Integer(), nullable=False),
        sa.Column("losses", sa.Integer(), nullable=False),
        sa.Column("win_rate", sa.Float(), nullable=False),
        sa.Column("ci_low", sa.Float(), nullable=False),
        sa.Column("ci_high", sa.Float(), nullable=False),
        _time("created_at"),
        _job_fk("evaluations"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_evaluations")),
    )
    op.create_index(op.f("ix_evaluations_job_id_id"), "evaluations", ["job_id", "id"])
    op.create_table(
        "iterations",
        sa.Column("job_id", sa.String(40), nullable=False),
        sa.Column("round", sa.Integer(), nullable=False),
        sa.Column("phase", sa.String(64), nullable=True),
        sa.Column("pairs_generated", sa.Integer(), nullable=True),
        sa.Column("pairs_kept", sa.Integer(), nullable=True),
        sa.Column("reward_stats", JSON, nullable=True),
        sa.Column("checkpoint", sa.Text(), nullable=True),
        sa.Column("win_rate", sa.Float(), nullable=True),
        _time("updated_at"),
        _job_fk("iterations"),
        sa.PrimaryKeyConstraint("job_id", "round", name=op.f("pk_iterations")),
    )


def downgrade() -> None:
    for table in (
        "iterations", "evaluations", "checkpoints", "metric_points", "job_events", "attempts",
        "jobs", "idempotency_keys", "api_keys", "projects",
    ):
        op.drop_table(table)
