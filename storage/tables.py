"""The store's tables (SQLModel, ``table=True``) and the status values they hold.

Every datetime column is a ``UTCDateTime``: aware datetimes go in, they are stored
as UTC (timestamptz on Postgres, ISO text on SQLite) and come back aware-UTC on
both backends; a naive datetime is refused because its instant is unknown.
JSON columns hold plain JSON (dicts, lists) exactly as the ledger wrote them.

The schema itself is created by the Alembic migrations in ``storage/migrations``;
``tests/storage/test_migrations.py`` checks that they and these classes agree.
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, Index, Integer, String, Text
from sqlalchemy.engine import Dialect
from sqlalchemy.types import DateTime, TypeDecorator
from sqlmodel import Field, SQLModel

metadata = SQLModel.metadata

# Answer statuses: pending → in_flight → pushed | failed | needs_attention;
# an edit of a pushed answer makes it changed (pushable again).
PENDING = "pending"
CHANGED = "changed"
IN_FLIGHT = "in_flight"
PUSHED = "pushed"
FAILED = "failed"
NEEDS_ATTENTION = "needs_attention"
DELETED = "deleted"  # polls only

ANSWER_STATUSES = (PENDING, CHANGED, IN_FLIGHT, PUSHED, FAILED, NEEDS_ATTENTION)
POLL_STATUSES = (PENDING, CHANGED, PUSHED, DELETED, FAILED)

RUN_COMMANDS = ("sync", "retry", "replay", "schedule")
RUNNING = "running"
RUN_OUTCOMES = (RUNNING, "ok", "needs_attention", "aborted", "interrupted")

# BIGINT for ids; a primary key is INTEGER on SQLite so that it is the rowid (the
# table is then stored in key order, and autoincrement works); SQLite integers are
# 64-bit whatever the declared type.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator[datetime]):
    """An aware datetime stored as UTC and returned aware-UTC on every backend."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value.isoformat()} given to the store: pass an aware datetime (UTC)")
        value = value.astimezone(timezone.utc)
        if dialect.name == "sqlite":
            # SQLite keeps text; drop the offset so every stored value sorts as UTC.
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


class AnswerRow(SQLModel, table=True):
    """One survey answer as staged from the platform, and how far its push got."""

    __tablename__ = "answers"
    __table_args__ = (
        Index("ix_answers_poll_id", "poll_id"),
        # status first: "what to push" and counts read it; answer_id second so the
        # chunked, answer_id-ordered scan of one status walks the index in order.
        Index("ix_answers_status", "status", "answer_id"),
    )

    answer_id: int = Field(primary_key=True, sa_type=BigId, sa_column_kwargs={"autoincrement": False})
    poll_id: int = Field(sa_type=BigInteger, nullable=False)
    updated_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    content_hash: str = Field(sa_type=String(64), nullable=False)
    payload: dict[str, Any] = Field(default_factory=dict, sa_type=JSON, nullable=False)
    status: str = Field(default=PENDING, sa_type=String(20), nullable=False)
    problems: list[dict[str, Any]] = Field(default_factory=list, sa_type=JSON, nullable=False)
    error: str | None = Field(default=None, sa_type=Text, nullable=True)
    retryable: bool = Field(default=False, sa_type=Boolean, nullable=False)
    attempts: int = Field(default=0, sa_type=Integer, nullable=False)
    contact_id: int | None = Field(default=None, sa_type=BigInteger, nullable=True)
    deal_ids: dict[str, int] = Field(default_factory=dict, sa_type=JSON, nullable=False)
    pushed_hash: str | None = Field(default=None, sa_type=String(64), nullable=True)
    first_seen_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    last_attempt_at: datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)
    pushed_at: datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)
    run_id: str | None = Field(default=None, sa_type=String(64), nullable=True)


class PollRow(SQLModel, table=True):
    """One poll as staged from the platform, and its poll form in the CRM."""

    __tablename__ = "polls"
    __table_args__ = (Index("ix_polls_status", "status"),)

    poll_id: int = Field(primary_key=True, sa_type=BigId, sa_column_kwargs={"autoincrement": False})
    payload: dict[str, Any] = Field(default_factory=dict, sa_type=JSON, nullable=False)
    content_hash: str = Field(sa_type=String(64), nullable=False)
    updated_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    status: str = Field(default=PENDING, sa_type=String(20), nullable=False)
    item_id: int | None = Field(default=None, sa_type=BigInteger, nullable=True)
    assigned_by_id: int | None = Field(default=None, sa_type=BigInteger, nullable=True)
    pushed_hash: str | None = Field(default=None, sa_type=String(64), nullable=True)
    error: str | None = Field(default=None, sa_type=Text, nullable=True)
    problems: list[dict[str, Any]] = Field(default_factory=list, sa_type=JSON, nullable=False)
    first_seen_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    pushed_at: datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)
    run_id: str | None = Field(default=None, sa_type=String(64), nullable=True)


class WatermarkRow(SQLModel, table=True):
    """How far a named incremental read has got (the newest ``updated_at`` staged)."""

    __tablename__ = "watermarks"

    name: str = Field(primary_key=True, sa_type=String(200))
    value: datetime = Field(sa_type=UTCDateTime, nullable=False)
    updated_at: datetime = Field(sa_type=UTCDateTime, nullable=False)


class RunRow(SQLModel, table=True):
    """One run of the job: what was asked, how it ended, what it counted."""

    __tablename__ = "runs"
    __table_args__ = (
        Index("uq_runs_run_id", "run_id", unique=True),
        Index("ix_runs_outcome", "outcome"),
    )

    id: int | None = Field(default=None, primary_key=True, sa_type=BigId)
    run_id: str = Field(sa_type=String(64), nullable=False)
    command: str = Field(sa_type=String(20), nullable=False)
    started_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    finished_at: datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)
    dry_run: bool = Field(default=False, sa_type=Boolean, nullable=False)
    outcome: str = Field(default=RUNNING, sa_type=String(20), nullable=False)
    since: datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)
    poll_filter: list[int] | None = Field(default=None, sa_type=JSON, nullable=True)
    counts: dict[str, Any] = Field(default_factory=dict, sa_type=JSON, nullable=False)
    requests: int = Field(default=0, sa_type=Integer, nullable=False)
    retries: int = Field(default=0, sa_type=Integer, nullable=False)
    error: str | None = Field(default=None, sa_type=Text, nullable=True)


class LockRow(SQLModel, table=True):
    """Who holds a Postgres advisory run lock (the lock itself lives in the server)."""

    __tablename__ = "locks"

    name: str = Field(primary_key=True, sa_type=String(100))
    holder: str = Field(sa_type=String(200), nullable=False)
    pid: int = Field(sa_type=Integer, nullable=False)
    host: str = Field(sa_type=String(255), nullable=False)
    since: datetime = Field(sa_type=UTCDateTime, nullable=False)
