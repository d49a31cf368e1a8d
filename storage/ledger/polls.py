"""Polls in the ledger: staging them by ``poll_id`` and recording their poll forms in the CRM."""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import and_, bindparam, case, func, insert, select, true, update
from sqlalchemy.sql.elements import ColumnElement

from core.clock import utc_now
from core.iterables import chunks
from storage.ledger.base import IN_CHUNK, LedgerBase, polls_table as _polls
from storage.ledger.values import StageCounts, dedupe, plain_problems, to_staged
from storage.ledger.watermarks import advance_watermark, watermark_arg
from storage.tables import CHANGED, DELETED, FAILED, PENDING, POLL_STATUSES, PUSHED, PollRow


class PollLedger(LedgerBase):
    """The ledger's poll rows (mixed into ``Ledger``)."""

    def stage_polls(
        self, *, polls: Sequence[dict[str, Any]], watermark: tuple[str, datetime] | None, run_id: str
    ) -> StageCounts:
        """Upsert polls by ``poll_id`` and move the watermark, in one transaction.

        Unknown → ``pending``; same hash → untouched; new hash → ``changed`` if it
        has a poll form in the CRM, else ``pending``; a ``deleted`` poll that is
        listed again → ``changed`` even with the same hash.
        """
        staged = dedupe(to_staged(item, "poll_id", needs_poll=False) for item in polls)
        mark = watermark_arg(watermark)
        now = utc_now()
        new = changed = unchanged = 0
        t = _polls
        with self._write("staging polls") as conn:
            for chunk in chunks(staged, IN_CHUNK):
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
                advance_watermark(conn, *mark, now=now)
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
                    problems=plain_problems(problems),
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


# Used with many parameter sets (executemany).
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


