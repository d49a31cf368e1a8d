"""Answers in the ledger: staging them by ``answer_id``, offering them to a push, recording the outcome.

The status rules are in the ``storage.ledger`` package docstring.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import and_, bindparam, case, false, func, insert, or_, select, true, union_all, update
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from core.clock import utc_now
from core.iterables import chunks
from storage.ledger.base import IN_CHUNK, LedgerBase, answers_table as _answers
from storage.ledger.values import ATTENTION, PushedResult, StageCounts, Staged, dedupe, plain_problems, to_staged
from storage.ledger.watermarks import advance_watermark, watermark_arg
from storage.tables import (
    ANSWER_STATUSES,
    CHANGED,
    FAILED,
    IN_FLIGHT,
    NEEDS_ATTENTION,
    PENDING,
    PUSHED,
    AnswerRow,
)


class AnswerLedger(LedgerBase):
    """The ledger's answer rows (mixed into ``Ledger``)."""

    # -- answers: staging -----------------------------------------------------------------

    def stage_answers(
        self, *, answers: Sequence[dict[str, Any]], watermark: tuple[str, datetime] | None, run_id: str
    ) -> StageCounts:
        """Upsert answers by ``answer_id`` and move the watermark, in one transaction.

        ``answers`` are JSON-able dicts of ``Answer`` (``answer_id``, ``poll_id``,
        ``updated_at``, …). The watermark ``(name, value)`` only ever moves forward.
        An id given twice counts once (the one with the newest ``updated_at``).
        """
        staged = dedupe(to_staged(item, "answer_id", needs_poll=True) for item in answers)
        mark = watermark_arg(watermark)
        now = utc_now()
        new = changed = unchanged = 0
        t = _answers
        with self._write("staging answers") as conn:
            for chunk in chunks(staged, IN_CHUNK):
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
                        inserts.append(new_answer(item, now=now, run_id=run_id))
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
                advance_watermark(conn, *mark, now=now)
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
            for id_chunk in chunks(sorted(set(answer_ids)), min(chunk, IN_CHUNK)):
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

    def mark_in_flight(self, *, answer_ids: Iterable[int], run_id: str) -> int:
        """Mark answers as being pushed by ``run_id`` (one UPDATE); returns how many rows it touched."""
        ids = sorted(set(answer_ids))
        now = utc_now()
        touched = 0
        with self._write("marking answers in flight") as conn:
            for id_chunk in chunks(ids, 10 * IN_CHUNK):
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
            problems = plain_problems(result.problems)
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
                .values(status=FAILED, error=error, retryable=bool(retryable), problems=plain_problems(problems))
            )

    def mark_needs_attention(self, *, answer_id: int, problems: Sequence[Any]) -> None:
        """Keep an answer out of pushes until an operator fixes the cause and runs ``retry``."""
        self.mark_all_needing_attention({answer_id: problems})

    def mark_all_needing_attention(self, problems_by_answer: Mapping[int, Sequence[Any]]) -> None:
        """``mark_needs_attention`` for many answers (each with its own problems), in one transaction."""
        if not problems_by_answer:
            return
        with self._write("recording answers needing attention") as conn:
            conn.execute(_NEEDS_ATTENTION, [{"b_id": answer_id, "b_problems": plain_problems(problems)}
                                            for answer_id, problems in problems_by_answer.items()])

    def in_flight_answers(self) -> list[AnswerRow]:
        """Answers whose push was started but never recorded: reconcile them by their external keys."""
        return self._answer_select(_answers.c.status == IN_FLIGHT, limit=None)

    def get_answer(self, answer_id: int) -> AnswerRow | None:
        rows = self._answer_select(_answers.c.answer_id == answer_id, limit=None)
        return rows[0] if rows else None

    def answer_rows(self, *, answer_ids: Iterable[int]) -> list[AnswerRow]:
        """The rows of these answers (those that exist), ordered by ``answer_id``."""
        rows: list[AnswerRow] = []
        for id_chunk in chunks(sorted(set(answer_ids)), IN_CHUNK):
            rows.extend(self._answer_select(_answers.c.answer_id.in_(id_chunk), limit=None))
        return rows

    def counts_by_status(self) -> dict[str, int]:
        """How many answers are in each status (every status listed, zeros included)."""
        counts = dict.fromkeys(ANSWER_STATUSES, 0)
        with self._read("counting answers") as conn:
            for status, n in conn.execute(select(_answers.c.status, func.count()).group_by(_answers.c.status)):
                counts[status] = n
        return counts

    def needing_attention(
        self, limit: int | None = 100, *, poll_ids: Iterable[int] | None = None, reason: str | None = None
    ) -> list[AnswerRow]:
        """Answers an operator must look at: ``needs_attention`` and non-retryable ``failed``, by ``answer_id``.

        ``limit=None`` returns them all; ``poll_ids`` keeps those polls' answers; ``reason``
        keeps answers carrying a problem of that code (``failed`` rows match the reason
        ``failed``, as their cause is a free-text error rather than a code).
        """
        cond = _attention_condition(poll_ids)
        if reason is None:
            return self._answer_select(cond, limit=limit)
        # Problems are a JSON list whose shape differs by backend: filter in Python, in id order, page by page.
        found: list[AnswerRow] = []
        after: int | None = None
        while limit is None or len(found) < limit:
            page_cond = cond if after is None else and_(cond, _answers.c.answer_id > after)
            page = self._answer_select(page_cond, limit=IN_CHUNK)
            if not page:
                break
            found.extend(row for row in page if reason in attention_reasons(row))
            after = page[-1].answer_id
        return found if limit is None else found[:limit]

    def count_needing_attention(self, *, poll_ids: Iterable[int] | None = None) -> int:
        """How many answers ``needing_attention`` would list without a limit."""
        with self._read("counting answers needing attention") as conn:
            return int(conn.execute(select(func.count()).where(_attention_condition(poll_ids))).scalar() or 0)

    def needing_attention_ids(self) -> set[int]:
        """The ids of every answer needing attention (compared before and after a run: which are new)."""
        with self._read("reading answers needing attention") as conn:
            return {row[0] for row in conn.execute(select(_answers.c.answer_id).where(_attention_condition(None)))}

    def oldest_needing_attention(self) -> datetime | None:
        """When the longest-waiting answer needing attention was first seen (None when none waits)."""
        with self._read("reading answers needing attention") as conn:
            return conn.execute(select(func.min(_answers.c.first_seen_at)).where(_attention_condition(None))).scalar()


def _attention_condition(poll_ids: Iterable[int] | None) -> ColumnElement[bool]:
    t = _answers
    cond = or_(t.c.status == NEEDS_ATTENTION, and_(t.c.status == FAILED, t.c.retryable == false()))
    if poll_ids is not None:
        cond = and_(cond, t.c.poll_id.in_(sorted(set(poll_ids))))
    return cond


def attention_reasons(row: AnswerRow) -> set[str]:
    """The reason codes of a row needing attention: its attention problems' codes, ``failed`` for a failed push."""
    codes = {str(p.get("code")) for p in (row.problems or []) if isinstance(p, dict) and p.get("severity") == ATTENTION}
    if row.status == FAILED:
        codes.add(FAILED)
    return codes



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

_NEEDS_ATTENTION = (
    update(_answers)
    .where(_answers.c.answer_id == bindparam("b_id"))
    .values(status=NEEDS_ATTENTION, problems=bindparam("b_problems", type_=_answers.c.problems.type))
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

def new_answer(item: Staged, *, now: datetime, run_id: str) -> dict[str, Any]:
    """The full row of an answer seen for the first time."""
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


