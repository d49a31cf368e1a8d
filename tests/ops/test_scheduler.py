"""The built-in scheduler: it ticks, never overlaps, survives failing runs, stops cleanly on SIGTERM."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import threading
import time
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest
from croniter import croniter
from loguru import logger

from jobs.health import utc_now
from jobs.scheduler import cron_trigger, make_trigger, run_schedule
from core import exit_codes
from core.errors import ConfigError, FatalError, LockHeldError, RetriableError, StoreError
from tests.ops.conftest import ROOT

WATCHDOG_S = 8.0
pytestmark = pytest.mark.timeout(60)


def summary(outcome: str = "ok") -> SimpleNamespace:
    """What the scheduler reads of a run's summary (its outcome and run id), without the sync package."""
    return SimpleNamespace(run_id=f"run-{time.monotonic_ns()}", outcome=outcome)


def schedule(run_once, stop: threading.Event, tmp_path, **kwargs) -> int:
    """``run_schedule`` in this (the main) thread, with a watchdog so a bug cannot hang the suite."""
    watchdog = threading.Timer(WATCHDOG_S, stop.set)
    watchdog.start()
    try:
        return run_schedule(kwargs.pop("settings", None), run_once=run_once, stop_event=stop,
                            health_file=tmp_path / "heartbeat.json", **kwargs)
    finally:
        watchdog.cancel()


def heartbeat(tmp_path) -> dict:
    return json.loads((tmp_path / "heartbeat.json").read_text(encoding="utf-8"))


def test_the_first_run_starts_at_once_not_after_the_first_interval(tmp_path):
    """With an hour between ticks, a run before the watchdog (8 s) can only be the immediate first one."""
    stop, ran = threading.Event(), threading.Event()

    def run_once():
        ran.set()
        stop.set()
        return summary()

    assert schedule(run_once, stop, tmp_path, every_s=3600) == 0
    assert ran.is_set(), "no run within the watchdog's time: the first run waits for the first tick"
    beat = heartbeat(tmp_path)
    assert beat["state"] == "stopped" and beat["last_outcome"] == "ok" and beat["schedule"] == "every 3600 s"


def test_the_interval_trigger_fires_every_n_seconds():
    trigger, description, interval_s, _ = make_trigger(every_s=90, timezone=timezone.utc)
    moment = datetime(2026, 11, 27, 12, 0, tzinfo=timezone.utc)
    fires = [trigger.get_next_fire_time(None, moment)]
    for _ in range(4):
        fires.append(trigger.get_next_fire_time(fires[-1], fires[-1] + timedelta(microseconds=1)))
    assert [b - a for a, b in zip(fires, fires[1:])] == [timedelta(seconds=90)] * 4
    assert (description, interval_s) == ("every 90 s", 90.0)


def test_the_next_run_comes_and_not_before_the_tick_the_heartbeat_announced(tmp_path):
    stop = threading.Event()
    seen: list[tuple[datetime, str | None]] = []

    def run_once():
        # The heartbeat still holds what the previous run announced as the next tick.
        seen.append((utc_now(), heartbeat(tmp_path).get("next_run_at")))
        if len(seen) == 2:
            stop.set()
        return summary()

    assert schedule(run_once, stop, tmp_path, every_s=1) == 0
    assert len(seen) == 2, "the second tick never came"
    second_started, announced = seen[1]
    assert announced is not None
    assert second_started >= datetime.fromisoformat(announced.replace("Z", "+00:00"))
    beat = heartbeat(tmp_path)
    assert beat["schedule"] == "every 1 s" and beat["interval_s"] == 1 and beat["last_outcome"] == "ok"


def test_a_slow_run_is_never_overlapped(tmp_path):
    """The first run holds on until the scheduler has skipped a tick because of it; no sleeping."""
    stop, skipped = threading.Event(), threading.Event()
    active, most, calls = [0], [0], []
    lock = threading.Lock()
    sink = logger.add(lambda m: skipped.set() if "skipped: the previous run is still going" in m else None,
                      level="DEBUG")

    def run_once():
        with lock:
            active[0] += 1
            most[0] = max(most[0], active[0])
            calls.append(1)
        try:
            if len(calls) == 1:
                skipped.wait(WATCHDOG_S / 2)  # at least one tick comes meanwhile
            else:
                stop.set()
            return summary()
        finally:
            with lock:
                active[0] -= 1

    try:
        assert schedule(run_once, stop, tmp_path, every_s=1) == 0
    finally:
        logger.remove(sink)
    assert skipped.is_set(), "no tick was skipped while the first run was going"
    assert most[0] == 1
    assert len(calls) == 2


def test_failing_runs_are_logged_and_the_schedule_goes_on(tmp_path, logs):
    stop = threading.Event()
    failures = [LockHeldError("another sync is running (pid 4242 on box, started 2026-11-27T03:00:00Z by 'sync')"),
                FatalError("Bitrix24 refused the webhook's credentials (INVALID_CREDENTIALS): put its URL in "
                           "BITRIX24_WEBHOOK_URL", system="bitrix24", code="INVALID_CREDENTIALS"),
                ValueError("a bug\nwith two lines")]
    calls = []

    def run_once():
        calls.append(1)
        error = failures[len(calls) - 1]
        if len(calls) == len(failures):
            stop.set()
        raise error

    assert schedule(run_once, stop, tmp_path, every_s=1) == 0
    assert len(calls) == 3
    by_level = {level: [m for lvl, m in logs if lvl == level] for level in ("WARNING", "ERROR")}
    assert any("skipped: another sync is running (pid 4242" in m for m in by_level["WARNING"])
    assert any("INVALID_CREDENTIALS" in m and "BITRIX24_WEBHOOK_URL" in m for m in by_level["ERROR"])
    assert any("ValueError: a bug with two lines" in m for m in by_level["ERROR"])
    beat = heartbeat(tmp_path)
    assert beat["last_outcome"] == "failed" and beat["last_error"] == "ValueError: a bug with two lines"
    assert beat["consecutive_failures"] == 2  # the lock held by another process is not a failure


@pytest.mark.parametrize("error, level, outcome, message", [
    (LockHeldError("another sync is running (pid 1)"), "WARNING", "locked", "scheduled run skipped: another sync"),
    (FatalError("credentials refused → fix BITRIX24_WEBHOOK_URL"), "ERROR", "failed", "retrying will not help"),
    (ConfigError("field_mapping.json is invalid:\n  deal: missing"), "ERROR", "failed",
     "the configuration is wrong: field_mapping.json is invalid: deal: missing"),
    (RetriableError("Bitrix24 overloaded; run again later"), "WARNING", "failed", "the next tick tries again"),
    (StoreError("cannot connect to the Postgres store"), "ERROR", "failed",
     "StoreError: cannot connect to the Postgres store"),
    (KeyError("bug"), "ERROR", "failed", "KeyError: 'bug'"),
])
def test_each_kind_of_failure_is_logged_once_at_its_level(tmp_path, logs, error, level, outcome, message):
    from jobs.health import Heartbeat
    from jobs.scheduler import _Ticker

    def run_once():
        raise error

    beat = Heartbeat(tmp_path / "heartbeat.json", schedule="every 60 s", interval_s=60)
    _Ticker(run_once, beat, threading.Event(), make_trigger(every_s=60)[0])()
    assert [(lvl, m) for lvl, m in logs if message in m and lvl == level], logs
    data = heartbeat(tmp_path)
    assert data["last_outcome"] == outcome and data["state"] == "idle" and data["next_run_at"]
    assert "\n" not in data["last_error"]


def test_schedule_defaults_come_from_the_settings(tmp_path):
    stop = threading.Event()
    stop.set()  # stop at once: nothing runs
    settings = SimpleNamespace(schedule_every_s=300, schedule_cron="*/5 * * * *")
    assert schedule(lambda: pytest.fail("must not run"), stop, tmp_path, settings=settings) == 0
    assert heartbeat(tmp_path)["schedule"] == "cron '*/5 * * * *'"
    assert heartbeat(tmp_path)["interval_s"] == 300


def test_a_bad_cron_setting_fails_before_anything_runs(tmp_path):
    settings = SimpleNamespace(schedule_every_s=300, schedule_cron="*/5 * * *")
    with pytest.raises(ConfigError, match=r"--cron / SCHEDULE_CRON '\*/5 \* \* \*'"):
        run_schedule(settings, run_once=lambda: pytest.fail("must not run"), health_file=tmp_path / "hb.json")
    assert not (tmp_path / "hb.json").exists()


@pytest.mark.parametrize("expression", ["* * * *", "*/5 * * * * *", "61 * * * *", "* 24 * * *", "* * * * 8",
                                        "0 0 1 * 1", "every five minutes", ""])
def test_a_bad_cron_expression_is_a_config_error_naming_the_option(expression):
    with pytest.raises(ConfigError) as caught:
        make_trigger(cron=expression or " ")
    assert "--cron / SCHEDULE_CRON" in str(caught.value)
    assert "e.g. '*/5 * * * *'" in str(caught.value)


def test_every_and_cron_are_mutually_exclusive():
    with pytest.raises(ConfigError, match="mutually exclusive"):
        make_trigger(every_s=60, cron="*/5 * * * *")


@pytest.mark.parametrize("expression", ["*/5 * * * *", "0 9 * * 1-5", "30 2 * * 0", "0 7 * * 7", "0 */2 * * 5-7",
                                        "15 8 * * */2", "0 12 * * 1,3,5", "0 0 1 * *", "0 6 * * mon-fri",
                                        "@daily", "@weekly"])
def test_cron_lines_fire_when_crontab_would(expression):
    """APScheduler 3 alone counts weekday 0 as Monday; the scheduler must keep crontab's meaning."""
    utc = timezone.utc
    trigger = cron_trigger(expression, timezone=utc)
    moment = datetime(2026, 11, 27, 12, 0, 30, tzinfo=utc)  # a Friday, between minutes
    reference = croniter(expression, moment)
    previous = None
    for _ in range(6):
        fire = trigger.get_next_fire_time(previous, moment)
        assert fire == reference.get_next(datetime), expression
        previous, moment = fire, fire + timedelta(seconds=1)


SCRIPT = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    sys.path.insert(0, {root!r})
    from jobs.scheduler import run_schedule

    out, seconds = Path(sys.argv[1]), float(sys.argv[2])

    def run_once():
        (out / "started").write_text("")
        time.sleep(seconds)
        (out / "finished").write_text("")

    sys.exit(run_schedule(None, every_s=3600, run_once=run_once, health_file=out / "heartbeat.json"))
""")


def start_scheduler_process(tmp_path, run_seconds: float) -> subprocess.Popen:
    script = tmp_path / "scheduled.py"
    script.write_text(SCRIPT.format(root=str(ROOT)), encoding="utf-8")
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path), str(run_seconds)], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 15
    while not (tmp_path / "started").exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"the scheduler did not start its first run: {proc.communicate()}")
        time.sleep(0.02)
    return proc


def test_sigterm_lets_the_run_in_flight_finish_and_exits_0(tmp_path):
    proc = start_scheduler_process(tmp_path, run_seconds=1.0)
    proc.send_signal(signal.SIGTERM)
    try:
        _, stderr = proc.communicate(timeout=15)
    finally:
        proc.kill()
    assert proc.returncode == 0, stderr
    assert (tmp_path / "finished").exists(), "the run in flight was cut short"
    assert "SIGTERM: no new runs; waiting for the run in flight" in stderr
    beat = heartbeat(tmp_path)
    assert beat["state"] == "stopped" and beat["last_outcome"] == "ok"


def test_a_second_signal_exits_at_once_with_aborted(tmp_path):
    proc = start_scheduler_process(tmp_path, run_seconds=30.0)
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    try:
        _, stderr = proc.communicate(timeout=5)
    finally:
        proc.kill()
    assert proc.returncode == exit_codes.ABORTED, stderr
    assert not (tmp_path / "finished").exists()
    assert "second stop signal" in stderr
