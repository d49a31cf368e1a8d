"""The built-in scheduler: run the sync every N seconds or on a crontab line, until SIGTERM.

``run_schedule()`` is what ``python cli.py schedule`` (the container's default command)
runs. One APScheduler ``BackgroundScheduler`` job calls ``run_once`` — the first time at
once, then on the trigger — while the main thread waits for a stop signal and keeps
the heartbeat (``jobs/health.py``) fresh.

* **Never two at once.** ``max_instances=1``: a tick that comes while a run is still
  going is skipped (logged), ``coalesce=True``: ticks missed while the process was
  paused become one run, if no later than the misfire grace time (one interval; for
  cron 10 minutes). Another *process* running a sync is the store lock's business: the
  run raises ``LockHeldError`` and the tick is logged as skipped.
* **Failures do not stop the schedule.** A run that raises is logged with its one-line
  reason and the next tick tries again: transient failures (``RetriableError``) as
  WARNING, credentials refused (``FatalError``), configuration, store and other errors
  as ERROR every time; only an unexpected exception (a bug) adds its traceback.
* **SIGTERM / SIGINT** stop scheduling, let the run in flight finish (it records itself
  in the store) and return 0. A second signal exits at once with ``ABORTED``; the next
  run reconciles what that one left in flight.
* **Cron** lines use the crontab's meaning: weekday 0 and 7 are Sunday (APScheduler 3
  on its own counts 0 as Monday), ``@hourly``/``@daily``/``@weekly``/``@monthly`` work,
  and restricting both day-of-month and weekday is refused (cron ORs them, APScheduler
  would AND them).
"""
from __future__ import annotations

import os
import signal
import threading
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

from apscheduler.events import EVENT_JOB_MAX_INSTANCES, EVENT_JOB_MISSED
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from loguru import logger

from jobs.health import Heartbeat, heartbeat_path, utc_now
from core import exit_codes
from core.errors import ConfigError, FatalError, LockHeldError, RetriableError, SyncError
from core.redact import redact

JOB_ID = "sync"
DEFAULT_EVERY_S = 300
CRON_MISFIRE_GRACE_S = 600
HEARTBEAT_REFRESH_S = 30.0

_CRON_MACROS = {"@hourly": "0 * * * *", "@daily": "0 0 * * *", "@midnight": "0 0 * * *",
                "@weekly": "0 0 * * 0", "@monthly": "0 0 1 * *", "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *"}
_WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_CRON_HOW = ("use five fields — minute hour day-of-month month weekday — e.g. '*/5 * * * *' (every 5 minutes) "
             "or '0 2 * * 1-5' (02:00 on weekdays)")


def _cron_weekdays(field: str) -> str:
    """A crontab weekday field (0/7 = Sunday) in APScheduler's terms (names; 0 would be Monday)."""
    if field in ("*", "?") or any(c.isalpha() for c in field):
        return field  # names mean the same day to both
    days: set[int] = set()
    for part in field.split(","):
        span, _, step_text = part.partition("/")
        step = int(step_text) if step_text else 1
        if span == "*":
            low, high = 0, 6
        elif "-" in span:
            low_text, _, high_text = span.partition("-")
            low, high = int(low_text), int(high_text)
        else:
            low = int(span)
            high = 6 if step_text else low
        if step < 1 or not (0 <= low <= high <= 7):
            raise ValueError(f"weekday {part!r} is out of range 0-7")
        days.update(day % 7 for day in range(low, high + 1, step))
    return ",".join(_WEEKDAYS[day] for day in sorted(days))


def cron_trigger(expression: str, *, timezone: Any = None) -> CronTrigger:
    """A ``CronTrigger`` for a crontab line; ``ConfigError`` naming ``--cron``/SCHEDULE_CRON if it is not one."""
    text = " ".join(str(expression or "").split())
    fields = _CRON_MACROS.get(text.lower(), text).split()
    try:
        if len(fields) != 5:
            raise ValueError(f"it has {len(fields)} field(s), not 5")
        if fields[2] not in ("*", "?") and fields[4] not in ("*", "?"):
            raise ValueError("it restricts both the day of month and the weekday (cron runs when either "
                             "matches, this scheduler only when both do): keep one of them '*'")
        return CronTrigger(minute=fields[0], hour=fields[1], day=fields[2], month=fields[3],
                           day_of_week=_cron_weekdays(fields[4]), timezone=timezone)
    except ValueError as exc:
        raise ConfigError(f"--cron / SCHEDULE_CRON {expression!r} is not a usable crontab expression: {exc} "
                          f"→ {_CRON_HOW}") from None


def _cron_period_s(trigger: CronTrigger) -> float:
    """The gap between the trigger's next two fire times (the heartbeat's notion of an interval)."""
    first = trigger.get_next_fire_time(None, datetime.now(trigger.timezone))
    if first is None:
        return float(DEFAULT_EVERY_S)
    second = trigger.get_next_fire_time(first, first + timedelta(seconds=1))
    return max(60.0, (second - first).total_seconds()) if second else float(DEFAULT_EVERY_S)


def make_trigger(*, every_s: int | None = None, cron: str | None = None,
                 timezone: Any = None) -> tuple[Any, str, float, int]:
    """``(trigger, description, interval_s, misfire_grace_s)`` for an interval or a crontab line."""
    if every_s is not None and cron:
        raise ConfigError("--every and --cron (SCHEDULE_EVERY_S / SCHEDULE_CRON) are mutually exclusive: give one")
    if cron:
        trigger = cron_trigger(cron, timezone=timezone)
        return trigger, f"cron '{cron}'", _cron_period_s(trigger), CRON_MISFIRE_GRACE_S
    every = DEFAULT_EVERY_S if every_s is None else every_s
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise ConfigError(f"--every / SCHEDULE_EVERY_S must be a whole number of seconds ≥ 1, got {every_s!r}")
    return IntervalTrigger(seconds=every, timezone=timezone), f"every {every} s", float(every), every


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return redact(text)


class _Ticker:
    """The job APScheduler runs: one ``run_once`` call, classified and written to the heartbeat."""

    def __init__(self, run_once: Callable[[], Any], heartbeat: Heartbeat, stop: threading.Event, trigger: Any) -> None:
        self.run_once = run_once
        self.heartbeat = heartbeat
        self.stop = stop
        self.trigger = trigger
        self.failures = 0

    def next_run(self) -> datetime | None:
        # From the trigger, not the scheduler: shutdown(wait=True) holds the scheduler's job
        # store lock while it waits for this very tick, so asking the scheduler would deadlock.
        if self.stop.is_set():
            return None
        return self.trigger.get_next_fire_time(None, datetime.now(timezone.utc))

    def __call__(self) -> None:
        if self.stop.is_set():
            return
        self.heartbeat.update(state="running", last_tick_at=utc_now())
        outcome, error, run_id = "failed", None, None
        try:
            summary = self.run_once()
        except LockHeldError as exc:
            outcome, error = "locked", _reason(exc)
            logger.warning("scheduled run skipped: {}", error)
        except FatalError as exc:
            error = _reason(exc)
            logger.error("scheduled run failed, retrying will not help until this is fixed: {}", error)
        except ConfigError as exc:
            error = _reason(exc)
            logger.error("scheduled run failed, the configuration is wrong: {}", error)
        except RetriableError as exc:
            error = _reason(exc)
            logger.warning("scheduled run failed: {}; the next tick tries again", error)
        except SyncError as exc:  # the store, or an upstream refusal: one line says it all
            error = f"{type(exc).__name__}: {_reason(exc)}"
            logger.error("scheduled run failed: {}; the next tick tries again", error)
        except Exception as exc:  # a bug or an unforeseen failure must not end the schedule
            error = f"{type(exc).__name__}: {_reason(exc)}"
            logger.opt(exception=exc).error("scheduled run failed: {}; the next tick tries again", error)
        else:
            outcome = str(getattr(summary, "outcome", "ok"))
            run_id = getattr(summary, "run_id", None)
            logger.info("scheduled run {} finished: {}", run_id or "-", outcome)
        if outcome == "failed":
            self.failures += 1
        elif outcome != "locked":
            self.failures = 0
        next_run = self.next_run()
        self.heartbeat.update(state="stopping" if self.stop.is_set() else "idle", last_finished_at=utc_now(),
                              last_outcome=outcome, last_error=error, last_run_id=run_id,
                              consecutive_failures=self.failures, next_run_at=next_run)
        if next_run is not None and not self.stop.is_set():
            logger.info("next scheduled run at {}", next_run.isoformat(timespec="seconds"))


def run_schedule(settings: Any, *, every_s: int | None = None, cron: str | None = None,
                 run_once: Callable[[], Any], stop_event: threading.Event | None = None,
                 health_file: str | os.PathLike[str] | None = None,
                 heartbeat_every_s: float = HEARTBEAT_REFRESH_S) -> int:
    """Run ``run_once`` now and then on schedule until SIGTERM/SIGINT or ``stop_event``; return 0.

    ``every_s``/``cron`` (mutually exclusive) default to ``settings.schedule_cron``, else
    ``settings.schedule_every_s`` (300). ``health_file`` defaults to ``settings.health_file``
    if the settings have one, else ``$HEALTH_FILE``, else ``./data/heartbeat.json``.
    Raises ``ConfigError`` for a bad schedule before anything runs. Signal handlers are
    installed only when called from the main thread, and restored on return.
    """
    if every_s is None and not cron:
        cron = getattr(settings, "schedule_cron", None) or None
        if not cron:
            every_s = getattr(settings, "schedule_every_s", None) or DEFAULT_EVERY_S
    scheduler = BackgroundScheduler(executors={"default": ThreadPoolExecutor(max_workers=1)})
    trigger, description, interval_s, grace_s = make_trigger(every_s=every_s, cron=cron,
                                                             timezone=scheduler.timezone)
    stop = stop_event if stop_event is not None else threading.Event()
    path = heartbeat_path(health_file or getattr(settings, "health_file", None))
    heartbeat = Heartbeat(path, schedule=description, interval_s=interval_s)
    ticker = _Ticker(run_once, heartbeat, stop, trigger)

    def on_event(event: Any) -> None:
        times = getattr(event, "scheduled_run_times", None) or [getattr(event, "scheduled_run_time", None)]
        when = ", ".join(t.isoformat(timespec="seconds") for t in times if t is not None) or "?"
        if event.code == EVENT_JOB_MAX_INSTANCES:
            logger.info("tick of {} skipped: the previous run is still going", when)
        else:
            logger.warning("tick of {} missed by more than the {} s grace time", when, grace_s)

    scheduler.add_listener(on_event, EVENT_JOB_MAX_INSTANCES | EVENT_JOB_MISSED)
    scheduler.add_job(ticker, trigger, id=JOB_ID, name="survey → Bitrix24 sync", max_instances=1, coalesce=True,
                      misfire_grace_time=grace_s, next_run_time=datetime.now(timezone.utc))

    signals: dict[int, Any] = {}
    received: list[int] = []

    def on_signal(signum: int, _frame: Any) -> None:
        received.append(signum)
        if len(received) > 1:
            # No logging here: the main thread may hold the log sink's lock.
            os.write(2, b"second stop signal: exiting now without waiting for the run in flight; "
                        b"the next run completes what it started\n")
            os._exit(exit_codes.ABORTED)
        stop.set()

    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGTERM, signal.SIGINT):
            signals[signum] = signal.signal(signum, on_signal)
    # APScheduler's own log lines would bypass ours (and their redaction); the listener says the same.
    import logging
    aps_logger = logging.getLogger("apscheduler")
    aps_level = aps_logger.level
    aps_logger.setLevel(logging.ERROR)
    try:
        heartbeat.update(state="starting", next_run_at=utc_now())
        scheduler.start()
        logger.info("scheduler started: {}, first run now; heartbeat {}; stop with SIGTERM or Ctrl-C",
                    description, path)
        while not stop.wait(heartbeat_every_s):
            heartbeat.update()
        name = signal.Signals(received[0]).name if received else "stop request"
        logger.info("{}: no new runs; waiting for the run in flight (if any) to finish", name)
        heartbeat.update(state="stopping")
        scheduler.shutdown(wait=True)
        heartbeat.update(state="stopped", next_run_at=None)
        logger.info("scheduler stopped")
        return exit_codes.OK
    finally:
        if scheduler.running:
            scheduler.shutdown(wait=False)
        aps_logger.setLevel(aps_level)
        for signum, previous in signals.items():
            signal.signal(signum, previous)
