"""The intake's inbox: every packet the university portal pushed, as it came, in versions.

    store = InboxStore(engine)
    outcome = store.store_answer(body=packet, poll_id=..., answer_id=..., size=len(raw))
    outcome.kind                                  # "new" | "edit" | "repeat"
    store.record_refusal(endpoint="postAnswer", reason="invalid_json", detail="...", size=123)
    inbox_stats(engine)                           # for `status` and metrics

Tables (migration 0002):

* ``inbox_answers`` — one row per *version* of an answer: a packet whose content differs
  from the answer's newest version is a new row (an edit); the same packet again only
  bumps ``deliveries`` of the newest row.
* ``inbox_polls`` — the same for poll registrations.
* ``inbox_refused`` — what was refused, why and how big (never the body).

``stored_at`` is the version's ``updated_at`` for the sync job's watermarks, so it must
never go backwards within a table: every write holds the inbox's write lock (SQLite's
``BEGIN IMMEDIATE``; a transaction-scoped advisory lock on Postgres) and takes
``max(now, newest stored_at)``. The lock also makes "is this a repeat?" and the insert one
atomic step, so two deliveries of one packet at once store it once. Ids are assigned under
the same lock, so ``(stored_at, id)`` and ``id`` order the versions alike.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import datetime, time, timezone
from typing import Any, Literal

from sqlalchemy import (JSON, BigInteger, Index, Integer, String, Text, and_, bindparam, exists, func, select,
                        text, update)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import aliased
from sqlmodel import Field, SQLModel

from core.clock import utc_now
from storage.db import advisory_key, read_options, store_errors
from storage.tables import BigId, UTCDateTime

__all__ = ["InboxAnswerRow", "InboxPollRow", "InboxRefusedRow", "InboxStore", "StoreOutcome", "inbox_stats",
           "packet_hash"]

_SURROGATE = re.compile("[\ud800-\udfff]")


class InboxAnswerRow(SQLModel, table=True):
    """One version of one answer as the portal pushed it (``body``: the whole packet)."""

    __tablename__ = "inbox_answers"
    __table_args__ = (
        # "newest version of this answer" and "is this a repeat?"
        Index("ix_inbox_answers_answer", "answer_id", "id"),
        # a poll's answers since a watermark, in (stored_at, id) order
        Index("ix_inbox_answers_poll", "poll_id", "stored_at", "id"),
    )

    id: int | None = Field(default=None, primary_key=True, sa_type=BigId)
    answer_id: int = Field(sa_type=BigInteger, nullable=False)
    poll_id: int = Field(sa_type=BigInteger, nullable=False)
    content_hash: str = Field(sa_type=String(64), nullable=False)
    body: dict[str, Any] = Field(default_factory=dict, sa_type=JSON, nullable=False)
    size: int = Field(sa_type=Integer, nullable=False)
    stored_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    deliveries: int = Field(default=1, sa_type=Integer, nullable=False)
    last_delivered_at: datetime = Field(sa_type=UTCDateTime, nullable=False)


class InboxPollRow(SQLModel, table=True):
    """One version of one poll registration (``note``: e.g. the employee check could not run)."""

    __tablename__ = "inbox_polls"
    __table_args__ = (
        Index("ix_inbox_polls_poll", "poll_id", "id"),
        Index("ix_inbox_polls_stored", "stored_at", "id"),
    )

    id: int | None = Field(default=None, primary_key=True, sa_type=BigId)
    poll_id: int = Field(sa_type=BigInteger, nullable=False)
    content_hash: str = Field(sa_type=String(64), nullable=False)
    body: dict[str, Any] = Field(default_factory=dict, sa_type=JSON, nullable=False)
    size: int = Field(sa_type=Integer, nullable=False)
    stored_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    deliveries: int = Field(default=1, sa_type=Integer, nullable=False)
    last_delivered_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    note: str | None = Field(default=None, sa_type=Text, nullable=True)


class InboxRefusedRow(SQLModel, table=True):
    """A packet the intake refused: when, where, why, how big (the body is not kept)."""

    __tablename__ = "inbox_refused"
    __table_args__ = (Index("ix_inbox_refused_at", "refused_at"),)

    id: int | None = Field(default=None, primary_key=True, sa_type=BigId)
    refused_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    endpoint: str = Field(sa_type=String(40), nullable=False)
    reason: str = Field(sa_type=String(40), nullable=False)
    detail: str = Field(sa_type=Text, nullable=False)
    size: int = Field(sa_type=Integer, nullable=False)
    remote: str | None = Field(default=None, sa_type=String(64), nullable=True)
    poll_id: int | None = Field(default=None, sa_type=BigInteger, nullable=True)
    answer_id: int | None = Field(default=None, sa_type=BigInteger, nullable=True)


A = InboxAnswerRow.__table__
P = InboxPollRow.__table__
R = InboxRefusedRow.__table__

# The writes' statements, built once: building them per packet cost more CPU than running them.
_NEWEST = {t.name: select(t.c.id, t.c.content_hash, t.c.stored_at).where(t.c[key] == bindparam("key"))
           .order_by(t.c.id.desc()).limit(1) for t, key in ((A, "answer_id"), (P, "poll_id"))}
_LAST_STORED = {t.name: select(t.c.stored_at).order_by(t.c.id.desc()).limit(1) for t in (A, P)}
_REPEAT = {t.name: update(t).where(t.c.id == bindparam("version_id"))
           .values(deliveries=t.c.deliveries + 1, last_delivered_at=bindparam("now")) for t in (A, P)}
_REPEAT_NOTE = update(P).where(P.c.id == bindparam("version_id")).values(
    deliveries=P.c.deliveries + 1, last_delivered_at=bindparam("now"), note=bindparam("note"))


def clean_text(value: Any) -> Any:
    """``value`` with lone UTF-16 surrogates replaced by U+FFFD (no store can encode them).

    JSON text ``"\\ud800"`` decodes to such a character; refusing the packet for it would
    lose an answer over one unprintable character.
    """
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value) if _SURROGATE.search(value) else value
    if isinstance(value, dict):
        return {clean_text(k): clean_text(v) for k, v in value.items()}
    if isinstance(value, list):
        return [clean_text(v) for v in value]
    return value


def packet_hash(body: Any) -> str:
    """SHA-256 of the packet's JSON. Key order is kept: a redelivery is the same bytes, an edit is not."""
    canonical = json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class StoreOutcome:
    """What storing a packet did: ``new`` (first version), ``edit`` (a new version), ``repeat`` (nothing new)."""

    kind: Literal["new", "edit", "repeat"]
    version_id: int
    stored_at: datetime


class InboxStore:
    """Reads and writes of the inbox tables; every write is one transaction.

    Keyword-only methods; database failures raise ``StoreError`` saying what to check.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._pg_key: int | None = None

    # -- writes ---------------------------------------------------------------

    def _lock(self, conn: Connection) -> None:
        if conn.dialect.name == "postgresql":
            if self._pg_key is None:
                self._pg_key = advisory_key(conn, "inbox")
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": self._pg_key})
        # SQLite: the engine began this transaction with BEGIN IMMEDIATE, the write lock.

    @staticmethod
    def _clock(conn: Connection, table: Any) -> datetime:
        # Never behind the newest version: the sync job's watermark must see every later one.
        newest = conn.execute(_LAST_STORED[table.name]).scalar()
        now = utc_now()
        return max(now, newest) if newest is not None else now

    def store_answer(self, *, body: dict[str, Any], poll_id: int, answer_id: int, size: int) -> StoreOutcome:
        """Store a postAnswer packet: a repeat of the newest version changes nothing but its delivery count."""
        return self._one("store_answer", body=body, poll_id=poll_id, answer_id=answer_id, size=size)

    def store_poll(self, *, body: dict[str, Any], poll_id: int, content: dict[str, Any], size: int,
                   note: str | None = None) -> StoreOutcome:
        """Store a postPoll packet. ``content`` (name, language, employee) decides whether it is a new version:
        the portal re-sends a registration whenever the integration is switched off and on."""
        return self._one("store_poll", body=body, poll_id=poll_id, content=content, size=size, note=note)

    def write_group(self, ops: list[tuple[str, dict[str, Any]]]) -> list[Any]:
        """Run several writes (``("store_answer" | "store_poll" | "record_refusal", kwargs)``) in ONE transaction.

        Group commit: one commit — one wait for the disk — for everything that queued up
        meanwhile. Each write runs in its own savepoint, so one that fails is rolled back
        alone; its slot in the returned list holds the exception instead of the outcome.
        Nothing is durable, and nothing may be acknowledged, before this returns; if the
        commit itself fails, it raises ``StoreError`` and none of them happened.
        """
        results: list[Any] = []
        with store_errors(self.engine, "storing packets from the portal"):
            with self.engine.begin() as conn:
                self._lock(conn)
                if len(ops) == 1:  # alone in its transaction: it needs no savepoint of its own
                    name, kwargs = ops[0]
                    return [getattr(self, f"_{name}")(conn, **kwargs)]
                for name, kwargs in ops:
                    # Plain SQL savepoints: SQLAlchemy's nested-transaction objects cost more than the write.
                    conn.exec_driver_sql("SAVEPOINT inbox_packet")
                    try:
                        results.append(getattr(self, f"_{name}")(conn, **kwargs))
                    except Exception as exc:  # noqa: BLE001 - reported to that one caller, the rest go on
                        conn.exec_driver_sql("ROLLBACK TO SAVEPOINT inbox_packet")
                        results.append(exc)
                    conn.exec_driver_sql("RELEASE SAVEPOINT inbox_packet")
        return results

    def _one(self, name: str, **kwargs: Any) -> Any:
        result = self.write_group([(name, kwargs)])[0]
        if isinstance(result, BaseException):
            with store_errors(self.engine, "storing a packet from the portal"):
                raise result
        return result

    def _store_answer(self, conn: Connection, *, body: dict[str, Any], poll_id: int, answer_id: int,
                      size: int) -> StoreOutcome:
        body = clean_text(body)
        digest = packet_hash(body)
        newest = conn.execute(_NEWEST[A.name], {"key": answer_id}).first()
        now = utc_now()
        if newest is not None and newest.content_hash == digest:
            conn.execute(_REPEAT[A.name], {"version_id": newest.id, "now": now})
            return StoreOutcome("repeat", newest.id, newest.stored_at)
        stored_at = self._clock(conn, A)
        version_id = conn.execute(A.insert(), {
            "answer_id": answer_id, "poll_id": poll_id, "content_hash": digest, "body": body, "size": size,
            "stored_at": stored_at, "deliveries": 1, "last_delivered_at": now}).inserted_primary_key[0]
        return StoreOutcome("new" if newest is None else "edit", version_id, stored_at)

    def _store_poll(self, conn: Connection, *, body: dict[str, Any], poll_id: int, content: dict[str, Any],
                    size: int, note: str | None = None) -> StoreOutcome:
        body = clean_text(body)
        digest = packet_hash(clean_text(content))
        newest = conn.execute(_NEWEST[P.name], {"key": poll_id}).first()
        now = utc_now()
        if newest is not None and newest.content_hash == digest:
            if note:
                conn.execute(_REPEAT_NOTE, {"version_id": newest.id, "now": now, "note": note})
            else:
                conn.execute(_REPEAT[P.name], {"version_id": newest.id, "now": now})
            return StoreOutcome("repeat", newest.id, newest.stored_at)
        stored_at = self._clock(conn, P)
        version_id = conn.execute(P.insert().values(
            poll_id=poll_id, content_hash=digest, body=body, size=size, stored_at=stored_at,
            deliveries=1, last_delivered_at=now, note=note)).inserted_primary_key[0]
        return StoreOutcome("new" if newest is None else "edit", version_id, stored_at)

    def record_refusal(self, *, endpoint: str, reason: str, detail: str, size: int, remote: str | None = None,
                       poll_id: int | None = None, answer_id: int | None = None) -> None:
        """Note a refused packet (for `status`); the body is not kept."""
        self._one("record_refusal", endpoint=endpoint, reason=reason, detail=detail, size=size, remote=remote,
                  poll_id=poll_id, answer_id=answer_id)

    @staticmethod
    def _record_refusal(conn: Connection, *, endpoint: str, reason: str, detail: str, size: int,
                        remote: str | None = None, poll_id: int | None = None, answer_id: int | None = None) -> None:
        conn.execute(R.insert().values(
            refused_at=utc_now(), endpoint=endpoint[:40], reason=reason[:40], detail=clean_text(detail),
            size=size, remote=(remote or None) and remote[:64], poll_id=_id_or_none(poll_id),
            answer_id=_id_or_none(answer_id)))

    # -- reads (the sync job's source) ------------------------------------------

    def _read(self) -> Any:
        return self.engine.connect().execution_options(**read_options)

    def newest_answers(self, *, poll_id: int, since: datetime | None, after: tuple[datetime, int] | None,
                       limit: int) -> list[Any]:
        """The newest version of each answer of ``poll_id`` stored at or after ``since``, in (stored_at, id)
        order, after the keyset position ``after``; rows carry ``first_stored_at`` (the first version's)."""
        newer = aliased(A)
        first = select(func.min(newer.c.stored_at)).where(newer.c.answer_id == A.c.answer_id).scalar_subquery()
        query = (select(A.c.id, A.c.answer_id, A.c.poll_id, A.c.body, A.c.stored_at, first.label("first_stored_at"))
                 .where(A.c.poll_id == poll_id,
                        ~exists().where(and_(newer.c.answer_id == A.c.answer_id, newer.c.id > A.c.id))))
        if since is not None:
            query = query.where(A.c.stored_at >= since)
        if after is not None:
            query = query.where((A.c.stored_at > after[0]) | and_(A.c.stored_at == after[0], A.c.id > after[1]))
        query = query.order_by(A.c.stored_at, A.c.id).limit(limit)
        with store_errors(self.engine, "reading the inbox"):
            with self._read() as conn, conn.begin():
                return list(conn.execute(query))

    def newest_answer(self, *, answer_id: int) -> Any | None:
        """The newest version of one answer (with ``first_stored_at``), or None."""
        with store_errors(self.engine, "reading the inbox"):
            with self._read() as conn, conn.begin():
                row = conn.execute(select(A.c.id, A.c.answer_id, A.c.poll_id, A.c.body, A.c.stored_at)
                                   .where(A.c.answer_id == answer_id).order_by(A.c.id.desc()).limit(1)).first()
                if row is None:
                    return None
                first = conn.execute(select(func.min(A.c.stored_at)).where(A.c.answer_id == answer_id)).scalar()
                return _Row(id=row.id, answer_id=row.answer_id, poll_id=row.poll_id, body=row.body,
                            stored_at=row.stored_at, first_stored_at=first)

    def newest_polls(self, *, since: datetime | None, after: tuple[datetime, int] | None, limit: int) -> list[Any]:
        """The newest version of each poll stored at or after ``since``, keyset-paged like ``newest_answers``."""
        newer = aliased(P)
        first = select(func.min(newer.c.stored_at)).where(newer.c.poll_id == P.c.poll_id).scalar_subquery()
        query = (select(P.c.id, P.c.poll_id, P.c.body, P.c.stored_at, first.label("first_stored_at"))
                 .where(~exists().where(and_(newer.c.poll_id == P.c.poll_id, newer.c.id > P.c.id))))
        if since is not None:
            query = query.where(P.c.stored_at >= since)
        if after is not None:
            query = query.where((P.c.stored_at > after[0]) | and_(P.c.stored_at == after[0], P.c.id > after[1]))
        query = query.order_by(P.c.stored_at, P.c.id).limit(limit)
        with store_errors(self.engine, "reading the inbox"):
            with self._read() as conn, conn.begin():
                return list(conn.execute(query))

    def answer_poll_ids(self) -> list[int]:
        """Every poll id that answers were pushed for, registered or not (ascending)."""
        with store_errors(self.engine, "reading the inbox"):
            with self._read() as conn, conn.begin():
                return [r[0] for r in conn.execute(select(A.c.poll_id).distinct().order_by(A.c.poll_id))]

    def answer_versions(self, *, answer_id: int) -> list[Any]:
        """Every stored version of one answer, oldest first (for operators and tests)."""
        with store_errors(self.engine, "reading the inbox"):
            with self._read() as conn, conn.begin():
                return list(conn.execute(select(A).where(A.c.answer_id == answer_id).order_by(A.c.id)))

    def poll_versions(self, *, poll_id: int) -> list[Any]:
        """Every stored version of one poll registration, oldest first."""
        with store_errors(self.engine, "reading the inbox"):
            with self._read() as conn, conn.begin():
                return list(conn.execute(select(P).where(P.c.poll_id == poll_id).order_by(P.c.id)))

    def refusals(self, *, limit: int = 100) -> list[Any]:
        """The newest refusals first."""
        with store_errors(self.engine, "reading the inbox"):
            with self._read() as conn, conn.begin():
                return list(conn.execute(select(R).order_by(R.c.id.desc()).limit(limit)))


@dataclass(frozen=True)
class _Row:
    id: int
    answer_id: int
    poll_id: int
    body: dict[str, Any]
    stored_at: datetime
    first_stored_at: datetime


def _id_or_none(value: Any) -> int | None:
    # Only what fits a BIGINT is kept: the ids of a refused packet may be anything.
    if isinstance(value, int) and not isinstance(value, bool) and -(2 ** 63) <= value < 2 ** 63:
        return value
    return None


def inbox_stats(engine: Engine, *, now: datetime | None = None) -> dict[str, Any]:
    """What the inbox holds, for `status` and metrics.

    ``received_today`` / ``received_total`` count stored versions (answers and polls;
    redeliveries of the same packet are in ``redeliveries``), "today" being the UTC day.
    ``last_packet_at`` is the newest delivery, stored or refused (ISO, or None).
    """
    now = now or utc_now()
    midnight = datetime.combine(now.astimezone(timezone.utc).date(), time(0), tzinfo=timezone.utc)
    with store_errors(engine, "reading the inbox"):
        with engine.connect().execution_options(**read_options) as conn, conn.begin():
            def one(query: Any) -> Any:
                return conn.execute(query).scalar()

            answers = one(select(func.count()).select_from(A))
            polls = one(select(func.count()).select_from(P))
            today = (one(select(func.count()).select_from(A).where(A.c.stored_at >= midnight))
                     + one(select(func.count()).select_from(P).where(P.c.stored_at >= midnight)))
            redeliveries = ((one(select(func.coalesce(func.sum(A.c.deliveries - 1), 0))) or 0)
                            + (one(select(func.coalesce(func.sum(P.c.deliveries - 1), 0))) or 0))
            by_reason = {reason: n for reason, n in conn.execute(
                select(R.c.reason, func.count()).group_by(R.c.reason).order_by(R.c.reason))}
            times = [one(select(func.max(A.c.last_delivered_at))), one(select(func.max(P.c.last_delivered_at))),
                     one(select(func.max(R.c.refused_at)))]
            distinct_answers = one(select(func.count(func.distinct(A.c.answer_id))))
            distinct_polls = one(select(func.count(func.distinct(P.c.poll_id))))
    last = max((t for t in times if t is not None), default=None)
    return {
        "received_today": int(today),
        "received_total": int(answers + polls),
        "answers": int(distinct_answers),
        "answer_versions": int(answers),
        "polls": int(distinct_polls),
        "poll_versions": int(polls),
        "redeliveries": int(redeliveries),
        "last_packet_at": last.isoformat() if last is not None else None,
        "refused_total": int(sum(by_reason.values())),
        "refused_by_reason": by_reason,
    }

