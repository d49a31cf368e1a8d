"""The attention backlog is carried by every run, not only by the run that created it (issue 13, item 1)."""
from __future__ import annotations

from sync.report.metrics import render_metrics
from sync.report.render import format_summary_line


def _metrics(summary) -> dict[str, str]:
    return dict(line.split() for line in render_metrics(summary).splitlines() if not line.startswith("#"))


def test_a_second_run_that_adds_nothing_still_reports_the_backlog(job):
    first = job.run()
    assert first.needs_attention == 3 and first.attention_backlog == 3 and first.attention_new == 3
    second = job.run()
    assert second.outcome == "ok"  # the exit code stays about this run
    assert second.needs_attention == 0
    assert (second.attention_backlog, second.attention_new) == (3, 0)
    assert second.attention_oldest_seen_at is not None
    assert second.attention_oldest_seen_at <= first.finished_at
    line = format_summary_line(second, language="ru")
    assert "; всего ждут разбора 3, из них новых 0, самый давний ждёт 0 мин" in line
    assert "needing attention in all 3, new 0, the oldest waiting 0 min" in format_summary_line(second, language="en")
    values = _metrics(second)
    assert values["survey_sync_answers_needing_attention"] == "3"
    assert values["survey_sync_last_run_answers_needing_attention_new"] == "0"
    assert values["survey_sync_last_run_answers_needing_attention"] == "0"
    assert float(values["survey_sync_answers_needing_attention_oldest_age_seconds"]) >= 0


def test_a_dry_run_reports_the_backlog_it_would_leave(job):
    summary = job.run(dry_run=True)
    assert (summary.attention_backlog, summary.attention_new) == (3, 3)
    assert job.ledger().count_needing_attention() == 0  # the dry-run's copy is thrown away
