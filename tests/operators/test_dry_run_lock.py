"""The nightly dry-run and the 5-minute sync (issue 13, item 7): the dry-run waits for the run lock, bounded."""
from __future__ import annotations

import threading
import time

import pytest

from core.errors import LockHeldError
from storage.db import make_engine, migrate
from storage.lock import run_lock


def test_a_dry_run_waits_for_a_running_sync_and_then_goes_on(job):
    engine = make_engine(job.store_url)
    migrate(engine)
    released = threading.Event()

    def sync_for_a_second():
        with run_lock(engine, database_url=job.store_url, holder="sync"):
            held.set()
            time.sleep(1.0)
        released.set()

    held = threading.Event()
    threading.Thread(target=sync_for_a_second, daemon=True).start()
    assert held.wait(5)
    summary = job.run(dry_run=True, lock_wait_s=10)
    assert released.is_set()  # it began only after the sync let go
    assert summary.dry_run and summary.counts["answers_seen"] > 0


def test_a_dry_run_skips_with_a_clear_reason_when_the_sync_outlasts_the_wait(job):
    engine = make_engine(job.store_url)
    migrate(engine)
    with run_lock(engine, database_url=job.store_url, holder="sync"):
        t0 = time.monotonic()
        with pytest.raises(LockHeldError) as caught:
            job.run(dry_run=True, lock_wait_s=0.6)
        waited = time.monotonic() - t0
    assert 0.5 <= waited < 5
    assert "another sync is still running after 0.6 s of waiting" in str(caught.value)
    assert "this run is skipped" in str(caught.value)


def test_a_dry_run_copies_the_store_under_the_lock_and_plans_without_it(job, monkeypatch):
    """While it plans, a real run may take the lock (the 5-minute sync is not held up by a long dry-run)."""
    from sync import run as run_module
    original = run_module.run
    seen: list[str] = []

    def run_and_try_the_lock(options, **kwargs):
        with run_lock(job.store_url, holder="sync"):  # raises LockHeldError if the dry-run still held it
            seen.append("taken")
        return original(options, **kwargs)

    monkeypatch.setattr(run_module, "run", run_and_try_the_lock)
    job.run(dry_run=True, lock_wait_s=1)
    assert seen == ["taken"]
