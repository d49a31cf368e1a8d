"""The ledger: every answer and poll the job has seen, and how far each got.

Rows move ``pending → in_flight → pushed | failed | needs_attention``; an edit of a
pushed answer makes it ``changed`` (pushable again). Staging moves the named
watermark in the same transaction as the rows, and only forward, so a crash after
staging loses nothing and a crash before it re-reads the same window.

Every method is keyword-only (apart from obvious single arguments), runs one short
transaction and returns plain values (pydantic models, detached SQLModel rows),
never an open session. Database failures surface as ``StoreError``.

Status rules for ``stage_answers`` (by ``answer_id``; the hash is ``content_hash``
of the whole dict the caller passed). Content with a new hash makes:

- an unknown id → ``pending``;
- a ``pushed`` row → ``changed``;
- a ``pending``, ``changed``, ``failed`` or ``needs_attention`` row → ``pending`` if
  it never reached the CRM (no contact, no deals), else ``changed``; its problems
  and error are cleared;
- an ``in_flight`` row → still ``in_flight`` (its push must be reconciled first),
  with the new payload and hash; ``mark_pushed`` then finds the hash differs from
  what was pushed and makes it ``changed``.

The same hash again leaves the row untouched, whatever its status.
"""
from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, is_dataclass
from datetime import datetime
from typing import Any, TypeVar

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator
from pydantic_core import to_jsonable_python
from sqlalchemy import and_, bindparam, case, false, func, insert, or_, select, true, union_all, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from core.clock import utc_now
from storage.db import read_options, store_errors
from storage.tables import (
    ANSWER_STATUSES,
    CHANGED,
    DELETED,
    FAILED,
    IN_FLIGHT,
    NEEDS_ATTENTION,
    PENDING,
    POLL_STATUSES,
    PUSHED,
    RUN_COMMANDS,
    RUN_OUTCOMES,
    RUNNING,
    AnswerRow,
    PollRow,
    RunRow,
    WatermarkRow,
)

__all__ = ["Ledger", "PushedResult", "StageCounts", "content_hash"]

ATTENTION = "attention"  # the problem severity that keeps an answer out of ``pushed``
IN_CHUNK = 1000  # ids per IN (...) list: well below SQLite's and Postgres' bind limits

_answers = AnswerRow.__table__
_polls = PollRow.__table__
_watermarks = WatermarkRow.__table__
_runs = RunRow.__table__
_aware = TypeAdapter(AwareDatetime)
T = TypeVar("T")


def content_hash(payload: dict[str, Any]) -> str:
    """sha256 of the payload as canonical JSON (sorted keys, compact, UTF-8 as is).

    Nothing is left out: the caller passes exactly what should count as a change.
    Datetimes and other non-JSON values are rendered the way pydantic's JSON mode
    renders them, so hashing ``model.model_dump()`` or ``model.model_dump(mode="json")``
    of the same model gives the same hash.
    """
    canonical = json.dumps(
        payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=to_jsonable_python
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class StageCounts(BaseModel):
    """What one staging call did: rows first seen, rows whose content changed, rows seen again as they were."""

    model_config = ConfigDict(frozen=True)

    new: int = 0
    changed: int = 0
    unchanged: int = 0

    def __add__(self, other: StageCounts) -> StageCounts:
        return StageCounts(
            new=self.new + other.new, changed=self.changed + other.changed, unchanged=self.unchanged + other.unchanged
        )


class PushedResult(BaseModel):
    """The CRM's side of one answer after its push: the ids it got and what was found on the way."""

    answer_id: int
    contact_id: int | None = None
    deal_ids: dict[str, int] = Field(default_factory=dict)
    pushed_hash: str
    problems: list[dict[str, Any]] = Field(default_factory=list)

    @field_validator("deal_ids", mode="before")
    @classmethod
    def _keys_as_text(cls, value: Any) -> Any:
        # JSON object keys are text: a programme's item id 42 is stored as "42".
        return {str(key): deal for key, deal in value.items()} if isinstance(value, dict) else value

    @field_validator("problems", mode="before")
    @classmethod
    def _problems_as_dicts(cls, value: Any) -> Any:
        return _plain_problems(value) if isinstance(value, (list, tuple)) else value


@dataclass(slots=True)
class _Staged:
    id: int
    poll_id: int | None
    updated_at: datetime
    payload: dict[str, Any]
    hash: str


class Ledger:
    """The store's API over an Engine (see the module docstring for the status rules)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    @property
    def engine(self) -> Engine:
        return self._engine

    # -- transactions -----------------------------------------------------------------

    @contextmanager
    def _write(self, action: str) -> Iterator[Connection]:
        with store_errors(self._engine, action), self._engine.begin() as conn:
            yield conn

    @contextmanager
    def _read(self, action: str) -> Iterator[Connection]:
        with store_errors(self._engine, action), self._engine.connect() as conn:
            conn.execution_options(**read_options)
            with conn.begin():
                yield conn

    # -- answers: staging -----------------------------------------------------------------

    def stage_answers(
        self, *, answers: Sequence[dict[str, Any]], watermark: tuple[str, datetime] | None, run_id: str
    ) -> StageCounts:
        """Upsert answers by ``answer_id`` and move the watermark, in one transaction.

        ``answers`` are JSON-able dicts of ``Answer`` (``answer_id``, ``poll_id``,
        ``updated_at``, …). The watermark ``(name, value)`` only ever moves forward.
        An id given twice counts once (the one with the newest ``updated_at``).
        """
        staged = _dedupe(_staged(item, "answer_id", needs_poll=True) for item in answers)
        mark = _watermark_arg(watermark)
        now = utc_now()
        new = changed = unchanged = 0
        t = _answers
        with self._write("staging answers") as conn:
            for chunk in _chunks(staged, IN_CHUNK):
                existing = {
                    row.answer_id: row
                    for row in conn.execute(
                        select(t.c.answer_id, t.c.content_hash, t.c.status, t.c.contact_id).where(
                            t.c.answer_id.in_([item.id for item in chunk])
                        )
                    )
                }
                # Deal ids (JSON) are read only where they decide pending vs changed.
                undecided = [
                    item.id
                    for item in chunk
                    if (prev := existing.get(item.id)) is not None
                    and prev.content_hash != item.hash
                    and prev.status not in (PUSHED, IN_FLIGHT)
                    and prev.contact_id is None
                ]
                with_deals = (
                    {
                        answer_id
                        for answer_id, deal_ids in conn.execute(
                            select(t.c.answer_id, t.c.deal_ids).where(t.c.answer_id.in_(undecided))
                        )
                        if deal_ids
                    }
                    if undecided
                    else set()
                )
                inserts: list[dict[str, Any]] = []
                updates: list[dict[str, Any]] = []
                in_flight: list[dict[str, Any]] = []
                for item in chunk:
                    old = existing.get(item.id)
                    if old is None:
                        new += 1
                        inserts.append(_new_answer(item, now=now, run_id=run_id))
                    elif old.content_hash == item.hash:
                        unchanged += 1
                    else:
                        changed += 1
                        values = {
                            "b_id": item.id,
                            "b_poll_id": item.poll_id,
                            "b_updated_at": item.updated_at,
                            "b_hash": item.hash,
                            "b_payload": item.payload,
                            "b_run_id": run_id,
                        }
                        if old.status == IN_FLIGHT:
                            in_flight.append(values)
                        else:
                            was_pushed = old.contact_id is not None or item.id in with_deals
                            values["b_status"] = CHANGED if old.status == PUSHED or was_pushed else PENDING
                            updates.append(values)
                if inserts:
                    conn.execute(insert(t), inserts)
                if updates:
                    conn.execute(_ANSWER_RESTAGE, updates)
                if in_flight:
                    conn.execute(_ANSWER_CONTENT, in_flight)
            if mark is not None:
                _advance_watermark(conn, *mark, now=now)
        return StageCounts(new=new, changed=changed, unchanged=unchanged)

    # -- answers: pushing -----------------------------------------------------------------

    def answers_to_push(
        self,
        *,
        poll_ids: Iterable[int] | None = None,
        answer_ids: Iterable[int] | None = None,
        include_attention: bool = False,
        chunk: int = 1000,
    ) -> Iterator[list[AnswerRow]]:
        """Stream the answers a push should take, in lists of at most ``chunk``, ordered by ``answer_id``.

        Offered: ``pending``, ``changed``, ``in_flight`` (to be reconciled by key first)
        and retryable ``failed``; with ``include_attention`` (``cli.py retry``) also
        ``needs_attention`` and non-retryable ``failed``. Each list is read in its own
        short transaction (keyset paging), so memory does not grow with history and
        marking rows between lists is safe.
        """
        if chunk < 1:
            raise ValueError("chunk must be at least 1")
        t = _answers
        if include_attention:
            branches = [t.c.status == status for status in (PENDING, CHANGED, IN_FLIGHT, FAILED, NEEDS_ATTENTION)]
        else:
            branches = [t.c.status == status for status in (PENDING, CHANGED, IN_FLIGHT)]
            branches.append(and_(t.c.status == FAILED, t.c.retryable == true()))
        polls = None if poll_ids is None else sorted(set(poll_ids))
        if polls is not None:
            branches = [and_(branch, t.c.poll_id.in_(polls)) for branch in branches]
        if answer_ids is not None:
            cond = or_(*branches)
            for id_chunk in _chunks(sorted(set(answer_ids)), min(chunk, IN_CHUNK)):
                rows = self._answer_select(and_(cond, t.c.answer_id.in_(id_chunk)), limit=None)
                if rows:
                    yield rows
            return
        after: int | None = None
        while True:
            rows = self._next_chunk(branches, after=after, limit=chunk)
            if not rows:
                return
            yield rows
            if len(rows) < chunk:
                return
            after = rows[-1].answer_id

    def _next_chunk(self, branches: list[ColumnElement[bool]], *, after: int | None, limit: int) -> list[AnswerRow]:
        # One index range scan per status on (status, answer_id), each stopping after
        # ``limit`` ids, merged and cut to ``limit``: the cost of a chunk does not
        # depend on how many rows come after it or how much history is pushed.
        t = _answers
        parts = []
        for branch in branches:
            cond = branch if after is None else and_(branch, t.c.answer_id > after)
            part = select(t.c.answer_id).where(cond).order_by(t.c.answer_id).limit(limit).subquery()
            parts.append(select(part.c.answer_id))
        merged = union_all(*parts).subquery()
        ids_stmt = select(merged.c.answer_id).order_by(merged.c.answer_id).limit(limit)
        with self._read("reading answers to push") as conn, Session(bind=conn) as session:
            ids = list(conn.execute(ids_stmt).scalars())
            if not ids:
                return []
            rows = list(session.scalars(select(AnswerRow).where(t.c.answer_id.in_(ids)).order_by(t.c.answer_id)))
            session.expunge_all()
        return rows

    def _answer_select(self, cond: ColumnElement[bool], *, limit: int | None) -> list[AnswerRow]:
        stmt = select(AnswerRow).where(cond).order_by(_answers.c.answer_id)
        if limit is not None:
            stmt = stmt.limit(limit)
        return self._orm_select(AnswerRow, stmt, "reading answers")

    def _orm_select(self, model: type[T], stmt: Any, action: str) -> list[T]:
        # ORM loading fills the objects directly (validating each SQLModel table
        # object through its constructor costs ~20x more); closing the session
        # detaches them, so callers get plain values with every column loaded.
        with self._read(action) as conn, Session(bind=conn, expire_on_commit=False) as session:
            rows = list(session.scalars(stmt))
            session.expunge_all()
        return rows

    def mark_in_flight(self, *, answer_ids: Iterable[int], run_id: str) -> int:
        """Mark answers as being pushed by ``run_id`` (one UPDATE); returns how many rows it touched."""
        ids = sorted(set(answer_ids))
        now = utc_now()
        touched = 0
        with self._write("marking answers in flight") as conn:
            for id_chunk in _chunks(ids, 10 * IN_CHUNK):
                result = conn.execute(
                    update(_answers)
                    .where(_answers.c.answer_id.in_(id_chunk))
                    .values(
                        status=IN_FLIGHT,
                        run_id=run_id,
                        last_attempt_at=now,
                        attempts=_answers.c.attempts + 1,
                    )
                )
                touched += result.rowcount
        return touched

    def mark_pushed(self, *, results: Sequence[PushedResult]) -> None:
        """Record the CRM ids of pushed answers (bulk).

        Status becomes ``pushed``, or ``needs_attention`` when a problem has severity
        ``attention`` (the CRM ids are saved either way). If the answer was edited
        while in flight (its hash is no longer ``pushed_hash``) it becomes ``changed``
        so the newer content is pushed next.
        """
        if not results:
            return
        now = utc_now()
        params = []
        for result in results:
            problems = _plain_problems(result.problems)
            attention = any(p.get("severity") == ATTENTION for p in problems)
            params.append(
                {
                    "b_id": result.answer_id,
                    "b_status": NEEDS_ATTENTION if attention else PUSHED,
                    "b_contact_id": result.contact_id,
                    "b_deal_ids": result.deal_ids,
                    "b_hash": result.pushed_hash,
                    "b_problems": problems,
                    "b_now": now,
                }
            )
        with self._write("recording pushed answers") as conn:
            conn.execute(_ANSWER_PUSHED, params)

    def mark_failed(
        self, *, answer_id: int, error: str, retryable: bool, problems: Sequence[Any] | None = None
    ) -> None:
        """Record a failed push: ``retryable`` ones are offered again by the next run, the others wait for ``retry``."""
        with self._write("recording a failed answer") as conn:
            conn.execute(
                update(_answers)
                .where(_answers.c.answer_id == answer_id)
                .values(status=FAILED, error=error, retryable=bool(retryable), problems=_plain_problems(problems))
            )

    def mark_needs_attention(self, *, answer_id: int, problems: Sequence[Any]) -> None:
        """Keep an answer out of pushes until an operator fixes the cause and runs ``retry``."""
        with self._write("recording an answer needing attention") as conn:
            conn.execute(
                update(_answers)
                .where(_answers.c.answer_id == answer_id)
                .values(status=NEEDS_ATTENTION, problems=_plain_problems(problems))
            )

    def in_flight_answers(self) -> list[AnswerRow]:
        """Answers whose push was started but never recorded: reconcile them by their external keys."""
        return self._answer_select(_answers.c.status == IN_FLIGHT, limit=None)

    def get_answer(self, answer_id: int) -> AnswerRow | None:
        rows = self._answer_select(_answers.c.answer_id == answer_id, limit=None)
        return rows[0] if rows else None

    def answer_rows(self, *, answer_ids: Iterable[int]) -> list[AnswerRow]:
        """The rows of these answers (those that exist), ordered by ``answer_id``."""
        rows: list[AnswerRow] = []
        for id_chunk in _chunks(sorted(set(answer_ids)), IN_CHUNK):
            rows.extend(self._answer_select(_answers.c.answer_id.in_(id_chunk), limit=None))
        return rows

    def counts_by_status(self) -> dict[str, int]:
        """How many answers are in each status (every status listed, zeros included)."""
        counts = dict.fromkeys(ANSWER_STATUSES, 0)
        with self._read("counting answers") as conn:
            for status, n in conn.execute(select(_answers.c.status, func.count()).group_by(_answers.c.status)):
                counts[status] = n
        return counts

    def needing_attention(self, limit: int = 100) -> list[AnswerRow]:
        """Answers an operator must look at: ``needs_attention`` and non-retryable ``failed``, by ``answer_id``."""
        t = _answers
        cond = or_(t.c.status == NEEDS_ATTENTION, and_(t.c.status == FAILED, t.c.retryable == false()))
        return self._answer_select(cond, limit=limit)

    # -- polls ------------------------------------------------------------------------

    def stage_polls(
        self, *, polls: Sequence[dict[str, Any]], watermark: tuple[str, datetime] | None, run_id: str
    ) -> StageCounts:
        """Upsert polls by ``poll_id`` and move the watermark, in one transaction.

        Unknown → ``pending``; same hash → untouched; new hash → ``changed`` if it
        has a poll form in the CRM, else ``pending``; a ``deleted`` poll that is
        listed again → ``changed`` even with the same hash.
        """
        staged = _dedupe(_staged(item, "poll_id", needs_poll=False) for item in polls)
        mark = _watermark_arg(watermark)
        now = utc_now()
        new = changed = unchanged = 0
        t = _polls
        with self._write("staging polls") as conn:
            for chunk in _chunks(staged, IN_CHUNK):
                existing = {
                    row.poll_id: row
                    for row in conn.execute(
                        select(t.c.poll_id, t.c.content_hash, t.c.status, t.c.item_id).where(
                            t.c.poll_id.in_([item.id for item in chunk])
                        )
                    )
                }
                inserts: list[dict[str, Any]] = []
                updates: list[dict[str, Any]] = []
                for item in chunk:
                    old = existing.get(item.id)
                    if old is None:
                        new += 1
                        inserts.append(
                            {
                                "poll_id": item.id,
                                "payload": item.payload,
                                "content_hash": item.hash,
                                "updated_at": item.updated_at,
                                "status": PENDING,
                                "item_id": None,
                                "assigned_by_id": None,
                                "pushed_hash": None,
                                "error": None,
                                "problems": [],
                                "first_seen_at": now,
                                "pushed_at": None,
                                "run_id": run_id,
                            }
                        )
                    elif old.content_hash == item.hash and old.status != DELETED:
                        unchanged += 1
                    else:
                        changed += 1
                        was_pushed = old.item_id is not None or old.status in (PUSHED, DELETED)
                        updates.append(
                            {
                                "b_id": item.id,
                                "b_payload": item.payload,
                                "b_hash": item.hash,
                                "b_updated_at": item.updated_at,
                                "b_status": CHANGED if was_pushed else PENDING,
                                "b_run_id": run_id,
                            }
                        )
                if inserts:
                    conn.execute(insert(t), inserts)
                if updates:
                    conn.execute(_POLL_RESTAGE, updates)
            if mark is not None:
                _advance_watermark(conn, *mark, now=now)
        return StageCounts(new=new, changed=changed, unchanged=unchanged)

    def mark_poll_deleted(self, *, poll_id: int) -> bool:
        """Record that the platform no longer has this poll; returns False if the ledger never saw it."""
        with self._write("recording a deleted poll") as conn:
            result = conn.execute(update(_polls).where(_polls.c.poll_id == poll_id).values(status=DELETED))
        return result.rowcount > 0

    def polls_to_push(self, *, poll_ids: Iterable[int] | None = None) -> list[PollRow]:
        """Polls whose poll form must be created or updated: ``pending``, ``changed``, ``failed``."""
        cond: ColumnElement[bool] = _polls.c.status.in_([PENDING, CHANGED, FAILED])
        if poll_ids is not None:
            cond = and_(cond, _polls.c.poll_id.in_(sorted(set(poll_ids))))
        return self._poll_select(cond)

    def poll_rows(self, *, poll_ids: Iterable[int] | None = None) -> list[PollRow]:
        """All polls (or these), whatever their status, ordered by ``poll_id``."""
        cond: ColumnElement[bool] = true()
        if poll_ids is not None:
            cond = _polls.c.poll_id.in_(sorted(set(poll_ids)))
        return self._poll_select(cond)

    def _poll_select(self, cond: ColumnElement[bool]) -> list[PollRow]:
        return self._orm_select(PollRow, select(PollRow).where(cond).order_by(_polls.c.poll_id), "reading polls")

    def mark_poll_pushed(
        self,
        *,
        poll_id: int,
        item_id: int | None,
        assigned_by_id: int | None,
        pushed_hash: str,
        problems: Sequence[Any] | None = None,
    ) -> None:
        """Record the poll form's CRM id; ``changed`` instead of ``pushed`` if the poll was edited meanwhile."""
        with self._write("recording a pushed poll") as conn:
            conn.execute(
                update(_polls)
                .where(_polls.c.poll_id == poll_id)
                .values(
                    status=case((_polls.c.content_hash == pushed_hash, PUSHED), else_=CHANGED),
                    item_id=item_id,
                    assigned_by_id=assigned_by_id,
                    pushed_hash=pushed_hash,
                    problems=_plain_problems(problems),
                    error=None,
                    pushed_at=utc_now(),
                )
            )

    def mark_poll_failed(self, *, poll_id: int, error: str) -> None:
        """Record that the poll form could not be written; the next run tries again."""
        with self._write("recording a failed poll") as conn:
            conn.execute(update(_polls).where(_polls.c.poll_id == poll_id).values(status=FAILED, error=error))

    def poll_counts_by_status(self) -> dict[str, int]:
        """How many polls are in each status (zeros included)."""
        counts = dict.fromkeys(POLL_STATUSES, 0)
        with self._read("counting polls") as conn:
            for status, n in conn.execute(select(_polls.c.status, func.count()).group_by(_polls.c.status)):
                counts[status] = n
        return counts

    # -- watermarks -------------------------------------------------------------------

    def get_watermark(self, name: str) -> datetime | None:
        with self._read("reading a watermark") as conn:
            return conn.execute(select(_watermarks.c.value).where(_watermarks.c.name == name)).scalar()

    def set_watermark(self, name: str, value: datetime, *, allow_backwards: bool = False) -> datetime:
        """Move a watermark (forward only, unless ``allow_backwards``); returns the value now in force."""
        value = _aware_arg(value, "watermark value")
        with self._write("moving a watermark") as conn:
            return _advance_watermark(conn, name, value, now=utc_now(), allow_backwards=allow_backwards)

    def watermarks(self) -> dict[str, datetime]:
        with self._read("reading watermarks") as conn:
            return {
                name: value
                for name, value in conn.execute(
                    select(_watermarks.c.name, _watermarks.c.value).order_by(_watermarks.c.name)
                )
            }

    # -- runs -------------------------------------------------------------------------

    def start_run(
        self,
        *,
        command: str,
        dry_run: bool,
        since: datetime | None = None,
        poll_filter: Iterable[int] | None = None,
    ) -> str:
        """Record a run as ``running``; returns its ``run_id`` (a uuid4 string)."""
        if command not in RUN_COMMANDS:
            raise ValueError(f"unknown run command {command!r}: expected one of {', '.join(RUN_COMMANDS)}")
        run_id = str(uuid.uuid4())
        with self._write("recording a run") as conn:
            conn.execute(
                insert(_runs).values(
                    run_id=run_id,
                    command=command,
                    started_at=utc_now(),
                    dry_run=bool(dry_run),
                    outcome=RUNNING,
                    since=None if since is None else _aware_arg(since, "since"),
                    poll_filter=None if poll_filter is None else [int(p) for p in poll_filter],
                    counts={},
                    requests=0,
                    retries=0,
                )
            )
        return run_id

    def finish_run(
        self,
        *,
        run_id: str,
        outcome: str,
        counts: dict[str, Any],
        requests: int,
        retries: int,
        error: str | None = None,
    ) -> None:
        """Record how a run ended (``ok``, ``needs_attention``, ``aborted``, ``interrupted``)."""
        if outcome not in RUN_OUTCOMES or outcome == RUNNING:
            raise ValueError(f"unknown run outcome {outcome!r}: expected one of {', '.join(RUN_OUTCOMES[1:])}")
        with self._write("finishing a run") as conn:
            result = conn.execute(
                update(_runs)
                .where(_runs.c.run_id == run_id)
                .values(
                    outcome=outcome,
                    finished_at=utc_now(),
                    counts=to_jsonable_python(counts),
                    requests=int(requests),
                    retries=int(retries),
                    error=error,
                )
            )
        if result.rowcount == 0:
            raise ValueError(f"no run {run_id!r} in the store: finish_run needs the id start_run returned")

    def get_run(self, run_id: str) -> RunRow | None:
        runs = self._run_select(select(RunRow).where(_runs.c.run_id == run_id))
        return runs[0] if runs else None

    def last_runs(self, limit: int = 10) -> list[RunRow]:
        """The newest runs first."""
        return self._run_select(select(RunRow).order_by(_runs.c.id.desc()).limit(limit))

    def _run_select(self, stmt: Any) -> list[RunRow]:
        return self._orm_select(RunRow, stmt, "reading runs")

    def mark_stale_runs_interrupted(self, *, keep_run_id: str | None = None) -> list[str]:
        """Mark runs still ``running`` as ``interrupted``; returns their run ids.

        Call it while holding the run lock: then no other process can be running,
        so any ``running`` row was left by a process that died. ``keep_run_id``
        spares the caller's own run if it was already started.
        """
        cond: ColumnElement[bool] = _runs.c.outcome == RUNNING
        if keep_run_id is not None:
            cond = and_(cond, _runs.c.run_id != keep_run_id)
        now = utc_now()
        with self._write("marking interrupted runs") as conn:
            stale = [row.run_id for row in conn.execute(select(_runs.c.run_id).where(cond).order_by(_runs.c.id))]
            if stale:
                conn.execute(
                    update(_runs)
                    .where(_runs.c.run_id.in_(stale))
                    .values(
                        outcome="interrupted",
                        error=f"the process ended without finishing this run (found at {now.isoformat()})",
                    )
                )
        return stale


# -- statements used with many parameter sets (executemany) ---------------------------

_ANSWER_RESTAGE = (
    update(_answers)
    .where(_answers.c.answer_id == bindparam("b_id"))
    .values(
        poll_id=bindparam("b_poll_id", type_=_answers.c.poll_id.type),
        updated_at=bindparam("b_updated_at", type_=_answers.c.updated_at.type),
        content_hash=bindparam("b_hash", type_=_answers.c.content_hash.type),
        payload=bindparam("b_payload", type_=_answers.c.payload.type),
        status=bindparam("b_status", type_=_answers.c.status.type),
        run_id=bindparam("b_run_id", type_=_answers.c.run_id.type),
        problems=[],
        error=None,
        retryable=False,
    )
)

# An answer edited while its push is in flight keeps its status: the push must be
# reconciled first; mark_pushed then sees the new hash and makes it ``changed``.
_ANSWER_CONTENT = (
    update(_answers)
    .where(_answers.c.answer_id == bindparam("b_id"))
    .values(
        poll_id=bindparam("b_poll_id", type_=_answers.c.poll_id.type),
        updated_at=bindparam("b_updated_at", type_=_answers.c.updated_at.type),
        content_hash=bindparam("b_hash", type_=_answers.c.content_hash.type),
        payload=bindparam("b_payload", type_=_answers.c.payload.type),
        run_id=bindparam("b_run_id", type_=_answers.c.run_id.type),
    )
)

_ANSWER_PUSHED = (
    update(_answers)
    .where(_answers.c.answer_id == bindparam("b_id"))
    .values(
        status=case(
            (_answers.c.content_hash == bindparam("b_hash", type_=_answers.c.pushed_hash.type), bindparam("b_status")),
            else_=CHANGED,
        ),
        contact_id=bindparam("b_contact_id", type_=_answers.c.contact_id.type),
        deal_ids=bindparam("b_deal_ids", type_=_answers.c.deal_ids.type),
        pushed_hash=bindparam("b_hash", type_=_answers.c.pushed_hash.type),
        problems=bindparam("b_problems", type_=_answers.c.problems.type),
        pushed_at=bindparam("b_now", type_=_answers.c.pushed_at.type),
        error=None,
        retryable=False,
    )
)

_POLL_RESTAGE = (
    update(_polls)
    .where(_polls.c.poll_id == bindparam("b_id"))
    .values(
        payload=bindparam("b_payload", type_=_polls.c.payload.type),
        content_hash=bindparam("b_hash", type_=_polls.c.content_hash.type),
        updated_at=bindparam("b_updated_at", type_=_polls.c.updated_at.type),
        status=bindparam("b_status", type_=_polls.c.status.type),
        run_id=bindparam("b_run_id", type_=_polls.c.run_id.type),
        problems=[],
        error=None,
    )
)


# -- helpers --------------------------------------------------------------------------


def _advance_watermark(
    conn: Connection, name: str, value: datetime, *, now: datetime, allow_backwards: bool = False
) -> datetime:
    w = _watermarks
    # Create-if-missing then a guarded UPDATE: atomic on both backends even when two
    # writers race (the guard is re-checked against the row each UPDATE finally sees).
    dialect_insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    conn.execute(
        dialect_insert(w).values(name=name, value=value, updated_at=now).on_conflict_do_nothing(index_elements=["name"])
    )
    guard = w.c.value != value if allow_backwards else w.c.value < value
    conn.execute(update(w).where(w.c.name == name, guard).values(value=value, updated_at=now))
    return conn.execute(select(w.c.value).where(w.c.name == name)).scalar_one()


def _watermark_arg(watermark: tuple[str, datetime] | None) -> tuple[str, datetime] | None:
    if watermark is None:
        return None
    name, value = watermark
    if not name:
        raise ValueError("a watermark needs a name")
    return str(name), _aware_arg(value, f"watermark {name!r}")


def _aware_arg(value: Any, what: str) -> datetime:
    try:
        return _aware.validate_python(value)
    except ValidationError:
        raise ValueError(f"{what} must be an aware datetime (with a UTC offset), got {value!r}") from None


def _staged(item: Any, key: str, *, needs_poll: bool) -> _Staged:
    if isinstance(item, BaseModel):
        item = item.model_dump(mode="json")
    payload = to_jsonable_python(item)
    if not isinstance(payload, dict):
        raise ValueError(f"expected a dict with {key!r}, got {type(item).__name__}")
    try:
        ident = int(payload[key])
        poll_id = int(payload["poll_id"]) if needs_poll else None
        updated_at = _aware.validate_python(payload["updated_at"])
    except (KeyError, TypeError, ValueError, ValidationError) as exc:
        raise ValueError(
            f"cannot stage {key}={payload.get(key)!r}: it needs an integer {key!r}"
            + (", an integer 'poll_id'" if needs_poll else "")
            + f" and an aware 'updated_at' ({type(exc).__name__}: {exc})"
        ) from None
    return _Staged(id=ident, poll_id=poll_id, updated_at=updated_at, payload=payload, hash=content_hash(payload))


def _dedupe(items: Iterable[_Staged]) -> list[_Staged]:
    latest: dict[int, _Staged] = {}
    for item in items:
        seen = latest.get(item.id)
        if seen is None or item.updated_at >= seen.updated_at:
            latest[item.id] = item
    return list(latest.values())


def _new_answer(item: _Staged, *, now: datetime, run_id: str) -> dict[str, Any]:
    return {
        "answer_id": item.id,
        "poll_id": item.poll_id,
        "updated_at": item.updated_at,
        "content_hash": item.hash,
        "payload": item.payload,
        "status": PENDING,
        "problems": [],
        "error": None,
        "retryable": False,
        "attempts": 0,
        "contact_id": None,
        "deal_ids": {},
        "pushed_hash": None,
        "first_seen_at": now,
        "last_attempt_at": None,
        "pushed_at": None,
        "run_id": run_id,
    }


def _plain_problems(problems: Sequence[Any] | None) -> list[dict[str, Any]]:
    """Problems as JSON dicts (``{"code", "severity", "params"}``), whatever shape they came in."""
    plain: list[dict[str, Any]] = []
    for problem in problems or ():
        if isinstance(problem, BaseModel):
            problem = problem.model_dump(mode="json")
        elif is_dataclass(problem) and not isinstance(problem, type):
            problem = asdict(problem)
        problem = to_jsonable_python(problem)
        if not isinstance(problem, dict):
            raise ValueError(f"a problem must be a dict with code/severity/params, got {problem!r}")
        plain.append(problem)
    return plain


def _chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
