"""The report as CSV for spreadsheets: one row per (answer, deal) and per (answer, problem).

Made for the Excel the readers have: UTF-8 with a BOM so it reads Cyrillic, and for a
Russian report ``;`` between cells, the list separator of a Russian Excel (which puts a
comma-separated file into one column). No ``sep=;`` line: with one, Excel ignores the
BOM and garbles the Cyrillic. A cell that would start a formula (``+7916…``, ``=…``) is
written as the formula ``="…"``, which Excel shows as the plain text; a leading ``'``
would be shown as part of the value.
"""
from __future__ import annotations

import csv
import io
from typing import Any

from sync.report.model import ReportView

CSV_COLUMNS: tuple[str, ...] = (
    "row_type", "answer_id", "poll_id", "respondent", "email", "phone", "answer_status",
    "contact_action", "contact_id", "deal_action", "deal_id", "programme", "deal_title",
    "problem_code", "problem_severity", "problem_text",
)

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
# The list separator of the spreadsheet each report language is read in.
DELIMITERS = {"ru": ";", "en": ","}


def _cell(value: Any) -> Any:
    """A spreadsheet-safe cell: text from the public must not start a formula (CSV injection).

    Such text becomes a formula that only returns it as a string literal (quotes doubled),
    so nothing in it is evaluated and Excel shows it as typed.
    """
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return '="' + value.replace('"', '""') + '"'
    return value


def _row(**values: Any) -> list[Any]:
    return [_cell(values.get(column)) for column in CSV_COLUMNS]


def render_csv(v: ReportView) -> str:
    buffer = io.StringIO()
    buffer.write("\ufeff")
    writer = csv.writer(buffer, delimiter=DELIMITERS.get(v.language, ","))
    writer.writerow(CSV_COLUMNS)
    if not v.has_plan:
        for title, code, severity, n in v.by_code:
            writer.writerow(_row(row_type="problem_total", problem_code=code, problem_severity=severity,
                                 problem_text=f"{title}: {n}"))
        return buffer.getvalue()
    for a in v.answers:
        base = dict(answer_id=a.plan.answer_id, poll_id=a.plan.poll_id, respondent=a.respondent, email=a.email,
                    phone=a.phone, answer_status=a.status, contact_action=a.contact_action, contact_id=a.contact_id)
        if not a.deals and not a.problems:
            writer.writerow(_row(row_type="answer", **base))
        for d in a.deals:
            writer.writerow(_row(row_type="deal", **base, deal_action=d.action, deal_id=d.deal_id,
                                 programme=d.programme, deal_title=d.title))
        for p in a.problems:
            writer.writerow(_row(row_type="problem", **base, problem_code=p.code, problem_severity=p.severity,
                                 problem_text=p.text))
    for poll in v.polls:
        for p in poll.problems:
            writer.writerow(_row(row_type="poll_problem", poll_id=poll.plan.poll_id, problem_code=p.code,
                                 problem_severity=p.severity, problem_text=p.text))
    return buffer.getvalue()
