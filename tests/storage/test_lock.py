"""The run lock: one run at a time, refused at once with who holds it, freed when the holder dies."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from freezegun import freeze_time
from sqlalchemy import select

from storage.db import make_engine, migrate, normalise_url, sqlite_path
from storage.lock import lock_paths, run_lock
from storage.tables import LockRow
from core.errors import LockHeldError

ROOT = Path(__file__).resolve().parents[2]


def test_lock_is_taken_and_released(engine, store_url):
    with run_lock(engine, database_url=store_url, holder="sync") as info:
        assert info["pid"] == os.getpid() and info["holder"] == "sync"
    with run_lock(engine, database_url=store_url, holder="retry"):
        pass


def test_second_lock_holder_is_refused_with_holder_and_since(engine, store_url):
    with freeze_time("2026-11-27T03:00:00Z"):
        with run_lock(engine, database_url=store_url, holder="sync"):
            with pytest.raises(LockHeldError) as caught:
                with run_lock(store_url, database_url=store_url, holder="schedule"):
                    pytest.fail("a second holder got the lock")
    error = caught.value
    assert error.holder == "sync"
    assert error.since == "2026-11-27T03:00:00Z"
    assert str(error).startswith(
        f"another sync is running (pid {os.getpid()} on {socket.gethostname()}, "
        "started 2026-11-27T03:00:00Z by 'sync')"
    )


def test_second_holder_is_refused_at_once_not_after_waiting(engine, store_url):
    with run_lock(engine, holder="sync"):
        started = time.monotonic()
        with pytest.raises(LockHeldError):
            with run_lock(engine, holder="sync"):
                pass
        assert time.monotonic() - started < 2


def test_in_memory_store_lock_is_per_process():
    with run_lock("sqlite://", holder="sync"):
        with pytest.raises(LockHeldError, match="in-memory"):
            with run_lock("sqlite://", holder="sync"):
                pass
    with run_lock("sqlite://", holder="sync"):
        pass


def test_lock_is_released_when_the_body_raises(engine, store_url):
    with pytest.raises(RuntimeError):
        with run_lock(engine, database_url=store_url, holder="sync"):
            raise RuntimeError("run failed")
    with run_lock(engine, database_url=store_url, holder="sync"):
        pass


def test_holder_info_is_visible_while_held_and_gone_after(engine, store_url):
    with run_lock(engine, database_url=store_url, holder="sync"):
        assert _holder_info(engine, store_url)["holder"] == "sync"
    assert _holder_info(engine, store_url) is None


def _holder_info(engine, store_url):
    url = normalise_url(store_url)
    if url.get_backend_name() == "sqlite":
        info_path = lock_paths(sqlite_path(url).resolve())[1]
        return json.loads(info_path.read_text()) if info_path.exists() else None
    with engine.connect() as conn:
        row = conn.execute(select(LockRow.__table__)).first()
    return None if row is None else {"holder": row.holder, "pid": row.pid}


def test_lock_works_before_the_store_is_migrated(store_url):
    with run_lock(store_url, holder="sync"):
        with pytest.raises(LockHeldError, match="another sync is running"):
            with run_lock(store_url, holder="sync"):
                pass
        engine = make_engine(store_url)
        try:
            migrate(engine)  # a migration inside the lock does not wait for the lock
        finally:
            engine.dispose()


def test_sqlite_lock_files_sit_beside_the_database(tmp_path):
    url = f"sqlite:///{tmp_path}/data/sync.sqlite3"
    with run_lock(url, holder="sync"):
        assert (tmp_path / "data" / "sync.sqlite3.lock").exists()
        info = json.loads((tmp_path / "data" / "sync.sqlite3.lock.json").read_text())
        assert set(info) == {"holder", "pid", "host", "since"}


HOLDER_SCRIPT = """
import sys, time
from storage.lock import run_lock
with run_lock(sys.argv[1], holder="schedule"):
    print("locked", flush=True)
    time.sleep(120)
"""


def test_lock_released_when_holder_killed(store_url):
    engine = make_engine(store_url)
    migrate(engine)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER_SCRIPT, store_url], cwd=ROOT, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        line = holder.stdout.readline()
        assert line.strip() == "locked", holder.stderr.read()
        with pytest.raises(LockHeldError) as caught:
            with run_lock(engine, holder="sync"):
                pass
        assert f"pid {holder.pid} " in str(caught.value) and caught.value.holder == "schedule"

        holder.send_signal(signal.SIGKILL)  # no cleanup code runs
        holder.wait(timeout=10)

        deadline = time.monotonic() + 10  # Postgres needs a moment to notice the session ended
        while True:
            try:
                with run_lock(engine, holder="sync") as info:
                    assert info["pid"] == os.getpid()
                break
            except LockHeldError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
        holder.stdout.close()
        holder.stderr.close()
        engine.dispose()
