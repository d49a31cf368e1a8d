"""Prometheus metrics of a run: exact values (issue 13, item 3)."""
from __future__ import annotations

from datetime import datetime, timezone

from sync.options import RunSummary
from sync.report.metrics import render_metrics


def _values(summary: RunSummary) -> dict[str, str]:
    return dict(line.split() for line in render_metrics(summary).splitlines() if not line.startswith("#"))


def test_the_timestamp_and_big_counts_are_not_rounded():
    finished = datetime(2026, 11, 27, 3, 0, 7, 250000, tzinfo=timezone.utc)
    summary = RunSummary(run_id="r", started_at=finished, finished_at=finished, duration_s=1234567.891,
                         outcome="ok", counts={"answers_seen": 1234567}, bitrix_requests=7)
    values = _values(summary)
    # %g made this 1.79845e+09: a "last run" alert was off by up to 500 s.
    assert float(values["survey_sync_last_run_timestamp_seconds"]) == finished.timestamp()
    assert values["survey_sync_last_run_timestamp_seconds"] == "1795748407.25"
    assert values["survey_sync_last_run_answers_seen"] == "1234567"
    assert values["survey_sync_last_run_duration_seconds"] == "1234567.891"


def test_the_backlog_gauges_appear_when_the_backlog_was_measured():
    finished = datetime(2026, 11, 27, 3, 0, tzinfo=timezone.utc)
    summary = RunSummary(run_id="r", started_at=finished, finished_at=finished, outcome="ok",
                         attention_backlog=68, attention_new=0,
                         attention_oldest_seen_at=datetime(2026, 11, 24, 3, 0, tzinfo=timezone.utc))
    values = _values(summary)
    assert values["survey_sync_answers_needing_attention"] == "68"
    assert values["survey_sync_last_run_answers_needing_attention_new"] == "0"
    assert values["survey_sync_answers_needing_attention_oldest_age_seconds"] == str(3 * 86400.0)
    assert "survey_sync_answers_needing_attention" not in _values(RunSummary(run_id="r", started_at=finished))
