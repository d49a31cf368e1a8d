"""Prometheus text-format metrics of the last run, for node_exporter's textfile collector."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from sync.options import RunSummary

PREFIX = "survey_sync"


def render_metrics(summary: RunSummary) -> str:
    counts = summary.counts
    finished = summary.finished_at or summary.started_at
    gauges = [
        ("last_run_timestamp_seconds", "When the last run finished (unix time).", finished.timestamp()),
        ("last_run_duration_seconds", "Duration of the last run.", summary.duration_s),
        ("last_run_success", "1 if the last run completed (even with answers needing attention), else 0.",
         0 if summary.outcome in ("aborted", "interrupted") else 1),
        ("last_run_answers_seen", "Answers read from the survey platform by the last run.", counts.get("answers_seen", 0)),
        ("last_run_answers_synced", "Answers pushed to Bitrix24 by the last run.", counts.get("pushed", 0)),
        ("last_run_answers_needing_attention", "Answers the last run left needing attention.",
         counts.get("needs_attention", 0)),
        ("last_run_answers_failed", "Answers whose push failed in a retriable way or is unknown (next run retries).",
         counts.get("failed", 0) + counts.get("unknown", 0)),
        ("last_run_contacts_created", "Contacts created by the last run.", counts.get("contacts_created", 0)),
        ("last_run_deals_created", "Deals created by the last run.", counts.get("deals_created", 0)),
        ("last_run_bitrix24_requests", "REST requests the last run made to Bitrix24.", summary.bitrix_requests),
        ("last_run_bitrix24_retries", "Retried Bitrix24 requests in the last run.", summary.bitrix_retries),
        ("last_run_survey_requests", "Requests the last run made to the survey API.", summary.survey_requests),
    ]
    if summary.attention_backlog is not None:
        # The store's backlog, not the run's: an alert on it keeps firing until someone deals with it.
        oldest = summary.attention_oldest_seen_at
        gauges += [
            ("answers_needing_attention", "Answers in the store needing attention after the last run (all runs).",
             summary.attention_backlog),
            ("last_run_answers_needing_attention_new", "Answers that started needing attention in the last run.",
             summary.attention_new or 0),
            ("answers_needing_attention_oldest_age_seconds",
             "How long the longest-waiting answer needing attention has waited since first seen (0: none).",
             max(0.0, (finished - oldest).total_seconds()) if oldest is not None else 0),
        ]
    if summary.inbox is not None:
        inbox = summary.inbox
        gauges += [
            ("intake_packets_received", "Packets the intake stored, in total (answer and poll versions).",
             inbox["received_total"]),
            ("intake_packets_received_today", "Packets the intake stored today (UTC).", inbox["received_today"]),
            ("intake_packets_refused", "Packets the intake refused, in total (the portal retries them).",
             inbox["refused_total"]),
        ]
    lines = []
    for name, help_text, value in gauges:
        lines += [f"# HELP {PREFIX}_{name} {help_text}", f"# TYPE {PREFIX}_{name} gauge",
                  f"{PREFIX}_{name} {_number(value)}"]
    return "\n".join(lines) + "\n"


def _number(value: float | int) -> str:
    """Exact: ``%g`` keeps 6 digits, which rounds a unix time to 1000 s and big counts likewise."""
    if isinstance(value, bool) or isinstance(value, int):
        return str(int(value))
    return repr(float(value))


def write_metrics(summary: RunSummary, path: Path) -> Path:
    """Write atomically: the collector must never read a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".metrics-", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(render_metrics(summary))
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
    return path
