"""What a person reads is in REPORT_LANGUAGE (issue 13, item 8): the run's own errors too."""
from __future__ import annotations

from datetime import datetime, timezone

from sync.options import RunSummary
from sync.report.render import format_summary_line, render_report

T0 = datetime(2026, 11, 27, 3, 0, tzinfo=timezone.utc)
STOPPED = "stopped on request (SIGTERM/SIGINT) after the batches in flight; the next run goes on"


def test_a_stop_on_request_reads_in_russian_in_the_summary_line_and_the_report():
    summary = RunSummary(run_id="r", started_at=T0, finished_at=T0, outcome="interrupted", error=STOPPED)
    line = format_summary_line(summary, language="ru")
    assert line.endswith("; ошибка: остановлено по запросу (SIGTERM/SIGINT) после отправленных пакетов; "
                         "следующий запуск продолжит")
    assert "stopped on request" not in line
    assert "остановлено по запросу" in render_report(summary, fmt="html", language="ru")
    assert format_summary_line(summary, language="en").endswith("; error: " + STOPPED)


def test_a_spent_budget_reads_in_russian_and_other_errors_stay_as_the_system_said():
    budget = RunSummary(run_id="r", started_at=T0, outcome="interrupted",
                        error="run budget reached: 120 Bitrix24 requests of --max-requests 100; the batches in flight "
                              "finished, the rest waits for the next run")
    assert "исчерпан бюджет запуска: 120 запросов к Bitrix24 из --max-requests 100" in \
        format_summary_line(budget, language="ru")
    other = RunSummary(run_id="r", started_at=T0, outcome="aborted", error="survey API: 503 Service Unavailable")
    assert format_summary_line(other, language="ru").endswith("; ошибка: survey API: 503 Service Unavailable")
