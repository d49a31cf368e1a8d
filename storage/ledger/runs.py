"""Run records: one row per run, from ``running`` to how it ended."""
from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from pydantic_core import to_jsonable_python
from sqlalchemy import and_, insert, select, update
from sqlalchemy.sql.elements import ColumnElement

from core.clock import utc_now
from storage.ledger.base import LedgerBase, runs_table as _runs
from storage.ledger.values import aware_arg
from storage.tables import RUN_COMMANDS, RUN_OUTCOMES, RUNNING, RunRow


class RunLedger(LedgerBase):
    """The ledger's run records (mixed into ``Ledger``)."""

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
                    since=None if since is None else aware_arg(since, "since"),
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


