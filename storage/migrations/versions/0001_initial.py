"""Initial schema: answers, polls, watermarks, runs, locks.

Revision ID: 0001
Revises:
Create Date: 2026-11-27

Hand-written to match ``storage/tables.py`` (``test_migrations_match_tables``
checks with Alembic's autogenerate comparison that nothing differs). Datetimes
are ``TIMESTAMP WITH TIME ZONE`` (text in UTC on SQLite), JSON is ``JSON``.
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Stamp = sa.DateTime(timezone=True)
# Primary keys are INTEGER on SQLite so that they are the rowid (BIGINT elsewhere).
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "answers",
        sa.Column("answer_id", BigId, autoincrement=False, nullable=False),
        sa.Column("poll_id", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", Stamp, nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("problems", sa.JSON(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("retryable", sa.Boolean(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("contact_id", sa.BigInteger(), nullable=True),
        sa.Column("deal_ids", sa.JSON(), nullable=False),
        sa.Column("pushed_hash", sa.String(64), nullable=True),
        sa.Column("first_seen_at", Stamp, nullable=False),
        sa.Column("last_attempt_at", Stamp, nullable=True),
        sa.Column("pushed_at", Stamp, nullable=True),
        sa.Column("run_id", sa.String(64), nullable=True),
        sa.PrimaryKeyConstraint("answer_id", name="pk_answers"),
    )
    op.create_index("ix_answers_poll_id", "answers", ["poll_id"])
    op.create_index("ix_answers_status", "answers", ["status", "answer_id"])

    op.create_table(
        "polls",
        sa.Column("poll_id", BigId, autoincrement=False, nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("updated_at", Stamp, nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("item_id", sa.BigInteger(), nullable=True),
        sa.Column("assigned_by_id", sa.BigInteger(), nullable=True),
        sa.Column("pushed_hash", sa.String(64), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("problems", sa.JSON(), nullable=False),
        sa.Column("first_seen_at", Stamp, nullable=False),
        sa.Column("pushed_at", Stamp, nullable=True),
        sa.Column("run_id", sa.String(64), nullable=True),
        sa.PrimaryKeyConstraint("poll_id", name="pk_polls"),
    )
    op.create_index("ix_polls_status", "polls", ["status"])

    op.create_table(
        "watermarks",
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("value", Stamp, nullable=False),
        sa.Column("updated_at", Stamp, nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_watermarks"),
    )

    op.create_table(
        "runs",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("command", sa.String(20), nullable=False),
        sa.Column("started_at", Stamp, nullable=False),
        sa.Column("finished_at", Stamp, nullable=True),
        sa.Column("dry_run", sa.Boolean(), nullable=False),
        sa.Column("outcome", sa.String(20), nullable=False),
        sa.Column("since", Stamp, nullable=True),
        sa.Column("poll_filter", sa.JSON(), nullable=True),
        sa.Column("counts", sa.JSON(), nullable=False),
        sa.Column("requests", sa.Integer(), nullable=False),
        sa.Column("retries", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_runs"),
    )
    op.create_index("uq_runs_run_id", "runs", ["run_id"], unique=True)
    op.create_index("ix_runs_outcome", "runs", ["outcome"])

    op.create_table(
        "locks",
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("holder", sa.String(200), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("since", Stamp, nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_locks"),
    )


def downgrade() -> None:
    op.drop_table("locks")
    op.drop_index("ix_runs_outcome", table_name="runs")
    op.drop_index("uq_runs_run_id", table_name="runs")
    op.drop_table("runs")
    op.drop_table("watermarks")
    op.drop_index("ix_polls_status", table_name="polls")
    op.drop_table("polls")
    op.drop_index("ix_answers_status", table_name="answers")
    op.drop_index("ix_answers_poll_id", table_name="answers")
    op.drop_table("answers")
