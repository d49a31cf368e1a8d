"""The run report: what admissions staff review after ``--dry-run`` and operators read after a run.

One view of a ``RunSummary`` (and its ``Plan`` when kept), rendered four ways:

* ``md`` and ``html`` for people: totals first, then problems grouped by kind with
  what to do, then poll forms, then every answer with its contact, deals and problems;
* ``csv`` for spreadsheets: one row per (answer, deal) and per (answer, problem),
  UTF-8 with a BOM so Excel reads Cyrillic;
* ``json`` for machines: the summary and the plan, with the same masking.

Personal data (respondents' e-mails, names, phones; poll owners' e-mails) are masked
unless ``show_personal_data`` is set, in every format: deal titles carry names, so
they are masked too, and free texts (errors, params of unknown problem codes) are
scrubbed of anything that looks like an e-mail or a phone number. Secrets are always
removed with ``redact()``. Every value from the public is escaped for its format.

Texts live in ``sync.report.messages`` (Russian and English); a problem code this module
does not know is shown by its code and params rather than failing the report.
"""
from __future__ import annotations

import csv
import html
import io
import json
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Literal

from sync.report.messages import COUNTS, FIELD_NAMES, GENERIC, LABELS, LANGUAGES, PROBLEMS, SEVERITY, ProblemMessage
from sync.plan.models import AnswerPlan, ContactPlan, Plan, PollPlan, Problem
from core.redact import redact
from sync.run import RunSummary

Format = Literal["md", "html", "json", "csv"]
Language = Literal["ru", "en"]

FORMATS: tuple[str, ...] = ("md", "html", "json", "csv")
EXTENSIONS: dict[str, str] = {".md": "md", ".html": "html", ".htm": "html", ".json": "json", ".csv": "csv"}

CSV_COLUMNS: tuple[str, ...] = (
    "row_type", "answer_id", "poll_id", "respondent", "email", "phone", "answer_status",
    "contact_action", "contact_id", "deal_action", "deal_id", "programme", "deal_title",
    "problem_code", "problem_severity", "problem_text",
)

_SEVERITY_RANK = {"attention": 0, "warning": 1, "info": 2}
_SEVERITY_MARK = {"attention": "❗", "warning": "⚠️", "info": "ℹ️"}
_MASK = "***"


# --- masking -------------------------------------------------------------------------------------

_NON_DIGITS = re.compile(r"\D+")
_EMAIL_IN_TEXT = re.compile(r"[^\s@<>()\[\]{},;:\"'«»]+@[^\s@<>()\[\]{},;:\"'«»]+")
_PHONE_IN_TEXT = re.compile(r"\+?\d[\d\s().\-]{8,}\d")
_EDGE_PUNCTUATION = "\"'«»„“”‘’()[]{}<>.,;:!?—–-"
_TRUNCATED_TITLE = 250  # the planner cuts deal titles at 255 characters; a cut name is masked by prefix


def mask_email(value: Any) -> str:
    """``ivan.petrov@example.com`` → ``iv***@example.com``; text without ``@`` keeps two characters."""
    text = "" if value is None else str(value).strip()
    if not text:
        return ""
    local, at, domain = text.rpartition("@")
    if not at:
        return (text[:2] if len(text) > 4 else "") + _MASK
    keep = local[:2] if len(local) > 3 else local[:1]
    return f"{keep}{_MASK}@{domain}"


def mask_phone(value: Any) -> str:
    """``+79161234567`` → ``+7916*****67``: the country and operator code and the last two digits."""
    text = "" if value is None else str(value).strip()
    digits = _NON_DIGITS.sub("", text)
    if not digits:
        return _MASK if text else ""
    if len(digits) < 7:
        return _MASK
    head = min(4, len(digits) - 6)
    plus = "+" if text.startswith("+") else ""
    return f"{plus}{digits[:head]}{'*' * (len(digits) - head - 2)}{digits[-2:]}"


def _mask_word(word: str) -> str:
    if not word:
        return ""
    return (word[0] if word[0].isalpha() else "") + _MASK


def mask_name(value: Any) -> str:
    """Every word of a name as its first letter and ``***``: ``Петров Иван`` → ``П*** И***``."""
    return " ".join(_mask_word(w) for w in str(value or "").split())


def scrub_text(text: str) -> str:
    """Free text with every e-mail and phone-like number (10+ digits) masked."""
    if "@" in text:
        text = _EMAIL_IN_TEXT.sub(lambda m: mask_email(m.group()), text)
    return _PHONE_IN_TEXT.sub(_mask_phone_match, text)


def _mask_phone_match(match: re.Match[str]) -> str:
    found = match.group()
    return mask_phone(found) if sum(ch.isdigit() for ch in found) >= 10 else found


def mask_title(title: str, display_name: str) -> str:
    """A deal title with the respondent's name words masked (names are rendered into titles)."""
    names = set(display_name.split())
    if not names or not title:
        return scrub_text(title)
    words = title.split(" ")
    found: set[str] = set()
    for i, word in enumerate(words):
        if word in names:
            found.add(word)
            words[i] = _mask_word(word)
            continue
        core = word.strip(_EDGE_PUNCTUATION)
        if core in names:
            found.add(core)
            words[i] = word.replace(core, _mask_word(core), 1)
    if len(title) >= _TRUNCATED_TITLE and words:
        last = words[-1].strip(_EDGE_PUNCTUATION)
        if last and last not in found and any(n.startswith(last) for n in names):
            words[-1] = words[-1].replace(last, _mask_word(last), 1)
    text = " ".join(words)
    for name in names - found:  # a template that glues a name to other text
        if len(name) >= 3 and name in text:
            text = text.replace(name, _mask_word(name))
    return scrub_text(text)


_EMAIL_KEYS = frozenset({"email", "employee_email", "contact_email", "emails"})
_PHONE_KEYS = frozenset({"phone", "phones"})
_NAME_KEYS = frozenset({"name", "first_name", "last_name", "middle_name", "second_name", "display_name",
                        "respondent", "full_name"})
# ``params["value"]`` is what the respondent typed: personal unless the code says otherwise.
_VALUE_MASKS: dict[str, Callable[[Any], str]] = {"invalid_email": mask_email, "missing_email": mask_email,
                                                 "invalid_phone": mask_phone}
_PUBLIC_VALUE_CODES = frozenset({"unknown_enum_value"})


def _mask_generic(value: Any) -> str:
    text = str(value)
    return (text[:2] if len(text) > 4 else "") + _MASK if text else ""


def _mask_param(code: str, key: str, value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, (list, tuple)):
        return [_mask_param(code, key, v) for v in value]
    if isinstance(value, dict):
        return {k: _mask_param(code, str(k), v) for k, v in value.items()}
    if key in _EMAIL_KEYS:
        return mask_email(value)
    if key in _PHONE_KEYS:
        return mask_phone(value)
    if key in _NAME_KEYS:
        return mask_name(value)
    if key == "value" and code not in _PUBLIC_VALUE_CODES:
        return _VALUE_MASKS.get(code, _mask_generic)(value)
    return scrub_text(str(value))


def mask_params(problem: Problem) -> dict[str, Any]:
    """The problem's params with the personal values masked (programme names are kept)."""
    return {k: _mask_param(problem.code, k, v) for k, v in problem.params.items()}


# --- texts ---------------------------------------------------------------------------------------

class _Fill(dict):
    def __missing__(self, key: str) -> str:
        return "?"


def _check_language(language: str) -> None:
    if language not in LANGUAGES:
        raise ValueError(f"unsupported report language {language!r}; supported: {', '.join(LANGUAGES)}")


def _show(value: Any, language: str, key: str = "") -> str:
    if value is None:
        return "—"
    if isinstance(value, (list, tuple)):
        return ", ".join(_show(v, language, key) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{k}={_show(v, language, str(k))}" for k, v in value.items())
    text = str(value)
    if key == "field":
        return FIELD_NAMES[language].get(text, text)
    return text


def _message(code: str, language: str) -> ProblemMessage:
    known = PROBLEMS[language].get(code)
    if known is not None:
        return known
    generic = GENERIC[language]
    return ProblemMessage(generic.title.replace("{code}", code), generic.text, generic.advice)


def problem_text(problem: Problem, language: Language = "ru", *, show_personal_data: bool = False) -> str:
    """One problem in plain words, personal values masked unless ``show_personal_data``."""
    _check_language(language)
    return _text(problem.code, problem.params if show_personal_data else mask_params(problem), language)


def _text(code: str, params: dict[str, Any], language: str) -> str:
    fill = _Fill({k: _show(v, language, k) for k, v in params.items()})
    known = PROBLEMS[language].get(code)
    if known is not None:
        return known.text.format_map(fill)
    listed = ", ".join(f"{k}={fill[k]}" for k in params) or "—"
    return GENERIC[language].text.format_map(_Fill(code=code, params=listed))


def _duration(seconds: float, language: str) -> str:
    labels = LABELS[language]
    if seconds < 60:
        value = f"{seconds:.1f}"
        return labels["seconds"].format(value=value.replace(".", ",") if language == "ru" else value)
    minutes, rest = divmod(int(round(seconds)), 60)
    return labels["minutes"].format(minutes=minutes, seconds=rest)


def _when(moment: datetime | None) -> str:
    if moment is None:
        return "—"
    if moment.tzinfo is not None:
        return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def _outcome(outcome: str, language: str) -> str:
    return LABELS[language].get(f"outcome_{outcome}", outcome)


def _error_text(error: str | None, masked: bool) -> str:
    if not error:
        return ""
    text = redact(error)
    return scrub_text(text) if masked else text


def format_summary_line(summary: RunSummary, language: Language = "en") -> str:
    """The run in one line, for the terminal and the log: outcome, answers, CRM writes, requests, time."""
    _check_language(language)
    labels = LABELS[language]
    counts = summary.counts
    dry = summary.dry_run
    line = labels["summary_line"].format(
        command=summary.command, dry=labels["summary_dry"] if dry else "",
        outcome=_outcome(summary.outcome, language),
        seen=counts.get("answers_seen", 0), planned=counts.get("planned", 0), pushed=counts.get("pushed", 0),
        attention=summary.needs_attention,
        contacts_label=labels["summary_contacts_planned" if dry else "summary_contacts_done"],
        contacts=counts.get("contact_add_planned" if dry else "contacts_created", 0),
        deals_label=labels["summary_deals_planned" if dry else "summary_deals_done"],
        deals=counts.get("deal_add_planned" if dry else "deals_created", 0),
        bitrix=summary.bitrix_requests, retries=summary.bitrix_retries, survey=summary.survey_requests,
        duration=_duration(summary.duration_s, language))
    if summary.error:
        line += labels["summary_error"].format(error=_error_text(summary.error, masked=True))
    return line


# --- the view: everything the renderers show, masked and translated once --------------------------

@dataclass(slots=True)
class _Prob:
    code: str
    severity: str
    text: str
    params: dict[str, Any]


@dataclass(slots=True)
class _Deal:
    action: str
    label: str
    deal_id: int | None
    programme: str
    title: str


@dataclass(slots=True)
class _Answer:
    plan: AnswerPlan
    respondent: str
    email: str
    phone: str
    contact_action: str
    contact_id: int | None
    contact_label: str
    deals: list[_Deal]
    problems: list[_Prob]
    status: str
    status_label: str


@dataclass(slots=True)
class _Poll:
    plan: PollPlan
    label: str
    problems: list[_Prob]


@dataclass
class _Group:
    code: str
    severity: str
    title: str
    advice: str
    count: int = 0
    answers: list[tuple[int, str, str]] = field(default_factory=list)   # answer id, respondent, text
    polls: list[tuple[int, str, str]] = field(default_factory=list)     # poll id, poll name, text


@dataclass
class _View:
    summary: RunSummary
    language: str
    masked: bool
    labels: dict[str, str]
    totals: list[tuple[str, str]]
    counts: list[tuple[str, str, int]]
    by_code: list[tuple[str, str, str, int]]      # title, code, severity, count
    requests: list[tuple[str, int]]
    groups: list[_Group]
    polls: list[_Poll]
    answers: list[_Answer]
    contacts: list[ContactPlan]

    @property
    def has_plan(self) -> bool:
        return self.summary.plan is not None


def _severity_of(code: str) -> str:
    return SEVERITY.get(code, "warning")


class _Builder:
    def __init__(self, summary: RunSummary, language: str, show_personal_data: bool) -> None:
        _check_language(language)
        self.summary = summary
        self.language = language
        self.masked = not show_personal_data
        self.labels = LABELS[language]
        self.groups: dict[str, _Group] = {}

    def group(self, code: str, severity: str) -> _Group:
        found = self.groups.get(code)
        if found is None:
            message = _message(code, self.language)
            found = self.groups[code] = _Group(code=code, severity=severity, title=message.title,
                                               advice=message.advice)
        return found

    def problem(self, problem: Problem) -> _Prob:
        params = mask_params(problem) if self.masked else dict(problem.params)
        return _Prob(code=problem.code, severity=problem.severity, text=_text(problem.code, params, self.language),
                     params=params)

    def answer(self, plan: AnswerPlan, contact: ContactPlan | None) -> _Answer:
        labels = self.labels
        if self.masked:
            respondent, email, phone = mask_name(plan.display_name), mask_email(plan.email), mask_phone(plan.phone)
        else:
            respondent, email, phone = plan.display_name, plan.email or "", plan.phone or ""
        problems = [self.problem(p) for p in plan.problems]
        for p in problems:
            g = self.group(p.code, p.severity)
            g.count += 1
            g.answers.append((plan.answer_id, respondent, p.text))
        if contact is None:
            contact_action, contact_id, contact_label = "", None, labels["contact_none"]
        else:
            contact_action, contact_id = contact.action, contact.contact_id
            changes = ", ".join(FIELD_NAMES[self.language].get(c, c) for c in contact.changes)
            contact_label = labels.get(f"contact_{contact.action}", contact.action).format(
                contact_id=contact.contact_id, changes=changes)
        deals = []
        for d in plan.deals:
            title = mask_title(d.title, plan.display_name) if self.masked else d.title
            label = labels.get(f"deal_{d.action}", d.action).format(deal_id=d.deal_id)
            deals.append(_Deal(action=d.action, label=label, deal_id=d.deal_id,
                               programme=d.programme_title or labels["no_programme"], title=title))
        severities = {p.severity for p in plan.problems}
        status = "attention" if "attention" in severities else "warning" if "warning" in severities else "ready"
        status_label = labels[f"status_{status}"]
        if plan.outcome is not None:  # a real run: say what happened, with the ids it got
            contact_id = plan.outcome_contact_id or contact_id
            for view, d in zip(deals, plan.deals):
                view.deal_id = plan.outcome_deal_ids.get(d.programme_key, view.deal_id)
            error = scrub_text(plan.outcome_error) if self.masked else redact(plan.outcome_error)
            outcome_label = labels[f"status_{plan.outcome}"].format(error=error)
            if plan.outcome != "pushed":
                status, status_label = "attention", outcome_label
            else:
                status_label = outcome_label if status == "ready" else f"{outcome_label}; {status_label}"
        return _Answer(plan=plan, respondent=respondent, email=email, phone=phone, contact_action=contact_action,
                       contact_id=contact_id, contact_label=contact_label, deals=deals, problems=problems,
                       status=status, status_label=status_label)

    def poll(self, plan: PollPlan) -> _Poll:
        problems = [self.problem(p) for p in plan.problems]
        for p in problems:
            g = self.group(p.code, p.severity)
            g.count += 1
            g.polls.append((plan.poll_id, plan.poll_name, p.text))
        label = self.labels.get(f"poll_{plan.action}", plan.action).format(item_id=plan.item_id)
        return _Poll(plan=plan, label=label, problems=problems)

    def build(self) -> _View:
        s, labels, lang = self.summary, self.labels, self.language
        plan: Plan | None = s.plan
        polls: list[_Poll] = []
        answers: list[_Answer] = []
        contacts: list[ContactPlan] = []
        if plan is not None:
            polls = [self.poll(p) for p in plan.polls]
            contact_of: dict[int, ContactPlan] = {}
            for c in plan.contacts:
                for answer_id in c.answer_ids:
                    contact_of.setdefault(answer_id, c)
            answers = [self.answer(a, contact_of.get(a.answer_id)) for a in plan.answers]
            contacts = list(plan.contacts)
        by_code_counts = dict(s.problems_by_code)
        if not by_code_counts and plan is not None:
            by_code_counts = {code: g.count for code, g in self.groups.items()}
        for code, n in by_code_counts.items():  # codes with no answer in the plan (invalid records, no plan)
            if code not in self.groups:
                self.group(code, _severity_of(code)).count = n
        groups = sorted(self.groups.values(), key=lambda g: (_SEVERITY_RANK.get(g.severity, 1), -g.count, g.code))
        severity_of = {g.code: g.severity for g in groups}
        by_code = sorted(((_message(code, lang).title, code, severity_of.get(code, _severity_of(code)), n)
                          for code, n in by_code_counts.items()),
                         key=lambda r: (_SEVERITY_RANK.get(r[2], 1), -r[3], r[1]))
        totals = [(labels["run_id"], s.run_id), (labels["command"], s.command),
                  (labels["mode"], labels["mode_dry_run" if s.dry_run else "mode_real_run"]),
                  (labels["started_at"], _when(s.started_at)), (labels["finished_at"], _when(s.finished_at)),
                  (labels["duration"], _duration(s.duration_s, lang)),
                  (labels["outcome"], _outcome(s.outcome, lang))]
        if s.error:
            totals.append((labels["error"], _error_text(s.error, self.masked)))
        known = COUNTS[lang]
        counts = [(known[k], k, s.counts[k]) for k in known if k in s.counts]
        counts += [(k, k, s.counts[k]) for k in sorted(s.counts) if k not in known]
        requests = [(labels["bitrix_requests"], s.bitrix_requests), (labels["bitrix_retries"], s.bitrix_retries),
                    (labels["survey_requests"], s.survey_requests)]
        return _View(summary=s, language=lang, masked=self.masked, labels=labels, totals=totals, counts=counts,
                     by_code=by_code, requests=requests, groups=groups, polls=polls, answers=answers,
                     contacts=contacts)


# --- Markdown ------------------------------------------------------------------------------------

_MD_SPECIAL = re.compile(r"[\\`*_\[\]<>|~&]|[\r\n\t]")


def _md_escape(match: re.Match[str]) -> str:
    char = match.group()
    return " " if char in "\r\n\t" else "\\" + char


def _md(value: Any) -> str:
    """A value safe inside Markdown text and table cells (no markup, no pipes, no line breaks)."""
    return _MD_SPECIAL.sub(_md_escape, str(value if value is not None else "—"))


def _md_table(out: list[str], headers: list[str], rows: list[list[str]]) -> None:
    """Append a table; cells must already be escaped."""
    out.append("| " + " | ".join(_md(h) for h in headers) + " |")
    out.append("|" + "---|" * len(headers))
    out.extend("| " + " | ".join(row) + " |" for row in rows)
    out.append("")


def _render_md(v: _View) -> str:
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
        deals = "; ".join(f"{_md(d.programme)} · {_md(d.label)} · «{_md(d.title)}»" for d in a.deals) or "—"
        problems = " ".join(f"{_SEVERITY_MARK.get(p.severity, '')} {_md(p.text)}" for p in a.problems) or "—"
        rows.append([str(a.plan.answer_id), str(a.plan.poll_id), _md(a.respondent or "—"), _md(a.email or "—"),
                     _md(a.phone or "—"), _md(a.contact_label), deals, problems, _md(a.status_label)])
    _md_table(out, [L["answer"], L["poll"], L["respondent"], L["email"], L["phone"], L["contact"], L["deals"],
                    L["problems"], L["status"]], rows)
    return "\n".join(out)


# --- HTML ----------------------------------------------------------------------------------------

_CSS = """
body{font-family:-apple-system,"Segoe UI",Roboto,Arial,sans-serif;margin:1.5rem;color:#1d2330;line-height:1.4}
h1{font-size:1.5rem}h2{font-size:1.25rem;margin-top:2rem;border-bottom:1px solid #d5d9e0}h3{font-size:1.05rem}
table{border-collapse:collapse;margin:.5rem 0 1rem;font-size:.9rem}
th,td{border:1px solid #d5d9e0;padding:.3rem .5rem;text-align:left;vertical-align:top}
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


def _sev(severity: str, labels: dict[str, str]) -> str:
    return f'<span class="sev {_h(severity)}">{_h(labels.get("severity_" + severity, severity))}</span>'


def _html_table(out: list[str], headers: list[str], rows: list[str]) -> None:
    """Append a table; ``rows`` are complete ``<tr>`` elements."""
    out.append("<table><thead><tr>" + "".join(f"<th>{_h(x)}</th>" for x in headers) + "</tr></thead><tbody>")
    out.extend(rows)
    out.append("</tbody></table>")


def _html_problems(problems: list[_Prob], labels: dict[str, str]) -> str:
    if not problems:
        return '<span class="muted">—</span>'
    return '<ul class="items">' + "".join(f"<li>{_sev(p.severity, labels)} {_h(p.text)}</li>"
                                          for p in problems) + "</ul>"


def _render_html(v: _View) -> str:
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
                worst = min((x.severity for x in p.problems), key=lambda s: _SEVERITY_RANK.get(s, 1), default="")
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
                    f"<li><b>{_h(d.programme)}</b> — {_h(d.label)}<br><span class=\"muted\">{_h(d.title)}</span></li>"
                    for d in a.deals) + "</ul>") if a.deals else '<span class="muted">—</span>'
                row_class = a.status if a.status != "ready" else ""
                rows.append(f'<tr class="{row_class}"><td>{a.plan.answer_id}</td><td>{a.plan.poll_id}</td>'
                            f"<td>{_h(a.respondent or '—')}</td><td>{_h(a.email or '—')}</td>"
                            f"<td>{_h(a.phone or '—')}</td><td>{_h(a.contact_label)}</td><td>{deals}</td>"
                            f"<td>{_html_problems(a.problems, L)}</td><td>{_h(a.status_label)}</td></tr>")
            _html_table(out, [L["answer"], L["poll"], L["respondent"], L["email"], L["phone"], L["contact"],
                              L["deals"], L["problems"], L["status"]], rows)
        else:
            out.append(f"<p>{_h(L['no_answers'])}</p>")
    out += ["</body>", "</html>", ""]
    return "\n".join(out)


# --- CSV -----------------------------------------------------------------------------------------

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: Any) -> Any:
    """A spreadsheet-safe cell: text from the public must not start a formula (CSV injection)."""
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def _row(**values: Any) -> list[Any]:
    return [_cell(values.get(column)) for column in CSV_COLUMNS]


def _render_csv(v: _View) -> str:
    buffer = io.StringIO()
    buffer.write("\ufeff")
    writer = csv.writer(buffer)
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


# --- JSON ----------------------------------------------------------------------------------------

def _json_problem(p: _Prob) -> dict[str, Any]:
    return {"code": p.code, "severity": p.severity, "params": p.params, "text": p.text}


def _render_json(v: _View) -> str:
    s = v.summary
    summary = s.model_dump(mode="json", exclude={"plan"})
    summary["error"] = _error_text(s.error, v.masked) or None
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
            data["problems"] = [_json_problem(p) for p in a.problems]
            data["needs_attention"] = a.status == "attention"
            data["contact"] = {"action": a.contact_action or None, "contact_id": a.contact_id}
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


# --- public API ----------------------------------------------------------------------------------

_RENDERERS: dict[str, Callable[[_View], str]] = {"md": _render_md, "html": _render_html, "csv": _render_csv,
                                                 "json": _render_json}


def render_report(summary: RunSummary, *, fmt: Format, language: Language = "ru",
                  show_personal_data: bool = False) -> str:
    """The report of ``summary`` as text in ``fmt`` (md, html, json or csv).

    Totals come first, then problems grouped by kind with what to do, then poll forms
    and answers (when ``summary.plan`` was kept). Personal data are masked unless
    ``show_personal_data``. A CSV starts with a BOM so Excel reads it as UTF-8.
    """
    renderer = _RENDERERS.get(fmt)
    if renderer is None:
        raise ValueError(f"unsupported report format {fmt!r}; supported: {', '.join(FORMATS)}")
    return renderer(_Builder(summary, language, show_personal_data).build())


def format_for_path(path: Path) -> Format:
    """The report format a file name asks for; ``ValueError`` naming the supported extensions otherwise."""
    fmt = EXTENSIONS.get(Path(path).suffix.lower())
    if fmt is None:
        raise ValueError(f"cannot write a report to {path}: unsupported extension {Path(path).suffix or '(none)'!r}; "
                         f"supported: {', '.join(EXTENSIONS)}")
    return fmt  # type: ignore[return-value]


def write_report(summary: RunSummary, path: Path, *, language: Language = "ru",
                 show_personal_data: bool = False) -> Path:
    """Write the report to ``path`` in the format its extension names; return the path.

    Supported: ``.md``, ``.html``/``.htm``, ``.json``, ``.csv`` (anything else is a
    ``ValueError`` listing them). The file is written whole or not at all.
    """
    path = Path(path)
    fmt = format_for_path(path)
    text = render_report(summary, fmt=fmt, language=language, show_personal_data=show_personal_data)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    try:
        with open(partial, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return path


__all__ = ["CSV_COLUMNS", "EXTENSIONS", "FORMATS", "format_for_path", "format_summary_line", "mask_email",
           "mask_name", "mask_params", "mask_phone", "mask_title", "problem_text", "render_report", "scrub_text",
           "write_report"]
