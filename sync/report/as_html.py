"""The report as one self-contained HTML page (inline CSS, every value escaped)."""
from __future__ import annotations

import html
from typing import Any

from sync.report.model import SEVERITY_RANK, ProblemView, ReportView

_CSS = """
body{font-family:-apple-system,"Segoe UI",Roboto,Arial,sans-serif;margin:1.5rem;color:#1d2330;line-height:1.4}
h1{font-size:1.5rem}h2{font-size:1.25rem;margin-top:2rem;border-bottom:1px solid #d5d9e0}h3{font-size:1.05rem}
table{border-collapse:collapse;margin:.5rem 0 1rem;font-size:.9rem;max-width:100%}
th,td{border:1px solid #d5d9e0;padding:.3rem .5rem;text-align:left;vertical-align:top;overflow-wrap:anywhere}
p,li,summary{overflow-wrap:anywhere}
th{background:#f0f2f5;position:sticky;top:0}
tr.attention td{background:#fff1f0}tr.warning td{background:#fffbe6}
.banner{padding:.6rem .8rem;border-radius:4px;background:#eef4ff;border:1px solid #b8cff5}
.banner.dry{background:#fff8e1;border-color:#f0d48a;font-weight:bold}
.banner.personal{background:#fff1f0;border-color:#f3b3ad}
details{margin:.6rem 0;border:1px solid #d5d9e0;border-radius:4px;padding:.4rem .8rem}
details.attention{border-left:5px solid #d93025}details.warning{border-left:5px solid #e8a600}
details.info{border-left:5px solid #4a78c2}
summary{cursor:pointer;font-weight:bold}
.sev{display:inline-block;padding:0 .4rem;border-radius:3px;font-size:.8rem;font-weight:normal}
.sev.attention{background:#d93025;color:#fff}.sev.warning{background:#e8a600;color:#fff}
.sev.info{background:#4a78c2;color:#fff}
ul.items{margin:0;padding-left:1.1rem}.muted{color:#6b7280}.num{text-align:right}
code{background:#f0f2f5;padding:0 .2rem;border-radius:3px}
""".strip()


def _h(value: Any) -> str:
    return html.escape(str(value if value is not None else "—"), quote=True)


def _with_code(text: str) -> str:
    """Our own advice text: `spans` become <code>, everything else escaped."""
    parts = text.split("`")
    return "".join(f"<code>{_h(p)}</code>" if i % 2 else _h(p) for i, p in enumerate(parts))


def _link(text: Any, url: str | None) -> str:
    """``text`` escaped, as a link to ``url`` (a CRM card; built from integers, never from the public) if any."""
    return f'<a href="{_h(url)}" target="_blank" rel="noopener">{_h(text)}</a>' if url else _h(text)


def _sev(severity: str, labels: dict[str, str]) -> str:
    return f'<span class="sev {_h(severity)}">{_h(labels.get("severity_" + severity, severity))}</span>'


def _html_table(out: list[str], headers: list[str], rows: list[str]) -> None:
    """Append a table; ``rows`` are complete ``<tr>`` elements."""
    out.append("<table><thead><tr>" + "".join(f"<th>{_h(x)}</th>" for x in headers) + "</tr></thead><tbody>")
    out.extend(rows)
    out.append("</tbody></table>")


def _html_problems(problems: list[ProblemView], labels: dict[str, str]) -> str:
    if not problems:
        return '<span class="muted">—</span>'
    return '<ul class="items">' + "".join(f"<li>{_sev(p.severity, labels)} {_h(p.text)}</li>"
                                          for p in problems) + "</ul>"


def render_html(v: ReportView) -> str:
    L = v.labels
    out: list[str] = ["<!DOCTYPE html>", f'<html lang="{_h(v.language)}">', "<head>", '<meta charset="utf-8">',
                      '<meta name="viewport" content="width=device-width, initial-scale=1">',
                      f"<title>{_h(L['report_title'])} — {_h(v.summary.run_id)}</title>",
                      f"<style>{_CSS}</style>", "</head>", "<body>", f"<h1>{_h(L['report_title'])}</h1>"]
    dry = v.summary.dry_run
    out.append(f'<p class="banner{" dry" if dry else ""}">'
               f"{_h(L['banner_dry_run' if dry else 'banner_real_run'])}</p>")
    out.append(f'<p class="banner{"" if v.masked else " personal"}">'
               f"{_h(L['banner_masked' if v.masked else 'banner_personal'])}</p>")

    out.append(f"<h2>{_h(L['section_totals'])}</h2>")
    _html_table(out, [L["item"], L["value"]], [f"<tr><th>{_h(k)}</th><td>{_h(val)}</td></tr>" for k, val in v.totals])
    out.append(f"<h3>{_h(L['section_counts'])}</h3>")
    _html_table(out, [L["item"], L["code"], L["count"]],
                [f'<tr><td>{_h(k)}</td><td><code>{_h(c)}</code></td><td class="num">{n}</td></tr>'
                 for k, c, n in v.counts])
    out.append(f"<h3>{_h(L['section_problems_by_code'])}</h3>")
    if v.by_code:
        _html_table(out, [L["problem"], L["code"], L["severity"], L["count"]],
                    [f'<tr class="{_h(sev)}"><td>{_h(t)}</td><td><code>{_h(c)}</code></td><td>{_sev(sev, L)}</td>'
                     f'<td class="num">{n}</td></tr>' for t, c, sev, n in v.by_code])
    else:
        out.append(f"<p>{_h(L['no_problems'])}</p>")
    out.append(f"<h3>{_h(L['section_requests'])}</h3>")
    _html_table(out, [L["item"], L["count"]],
                [f'<tr><td>{_h(k)}</td><td class="num">{n}</td></tr>' for k, n in v.requests])

    out.append(f"<h2>{_h(L['section_groups'])}</h2>")
    if not v.groups:
        out.append(f"<p>{_h(L['no_problems'])}</p>")
    for g in v.groups:
        is_open = " open" if g.severity != "info" else ""
        out.append(f'<details class="{_h(g.severity)}"{is_open}><summary>{_sev(g.severity, L)} {_h(g.title)} — '
                   f"{g.count}</summary>")
        out.append(f"<p><b>{_h(L['what_to_do'])}:</b> {_with_code(g.advice)}</p>")
        out.append(f'<p class="muted">{_h(L["code"])}: <code>{_h(g.code)}</code></p>')
        if g.answers:
            out.append(f"<p>{_h(L['affected_answers'])}: {len({a for a, _, _ in g.answers})}</p>")
            _html_table(out, [L["answer"], L["respondent"], L["problem"]],
                        [f"<tr><td>{a}</td><td>{_h(r or '—')}</td><td>{_h(t)}</td></tr>" for a, r, t in g.answers])
        if g.polls:
            _html_table(out, [L["poll"], L["poll_name"], L["problem"]],
                        [f"<tr><td>{p}</td><td>{_h(n)}</td><td>{_h(t)}</td></tr>" for p, n, t in g.polls])
        out.append("</details>")

    if not v.has_plan:
        out.append(f'<p class="muted">{_h(L["no_plan"])}</p>')
    else:
        out.append(f"<h2>{_h(L['section_polls'])}</h2>")
        if v.polls:
            rows = []
            for p in v.polls:
                worst = min((x.severity for x in p.problems), key=lambda s: SEVERITY_RANK.get(s, 1), default="")
                rows.append(f'<tr class="{_h(worst)}"><td>{p.plan.poll_id}</td><td>{_h(p.plan.poll_name)}</td>'
                            f"<td>{_h(p.label)}</td><td>{p.plan.owner_id}</td>"
                            f"<td>{_html_problems(p.problems, L)}</td></tr>")
            _html_table(out, [L["poll"], L["poll_name"], L["action"], L["owner"], L["problems"]], rows)
        else:
            out.append(f"<p>{_h(L['no_polls'])}</p>")
        out.append(f"<h2>{_h(L['section_answers'])}</h2>")
        if v.answers:
            rows = []
            for a in v.answers:
                deals = ('<ul class="items">' + "".join(
                    f"<li><b>{_h(d.programme)}</b> — {_link(d.label, d.url)}<br><span class=\"muted\">{_h(d.title)}</span></li>"
                    for d in a.deals) + "</ul>") if a.deals else '<span class="muted">—</span>'
                row_class = a.status if a.status != "ready" else ""
                rows.append(f'<tr class="{row_class}"><td>{a.plan.answer_id}</td><td>{a.plan.poll_id}</td>'
                            f"<td>{_h(a.respondent or '—')}</td><td>{_h(a.email or '—')}</td>"
                            f"<td>{_h(a.phone or '—')}</td><td>{_link(a.contact_label, a.contact_url)}</td><td>{deals}</td>"
                            f"<td>{_html_problems(a.problems, L)}</td><td>{_h(a.status_label)}</td></tr>")
            _html_table(out, [L["answer"], L["poll"], L["respondent"], L["email"], L["phone"], L["contact"],
                              L["deals"], L["problems"], L["status"]], rows)
        else:
            out.append(f"<p>{_h(L['no_answers'])}</p>")
    out += ["</body>", "</html>", ""]
    return "\n".join(out)
