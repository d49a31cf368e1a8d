"""The scheduler's heartbeat file and the container health check that reads it.

The scheduler (``jobs/scheduler.py``) rewrites one small JSON file — ``HEALTH_FILE``,
default ``./data/heartbeat.json`` — at start, at the start and end of every tick, and
every half minute while it waits::

    {"state": "idle", "schedule": "every 300 s", "interval_s": 300,
     "last_tick_at": "...", "last_outcome": "ok", "next_run_at": "...", "updated_at": "...", ...}

``python -m jobs.health`` (the Docker ``HEALTHCHECK``) exits 0 while the heartbeat is
fresh and 1, with the reason on stdout, when it is not:

* no file, or not readable JSON;
* the scheduler has stopped (``state`` ``stopped``);
* the file was not rewritten for ``3 × interval + 10 min`` (the process is gone or frozen);
* the scheduler is idle and its last tick is older than that while the next run is
  already more than 10 minutes overdue (the scheduling thread is stuck).

A run in flight keeps the heartbeat fresh however long it takes (a backfill can run for
an hour); a failing run does not make the container unhealthy: restarting it would not
fix credentials, so the outcome is shown, not judged.
"""
from __future__ import annotations

import json
import os
import socket
import sys
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from core.clock import utc_now

DEFAULT_HEALTH_FILE = Path("data/heartbeat.json")
GRACE = timedelta(minutes=10)
STALE_INTERVALS = 3
DEFAULT_INTERVAL_S = 300


def heartbeat_path(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The heartbeat file: ``explicit``, else ``$HEALTH_FILE``, else ``./data/heartbeat.json``."""
    if explicit:
        return Path(explicit)
    from_env = os.environ.get("HEALTH_FILE", "").strip()
    return Path(from_env) if from_env else DEFAULT_HEALTH_FILE


def _iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def _parse(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


class Heartbeat:
    """The scheduler's side: keeps the state in memory and rewrites the file atomically.

    Thread-safe: the tick (a worker thread) and the wait loop (the main thread) both write.
    A failed write is reported once per kind of failure and never stops the scheduler.
    """

    def __init__(self, path: str | os.PathLike[str], *, schedule: str, interval_s: float) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._warned: set[str] = set()
        now = utc_now()
        self.state: dict[str, Any] = {
            "state": "starting", "pid": os.getpid(), "host": socket.gethostname(), "schedule": schedule,
            "interval_s": int(interval_s), "started_at": _iso(now), "last_tick_at": None,
            "last_finished_at": None, "last_outcome": None, "last_error": None, "last_run_id": None,
            "consecutive_failures": 0, "next_run_at": None, "updated_at": _iso(now),
        }

    def update(self, **changes: Any) -> None:
        """Merge ``changes`` (datetimes allowed) and rewrite the file."""
        with self._lock:
            for key, value in changes.items():
                self.state[key] = _iso(value) if isinstance(value, datetime) else value
            self.state["updated_at"] = _iso(utc_now())
            self._write(dict(self.state))

    def _write(self, data: dict[str, Any]) -> None:
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps(data, ensure_ascii=False, indent=1), encoding="utf-8")
            os.replace(tmp, self.path)
        except OSError as exc:
            key = f"{type(exc).__name__}:{exc.errno}"
            if key not in self._warned:
                self._warned.add(key)
                from loguru import logger
                logger.warning("cannot write the heartbeat {} ({}): the container health check will fail → "
                               "make its directory writable for this user or set HEALTH_FILE",
                               self.path, exc.strerror or exc)


def read_heartbeat(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The heartbeat as a dict; ``OSError``/``ValueError`` when missing or unreadable."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    return data


def _interval_s(data: dict[str, Any]) -> float:
    value = data.get("interval_s")
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        return float(value)
    try:
        return float(os.environ.get("SCHEDULE_EVERY_S") or DEFAULT_INTERVAL_S)
    except ValueError:
        return float(DEFAULT_INTERVAL_S)


def _ago(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds / 3600:.1f} h"


def check_heartbeat(path: str | os.PathLike[str], *, now: datetime | None = None) -> tuple[bool, str]:
    """``(healthy, one-line reason)`` for the heartbeat at ``path`` (see the module docstring)."""
    now = now or utc_now()
    path = Path(path)
    try:
        data = read_heartbeat(path)
    except FileNotFoundError:
        return False, (f"no heartbeat at {path}: the scheduler has not started (`python cli.py schedule`), "
                       f"or HEALTH_FILE points elsewhere")
    except (OSError, ValueError) as exc:
        return False, f"heartbeat {path} is unreadable ({exc})"
    interval = _interval_s(data)
    limit = timedelta(seconds=STALE_INTERVALS * interval) + GRACE
    updated = _parse(data.get("updated_at"))
    last_tick = _parse(data.get("last_tick_at"))
    next_run = _parse(data.get("next_run_at"))
    state = data.get("state")
    outcome = data.get("last_outcome") or "none yet"
    if data.get("last_error"):
        outcome += f" ({data['last_error']})"
    if state == "stopped":
        return False, f"the scheduler stopped at {data.get('updated_at')} (last outcome: {outcome})"
    if updated is None:
        return False, f"heartbeat {path} has no updated_at"
    if now - updated > limit:
        return False, (f"heartbeat not updated for {_ago(now - updated)} (limit {_ago(limit)}: 3 × the "
                       f"{interval:.0f} s interval + 10 min): the scheduler is gone or frozen")
    if state == "running":
        return True, f"run in progress since {data.get('last_tick_at')} (previous outcome: {outcome})"
    since_tick = now - (last_tick or _parse(data.get("started_at")) or updated)
    if since_tick > limit and (next_run is None or now - next_run > GRACE):
        return False, (f"no run for {_ago(since_tick)} (limit {_ago(limit)}) and the next one, due "
                       f"{data.get('next_run_at') or 'never'}, has not started: the scheduler is stuck")
    return True, (f"last run {data.get('last_tick_at') or 'not yet'}: {outcome}; "
                  f"next run {data.get('next_run_at') or 'not scheduled'}")


def main(argv: list[str] | None = None) -> int:
    """``python -m jobs.health [--file PATH] [--quiet]``: exit 0 healthy, 1 not (reason on stdout)."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m jobs.health",
        description="Exit 0 if the scheduler's heartbeat is fresh (younger than 3 × interval + 10 min), "
                    "else 1 with the reason. The Docker HEALTHCHECK of the sync job.")
    parser.add_argument("--file", help="heartbeat file (default: $HEALTH_FILE or ./data/heartbeat.json)")
    parser.add_argument("--quiet", "-q", action="store_true", help="print nothing when healthy")
    args = parser.parse_args(argv)
    healthy, reason = check_heartbeat(heartbeat_path(args.file))
    if not (healthy and args.quiet):
        print(("healthy: " if healthy else "unhealthy: ") + reason)
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
