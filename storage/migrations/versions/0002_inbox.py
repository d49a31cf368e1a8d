"""The intake's inbox: pushed answers and poll registrations (in versions) and refused packets.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-06

Hand-written to match ``storage/inbox.py``; ``tests/intake/test_inbox_store.py`` checks
with Alembic's autogenerate comparison that the two agree.
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Stamp = sa.DateTime(timezone=True)
# Primary keys are INTEGER on SQLite so that they are the rowid and autoincrement (BIGINT elsewhere).
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "inbox_answers",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("answer_id", sa.BigInteger(), nullable=False),
        sa.Column("poll_id", sa.BigInteger(), nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("stored_at", Stamp, nullable=False),
        sa.Column("deliveries", sa.Integer(), nullable=False),
        sa.Column("last_delivered_at", Stamp, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_inbox_answers"),
    )
    op.create_index("ix_inbox_answers_answer", "inbox_answers", ["answer_id", "id"])
    op.create_index("ix_inbox_answers_poll", "inbox_answers", ["poll_id", "stored_at", "id"])

    op.create_table(
        "inbox_polls",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("poll_id", sa.BigInteger(), nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("stored_at", Stamp, nullable=False),
        sa.Column("deliveries", sa.Integer(), nullable=False),
        sa.Column("last_delivered_at", Stamp, nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_inbox_polls"),
    )
    op.create_index("ix_inbox_polls_poll", "inbox_polls", ["poll_id", "id"])
    op.create_index("ix_inbox_polls_stored", "inbox_polls", ["stored_at", "id"])

    op.create_table(
        "inbox_refused",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("refused_at", Stamp, nullable=False),
        sa.Column("endpoint", sa.String(40), nullable=False),
        sa.Column("reason", sa.String(40), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("remote", sa.String(64), nullable=True),
        sa.Column("poll_id", sa.BigInteger(), nullable=True),
        sa.Column("answer_id", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_inbox_refused"),
    )
    op.create_index("ix_inbox_refused_at", "inbox_refused", ["refused_at"])


def downgrade() -> None:
    op.drop_index("ix_inbox_refused_at", table_name="inbox_refused")
    op.drop_table("inbox_refused")
    op.drop_index("ix_inbox_polls_stored", table_name="inbox_polls")
    op.drop_index("ix_inbox_polls_poll", table_name="inbox_polls")
    op.drop_table("inbox_polls")
    op.drop_index("ix_inbox_answers_poll", table_name="inbox_answers")
    op.drop_index("ix_inbox_answers_answer", table_name="inbox_answers")
    op.drop_table("inbox_answers")
