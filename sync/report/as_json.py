"""The report as JSON for machines: the summary and the plan, masked like the other formats."""
from __future__ import annotations

import json
from collections import Counter
from typing import Any

from sync.report.masking import mask_email
from sync.report.model import ProblemView, ReportView
from sync.report.summary import format_summary_line
from sync.report.texts import error_text

def _json_problem(p: ProblemView) -> dict[str, Any]:
    return {"code": p.code, "severity": p.severity, "params": p.params, "text": p.text}


def render_json(v: ReportView) -> str:
    s = v.summary
    summary = s.model_dump(mode="json", exclude={"plan"})
    summary["error"] = error_text(s.error, v.masked) or None
    summary["needs_attention"] = s.needs_attention
    doc: dict[str, Any] = {
        "report_version": 1,
        "language": v.language,
        "personal_data_masked": v.masked,
        "summary": summary,
        "summary_line": format_summary_line(s, language=v.language),  # type: ignore[arg-type]
        "problems": [{"code": g.code, "severity": g.severity, "title": g.title, "advice": g.advice,
                      "count": g.count, "answer_ids": sorted({a for a, _, _ in g.answers}),
                      "poll_ids": sorted({p for p, _, _ in g.polls})} for g in v.groups],
        "plan": None,
    }
    if s.plan is not None:
        answers = []
        for a in v.answers:
            data = a.plan.model_dump(mode="json")
            data["email"] = a.email or None
            data["display_name"] = a.respondent
            data["phone"] = a.phone or None
            if v.masked and data.get("contact_email"):
                data["contact_email"] = mask_email(data["contact_email"])
            for deal, shown in zip(data["deals"], a.deals):
                deal["title"] = shown.title
                deal["deal_id"] = shown.deal_id
                deal["url"] = shown.url
            data["problems"] = [_json_problem(p) for p in a.problems]
            data["needs_attention"] = a.status == "attention"
            data["contact"] = {"action": a.contact_action or None, "contact_id": a.contact_id, "url": a.contact_url}
            data["problems_text"] = [p.text for p in a.problems]
            answers.append(data)
        polls = []
        for p in v.polls:
            data = p.plan.model_dump(mode="json")
            data["problems"] = [_json_problem(x) for x in p.problems]
            data["problems_text"] = [x.text for x in p.problems]
            polls.append(data)
        contacts = []
        for c in v.contacts:
            data = c.model_dump(mode="json")
            if v.masked:
                data["email"] = mask_email(c.email)
            contacts.append(data)
        commands = s.plan.commands
        doc["plan"] = {
            "polls": polls,
            "contacts": contacts,
            "answers": answers,
            "command_counts": dict(sorted(Counter(c.kind for c in commands).items())),
            # Command params are the CRM fields themselves (names, e-mails, phones): only shown unmasked.
            "commands": None if v.masked else [c.model_dump(mode="json") for c in commands],
        }
    return _dumps(doc) + "\n"


def _dumps(value: Any, depth: int = 0, *, expand: int = 3) -> str:
    """JSON indented down to ``expand`` levels, each deeper value on one line.

    One line per answer keeps a 20,000-answer report readable and fast to write: the
    standard encoder's indenting path is pure Python and several times slower.
    """
    if depth >= expand or not isinstance(value, (dict, list)) or not value:
        return json.dumps(value, ensure_ascii=False)
    pad, inner = "  " * depth, "  " * (depth + 1)
    if isinstance(value, dict):
        items = [f"{inner}{json.dumps(str(k), ensure_ascii=False)}: {_dumps(v, depth + 1, expand=expand)}"
                 for k, v in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    items = [inner + _dumps(v, depth + 1, expand=expand) for v in value]
    return "[\n" + ",\n".join(items) + "\n" + pad + "]"
