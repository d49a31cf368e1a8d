"""The container health check: fresh heartbeat → 0, stale, stopped, stuck or missing → 1 with the reason."""
from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import pytest
from freezegun import freeze_time

from jobs.health import Heartbeat, check_heartbeat, heartbeat_path
from tests.ops.conftest import ROOT

T0 = datetime(2026, 11, 27, 3, 0, tzinfo=timezone.utc)


@pytest.fixture
def beat(tmp_path):
    with freeze_time(T0):
        hb = Heartbeat(tmp_path / "data" / "heartbeat.json", schedule="every 300 s", interval_s=300)
        hb.update(state="idle", last_tick_at=T0, last_outcome="ok", next_run_at=T0 + timedelta(minutes=5))
    return hb


def health_at(path, moment):
    with freeze_time(moment):
        return check_heartbeat(path)


def test_a_heartbeat_younger_than_three_intervals_and_ten_minutes_is_healthy(beat):
    healthy, reason = health_at(beat.path, T0 + timedelta(minutes=24, seconds=59))
    assert healthy, reason
    assert "last run 2026-11-27T03:00:00Z: ok" in reason


def test_a_heartbeat_older_than_that_is_unhealthy(beat):
    healthy, reason = health_at(beat.path, T0 + timedelta(minutes=25, seconds=1))
    assert not healthy
    assert "not updated for 25 min (limit 25 min: 3 × the 300 s interval + 10 min)" in reason


def test_a_long_run_in_flight_stays_healthy_while_the_heartbeat_is_refreshed(beat):
    with freeze_time(T0 + timedelta(hours=2)):
        beat.update(state="running")  # the wait loop's refresh; last_tick_at stays at T0
    healthy, reason = health_at(beat.path, T0 + timedelta(hours=2, minutes=1))
    assert healthy and "run in progress since 2026-11-27T03:00:00Z" in reason


def test_an_idle_scheduler_whose_next_run_never_starts_is_unhealthy(beat):
    with freeze_time(T0 + timedelta(hours=1)):
        beat.update()  # the process is alive, but no tick since T0 and the 03:05 run is overdue
    healthy, reason = health_at(beat.path, T0 + timedelta(hours=1, seconds=30))
    assert not healthy and "the scheduler is stuck" in reason


def test_a_cron_schedule_with_a_long_gap_is_healthy_until_the_next_run_is_overdue(tmp_path):
    path = tmp_path / "heartbeat.json"
    monday_9 = datetime(2026, 11, 30, 9, 0, tzinfo=timezone.utc)
    with freeze_time(datetime(2026, 11, 27, 9, 0, tzinfo=timezone.utc)):  # Friday's run
        hb = Heartbeat(path, schedule="cron '0 9 * * 1-5'", interval_s=86400)
        hb.update(state="idle", last_tick_at=datetime.now(timezone.utc), last_outcome="ok", next_run_at=monday_9)
    with freeze_time(monday_9 - timedelta(minutes=1)):
        hb.update()
    assert health_at(path, monday_9 + timedelta(minutes=5))[0]


def test_a_stopped_scheduler_is_unhealthy(beat):
    with freeze_time(T0 + timedelta(minutes=1)):
        beat.update(state="stopped", next_run_at=None)
    healthy, reason = health_at(beat.path, T0 + timedelta(minutes=2))
    assert not healthy and "the scheduler stopped" in reason


def test_no_heartbeat_is_unhealthy_and_says_where_it_looked(tmp_path):
    healthy, reason = check_heartbeat(tmp_path / "nowhere.json")
    assert not healthy
    assert str(tmp_path / "nowhere.json") in reason and "HEALTH_FILE" in reason


def test_an_unreadable_heartbeat_is_unhealthy(tmp_path):
    path = tmp_path / "heartbeat.json"
    path.write_text("{not json", encoding="utf-8")
    healthy, reason = check_heartbeat(path)
    assert not healthy and "unreadable" in reason


def test_the_heartbeat_file_is_health_file_or_data_heartbeat_json(monkeypatch, tmp_path):
    monkeypatch.delenv("HEALTH_FILE", raising=False)
    assert str(heartbeat_path()) == "data/heartbeat.json"
    monkeypatch.setenv("HEALTH_FILE", str(tmp_path / "hb.json"))
    assert heartbeat_path() == tmp_path / "hb.json"
    assert heartbeat_path(tmp_path / "explicit.json") == tmp_path / "explicit.json"


def run_health(*args, env_file=None):
    env = {"PATH": "/usr/bin:/bin"}
    if env_file is not None:
        env["HEALTH_FILE"] = str(env_file)
    return subprocess.run([sys.executable, "-m", "jobs.health", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=30)


def test_python_m_jobs_health_exits_0_when_fresh_and_1_when_not(tmp_path):
    path = tmp_path / "heartbeat.json"
    Heartbeat(path, schedule="every 300 s", interval_s=300).update(state="idle", last_outcome="ok")
    fresh = run_health(env_file=path)
    assert fresh.returncode == 0, fresh.stdout + fresh.stderr
    assert fresh.stdout.startswith("healthy: ")
    data = json.loads(path.read_text(encoding="utf-8"))
    data["updated_at"] = "2026-01-01T00:00:00Z"
    path.write_text(json.dumps(data), encoding="utf-8")
    stale = run_health(env_file=path)
    assert stale.returncode == 1 and stale.stdout.startswith("unhealthy: heartbeat not updated for")
    missing = run_health("--file", str(tmp_path / "missing.json"))
    assert missing.returncode == 1 and "no heartbeat at" in missing.stdout
