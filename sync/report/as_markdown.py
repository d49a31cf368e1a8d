"""The report as Markdown: totals, problems grouped by kind with what to do, poll forms, answers."""
from __future__ import annotations

import re
from typing import Any

from sync.report.model import ReportView

_SEVERITY_MARK = {"attention": "❗", "warning": "⚠️", "info": "ℹ️"}

_MD_SPECIAL = re.compile(r"[\\`*_\[\]<>|~&]|[\r\n\t]")


def _md_escape(match: re.Match[str]) -> str:
    char = match.group()
    return " " if char in "\r\n\t" else "\\" + char


def _md(value: Any) -> str:
    """A value safe inside Markdown text and table cells (no markup, no pipes, no line breaks)."""
    return _MD_SPECIAL.sub(_md_escape, str(value if value is not None else "—"))


def _md_link(text: Any, url: str | None) -> str:
    """``text`` escaped, as a link to ``url`` (a CRM card built from integers) if any."""
    return f"[{_md(text)}]({url})" if url else _md(text)


def _md_table(out: list[str], headers: list[str], rows: list[list[str]]) -> None:
    """Append a table; cells must already be escaped."""
    out.append("| " + " | ".join(_md(h) for h in headers) + " |")
    out.append("|" + "---|" * len(headers))
    out.extend("| " + " | ".join(row) + " |" for row in rows)
    out.append("")


def render_md(v: ReportView) -> str:
    L = v.labels
    out: list[str] = [f"# {_md(L['report_title'])}", ""]
    out.append(f"> **{_md(L['banner_dry_run' if v.summary.dry_run else 'banner_real_run'])}**  ")
    out.append(f"> {_md(L['banner_masked' if v.masked else 'banner_personal'])}")
    out += ["", f"## {_md(L['section_totals'])}", ""]
    _md_table(out, [L["item"], L["value"]], [[_md(k), _md(val)] for k, val in v.totals])
    out += [f"### {_md(L['section_counts'])}", ""]
    _md_table(out, [L["item"], L["code"], L["count"]], [[_md(k), f"`{c}`", str(n)] for k, c, n in v.counts])
    out += [f"### {_md(L['section_problems_by_code'])}", ""]
    if v.by_code:
        _md_table(out, [L["problem"], L["code"], L["severity"], L["count"]],
                  [[_md(t), _md(c), _md(L.get("severity_" + sev, sev)), str(n)] for t, c, sev, n in v.by_code])
    else:
        out += [_md(L["no_problems"]), ""]
    out += [f"### {_md(L['section_requests'])}", ""]
    _md_table(out, [L["item"], L["count"]], [[_md(k), str(n)] for k, n in v.requests])

    out += [f"## {_md(L['section_groups'])}", ""]
    if not v.groups:
        out += [_md(L["no_problems"]), ""]
    for g in v.groups:
        out += [f"### {_SEVERITY_MARK.get(g.severity, '')} {_md(g.title)} — {g.count}", "",
                f"{_md(L['severity'])}: {_md(L.get('severity_' + g.severity, g.severity))} · "
                f"{_md(L['code'])}: `{g.code.replace('`', '')}`", "",
                f"**{_md(L['what_to_do'])}:** {g.advice}", ""]
        if g.answers:
            out += [f"{_md(L['affected_answers'])}: {len({a for a, _, _ in g.answers})}", ""]
            _md_table(out, [L["answer"], L["respondent"], L["problem"]],
                      [[str(a), _md(r or "—"), _md(t)] for a, r, t in g.answers])
        if g.polls:
            _md_table(out, [L["poll"], L["poll_name"], L["problem"]],
                      [[str(p), _md(n), _md(t)] for p, n, t in g.polls])

    if not v.has_plan:
        out += [f"_{_md(L['no_plan'])}_", ""]
        return "\n".join(out)

    out += [f"## {_md(L['section_polls'])}", ""]
    if v.polls:
        _md_table(out, [L["poll"], L["poll_name"], L["action"], L["owner"], L["problems"]],
                  [[str(p.plan.poll_id), _md(p.plan.poll_name), _md(p.label), str(p.plan.owner_id),
                    " ".join(f"{_SEVERITY_MARK.get(x.severity, '')} {_md(x.text)}" for x in p.problems) or "—"]
                   for p in v.polls])
    else:
        out += [_md(L["no_polls"]), ""]

    out += [f"## {_md(L['section_answers'])}", ""]
    if not v.answers:
        out += [_md(L["no_answers"]), ""]
        return "\n".join(out)
    rows = []
    for a in v.answers:
        deals = "; ".join(f"{_md(d.programme)} · {_md_link(d.label, d.url)} · «{_md(d.title)}»" for d in a.deals) or "—"
        problems = " ".join(f"{_SEVERITY_MARK.get(p.severity, '')} {_md(p.text)}" for p in a.problems) or "—"
        rows.append([str(a.plan.answer_id), str(a.plan.poll_id), _md(a.respondent or "—"), _md(a.email or "—"),
                     _md(a.phone or "—"), _md_link(a.contact_label, a.contact_url), deals, problems,
                     _md(a.status_label)])
    _md_table(out, [L["answer"], L["poll"], L["respondent"], L["email"], L["phone"], L["contact"], L["deals"],
                    L["problems"], L["status"]], rows)
    return "\n".join(out)
