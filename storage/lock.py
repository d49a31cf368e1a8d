"""The cross-process run lock: one sync at a time per store; a taker waits only if it asks to.

SQLite: an exclusive ``flock`` on ``<db file>.lock`` beside the database (through
``filelock``, with its soft-lock fallback off so only an OS lock is ever used); who
holds it is written to ``<db file>.lock.json``. Postgres: a session-level
``pg_try_advisory_lock`` on a connection kept open for the duration; who holds it is
written to the ``locks`` table. Either way the OS or the server releases the lock
when the holder's process dies, so a crashed run never blocks the next one.

A second taker gets ``LockHeldError`` at once (or after ``wait_s``, for a dry-run that
would rather wait for the 5-minute sync than skip), naming the holder::

    another sync is running (pid 1234 on host, started 2026-11-27T03:00:00Z by 'sync')
"""
from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout
from sqlalchemy import delete, insert, select, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError

from core.clock import utc_now
from storage.db import advisory_key, make_engine, normalise_url, sqlite_path, store_errors
from storage.tables import LockRow
from core.errors import LockHeldError

LOCK_NAME = "run"
_memory_locks: dict[str, threading.Lock] = {}
_memory_guard = threading.Lock()


@contextmanager
def run_lock(engine_or_url: Engine | str, *, database_url: str | None = None, holder: str,
             wait_s: float = 0.0) -> Iterator[dict[str, Any]]:
    """Hold the store's run lock for the ``with`` block, or raise ``LockHeldError``.

    ``wait_s`` > 0 waits that long for a holder to finish before giving up (0: give up at once).

    ``holder`` says who takes it (the command: ``'sync'``, ``'retry'``…). Yields the
    holder info written for others to read (``holder``, ``pid``, ``host``, ``since``).
    ``database_url`` defaults to the engine's URL (or ``engine_or_url`` itself).
    """
    if database_url is None:
        database_url = (
            engine_or_url.url.render_as_string(hide_password=False)
            if isinstance(engine_or_url, Engine)
            else engine_or_url
        )
    url = normalise_url(database_url)
    info = {"holder": holder, "pid": os.getpid(), "host": socket.gethostname(), "since": _iso(utc_now())}
    if url.get_backend_name() == "sqlite":
        path = sqlite_path(url)
        lock = _memory_lock(str(url), wait_s) if path is None else _file_lock(path.resolve(), info, wait_s)
        with lock:
            yield info
        return
    if isinstance(engine_or_url, Engine):
        with _advisory_lock(engine_or_url, info, wait_s):
            yield info
        return
    engine = make_engine(database_url)
    try:
        with _advisory_lock(engine, info, wait_s):
            yield info
    finally:
        engine.dispose()


def lock_paths(db_path: Path) -> tuple[Path, Path]:
    """The lock file and the holder-info file of a SQLite store."""
    return db_path.with_name(db_path.name + ".lock"), db_path.with_name(db_path.name + ".lock.json")


@contextmanager
def _file_lock(db_path: Path, info: dict[str, Any], wait_s: float = 0.0) -> Iterator[None]:
    lock_path, info_path = lock_paths(db_path)
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(lock_path), blocking=False, thread_local=False, preserve_lock_file=True)
    try:
        if wait_s > 0:
            lock.acquire(timeout=wait_s, poll_interval=min(0.5, wait_s), blocking=True)
        else:
            lock.acquire()
    except Timeout:
        raise _held(_read_info(info_path), where=str(lock_path), waited_s=wait_s) from None
    try:
        tmp = info_path.with_name(info_path.name + f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(info, ensure_ascii=False), encoding="utf-8")
        os.replace(tmp, info_path)
        yield
    finally:
        # Remove the info before letting go, so it never describes the next holder.
        with suppress(OSError):
            info_path.unlink()
        lock.release()


def _read_info(info_path: Path) -> dict[str, Any]:
    try:
        data = json.loads(info_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


@contextmanager
def _memory_lock(key: str, wait_s: float = 0.0) -> Iterator[None]:
    with _memory_guard:
        lock = _memory_locks.setdefault(key, threading.Lock())
    if not (lock.acquire(timeout=wait_s) if wait_s > 0 else lock.acquire(blocking=False)):
        raise _held({}, where="this process (in-memory store)", waited_s=wait_s)
    try:
        yield
    finally:
        lock.release()


@contextmanager
def _advisory_lock(engine: Engine, info: dict[str, Any], wait_s: float = 0.0) -> Iterator[None]:
    with store_errors(engine, "taking the run lock"):
        # Autocommit: the advisory lock belongs to the session, not a transaction,
        # and the holder row must be visible to others at once.
        conn = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
    locked = released = False
    try:
        with store_errors(engine, "taking the run lock"):
            key = advisory_key(conn, LOCK_NAME)
            deadline = time.monotonic() + wait_s
            while True:  # try, not block: a blocked session could not be given up on at the deadline
                locked = bool(conn.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": key}).scalar())
                if locked or time.monotonic() >= deadline:
                    break
                time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))
            other = {} if locked else _read_row(conn)
        if not locked:
            raise _held(other, where="a Postgres advisory lock", waited_s=wait_s)
        _write_row(conn, info)
        yield
    finally:
        if locked:
            _drop_row(conn)
            with suppress(Exception):
                released = bool(conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key}).scalar())
            if not released:
                # Never hand a connection that may still hold the lock back to the
                # pool: ending its session is what releases the lock then.
                with suppress(Exception):
                    conn.invalidate()
        with suppress(Exception):
            conn.close()


def _write_row(conn: Connection, info: dict[str, Any]) -> None:
    t = LockRow.__table__
    try:
        conn.execute(delete(t).where(t.c.name == LOCK_NAME))
        conn.execute(
            insert(t).values(
                name=LOCK_NAME,
                holder=str(info["holder"])[:200],
                pid=info["pid"],
                host=str(info["host"])[:255],
                since=datetime.fromisoformat(info["since"].replace("Z", "+00:00")),
            )
        )
    except DBAPIError:
        # The store may not be migrated yet (the lock is taken before migrating):
        # the lock works without the holder row, only the message is vaguer.
        conn.rollback()


def _drop_row(conn: Connection) -> None:
    t = LockRow.__table__
    try:
        conn.execute(delete(t).where(t.c.name == LOCK_NAME))
    except DBAPIError:
        with suppress(Exception):
            conn.rollback()


def _read_row(conn: Connection) -> dict[str, Any]:
    t = LockRow.__table__
    try:
        row = conn.execute(select(t).where(t.c.name == LOCK_NAME)).first()
    except DBAPIError:
        with suppress(Exception):
            conn.rollback()
        return {}
    if row is None:
        return {}
    return {"holder": row.holder, "pid": row.pid, "host": row.host, "since": _iso(row.since)}


def _held(info: dict[str, Any], *, where: str, waited_s: float = 0.0) -> LockHeldError:
    holder = str(info.get("holder") or "")
    since = str(info.get("since") or "")
    if info.get("pid"):
        who = f"pid {info['pid']} on {info.get('host') or 'an unknown host'}, started {since or 'at an unknown time'}"
        if holder:
            who += f" by {holder!r}"
    else:
        who = f"holder unknown; lock: {where}"
    if waited_s > 0:
        return LockHeldError(
            f"another sync is still running after {waited_s:g} s of waiting ({who}); this run is skipped → the next "
            "scheduled one tries again, or run it by hand once that one has finished",
            holder=holder,
            since=since,
        )
    return LockHeldError(
        f"another sync is running ({who}) → let it finish; the lock is freed the moment that process ends, "
        "so there is nothing to delete by hand",
        holder=holder,
        since=since,
    )


def _iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")
