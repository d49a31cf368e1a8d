"""The run in one line, for the terminal, the log and the JSON report."""
from __future__ import annotations

from sync.report.labels import LABELS
from sync.report.texts import Language, age_text, check_language, duration_text, error_text, outcome_text
from sync.options import RunSummary


def format_summary_line(summary: RunSummary, language: Language = "en") -> str:
    """The run in one line, for the terminal and the log: outcome, answers, CRM writes, requests, time."""
    check_language(language)
    labels = LABELS[language]
    counts = summary.counts
    dry = summary.dry_run
    line = labels["summary_line"].format(
        command=summary.command, dry=labels["summary_dry"] if dry else "",
        outcome=outcome_text(summary.outcome, language),
        seen=counts.get("answers_seen", 0), planned=counts.get("planned", 0), pushed=counts.get("pushed", 0),
        attention=summary.needs_attention,
        contacts_label=labels["summary_contacts_planned" if dry else "summary_contacts_done"],
        contacts=counts.get("contact_add_planned" if dry else "contacts_created", 0),
        deals_label=labels["summary_deals_planned" if dry else "summary_deals_done"],
        deals=counts.get("deal_add_planned" if dry else "deals_created", 0),
        bitrix=summary.bitrix_requests, retries=summary.bitrix_retries, survey=summary.survey_requests,
        duration=duration_text(summary.duration_s, language))
    if summary.attention_backlog is not None:
        line += labels["summary_backlog"].format(total=summary.attention_backlog, new=summary.attention_new or 0)
        oldest = summary.attention_oldest_seen_at
        if summary.attention_backlog and oldest is not None:
            age = ((summary.finished_at or summary.started_at) - oldest).total_seconds()
            line += labels["summary_backlog_oldest"].format(age=age_text(age, language))
    if summary.error:
        line += labels["summary_error"].format(error=error_text(summary.error, masked=True, language=language))
    return line
