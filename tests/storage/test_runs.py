"""Run records: started, finished, listed, and the ones a dead process left running."""
from __future__ import annotations

import uuid

import pytest
from freezegun import freeze_time

from storage.ledger import Ledger
from tests.storage.conftest import T0


def test_run_is_recorded_from_start_to_finish(ledger: Ledger):
    with freeze_time("2026-11-27T03:00:00Z"):
        run_id = ledger.start_run(command="sync", dry_run=True, since=T0, poll_filter=[3, 1])
    uuid.UUID(run_id)
    run = ledger.get_run(run_id)
    assert (run.command, run.dry_run, run.outcome, run.since, run.poll_filter) == ("sync", True, "running", T0, [3, 1])
    assert run.started_at.isoformat() == "2026-11-27T03:00:00+00:00" and run.finished_at is None

    with freeze_time("2026-11-27T03:01:30Z"):
        ledger.finish_run(
            run_id=run_id, outcome="needs_attention", counts={"pushed": 10, "needs_attention": 2}, requests=4, retries=1
        )
    run = ledger.get_run(run_id)
    assert run.outcome == "needs_attention"
    assert run.counts == {"pushed": 10, "needs_attention": 2}
    assert (run.requests, run.retries, run.error) == (4, 1, None)
    assert run.finished_at.isoformat() == "2026-11-27T03:01:30+00:00"


def test_last_runs_are_newest_first(ledger: Ledger):
    ids = [ledger.start_run(command="sync", dry_run=False, since=None, poll_filter=None) for _ in range(3)]
    assert [r.run_id for r in ledger.last_runs(limit=2)] == [ids[2], ids[1]]
    assert len(ledger.last_runs()) == 3


def test_stale_running_run_becomes_interrupted(ledger: Ledger):
    dead = ledger.start_run(command="schedule", dry_run=False, since=None, poll_filter=None)
    done = ledger.start_run(command="sync", dry_run=False, since=None, poll_filter=None)
    ledger.finish_run(run_id=done, outcome="ok", counts={}, requests=1, retries=0)
    # the next process takes the lock, then starts its own run
    mine = ledger.start_run(command="sync", dry_run=False, since=None, poll_filter=None)

    assert ledger.mark_stale_runs_interrupted(keep_run_id=mine) == [dead]

    assert ledger.get_run(dead).outcome == "interrupted"
    assert "ended without finishing" in ledger.get_run(dead).error
    assert ledger.get_run(done).outcome == "ok"
    assert ledger.get_run(mine).outcome == "running"
    assert ledger.mark_stale_runs_interrupted(keep_run_id=mine) == []


def test_run_arguments_are_checked(ledger: Ledger):
    with pytest.raises(ValueError, match="unknown run command"):
        ledger.start_run(command="deploy", dry_run=False, since=None, poll_filter=None)
    run_id = ledger.start_run(command="retry", dry_run=False, since=None, poll_filter=None)
    with pytest.raises(ValueError, match="unknown run outcome"):
        ledger.finish_run(run_id=run_id, outcome="great", counts={}, requests=0, retries=0)
    with pytest.raises(ValueError, match="no run"):
        ledger.finish_run(run_id="nope", outcome="ok", counts={}, requests=0, retries=0)
    ledger.finish_run(run_id=run_id, outcome="aborted", counts={}, requests=0, retries=0, error="Bitrix24 refused the webhook")
    assert ledger.get_run(run_id).error == "Bitrix24 refused the webhook"
