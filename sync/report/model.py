"""The report's view of a run: everything the renderers show, masked and translated once.

``build_view(summary, language, show_personal_data)`` turns a ``RunSummary`` (and
its ``Plan`` when kept) into rows per poll and answer and problems grouped by code;
each format in ``as_markdown``, ``as_html``, ``as_csv`` and ``as_json`` only lays
that view out.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from core.redact import redact
from sync.plan.models import AnswerPlan, ContactPlan, Plan, PollPlan, Problem
from sync.report.masking import mask_email, mask_name, mask_params, mask_phone, mask_title, scrub_text
from sync.report.labels import LABELS
from sync.report.messages import COUNTS, FIELD_NAMES, SEVERITY
from sync.report.texts import (check_language, duration_text, error_text, fill_text, outcome_text, problem_message,
                               time_text)
from sync.options import RunSummary

SEVERITY_RANK = {"attention": 0, "warning": 1, "info": 2}
# Codes whose text already names the programme (``{programme}`` in it).
_NAMES_PROGRAMME = frozenset({"programme_normalised", "programme_alias", "inactive_programme"})


@dataclass(slots=True)
class ProblemView:
    """One problem as shown: its text translated, its params masked when asked."""

    code: str
    severity: str
    text: str
    params: dict[str, Any]


@dataclass(slots=True)
class DealView:
    """One deal of an answer: what the run does with it and the title as shown."""

    action: str
    label: str
    deal_id: int | None
    programme: str
    title: str
    url: str | None = None   # the deal's card on the portal, when its id is known


@dataclass(slots=True)
class AnswerView:
    """One answer row: the respondent as shown, the contact, deals, problems and status."""

    plan: AnswerPlan
    respondent: str
    email: str
    phone: str
    contact_action: str
    contact_id: int | None
    contact_label: str
    deals: list[DealView]
    problems: list[ProblemView]
    status: str
    status_label: str
    contact_url: str | None = None


@dataclass(slots=True)
class PollView:
    """One poll form row: what the run does with it and its problems."""

    plan: PollPlan
    label: str
    problems: list[ProblemView]


@dataclass
class ProblemGroup:
    """Every occurrence of one problem code, with the advice shown once for all of them."""

    code: str
    severity: str
    title: str
    advice: str
    count: int = 0
    answers: list[tuple[int, str, str]] = field(default_factory=list)   # answer id, respondent, text
    polls: list[tuple[int, str, str]] = field(default_factory=list)     # poll id, poll name, text


@dataclass
class ReportView:
    """Everything a renderer needs, already masked and translated."""

    summary: RunSummary
    language: str
    masked: bool
    labels: dict[str, str]
    totals: list[tuple[str, str]]
    counts: list[tuple[str, str, int]]
    by_code: list[tuple[str, str, str, int]]      # title, code, severity, count
    requests: list[tuple[str, int]]
    groups: list[ProblemGroup]
    polls: list[PollView]
    answers: list[AnswerView]
    contacts: list[ContactPlan]
    crm_url: str | None = None

    @property
    def has_plan(self) -> bool:
        return self.summary.plan is not None


def _severity_of(code: str) -> str:
    return SEVERITY.get(code, "warning")


class ViewBuilder:
    """Builds a ``ReportView``, grouping problems by code as it goes."""

    def __init__(self, summary: RunSummary, language: str, show_personal_data: bool,
                 crm_url: str | None = None) -> None:
        check_language(language)
        self.crm_url = crm_url.rstrip("/") if crm_url else None
        self.summary = summary
        self.language = language
        self.masked = not show_personal_data
        self.labels = LABELS[language]
        self.groups: dict[str, ProblemGroup] = {}

    def group(self, code: str, severity: str) -> ProblemGroup:
        found = self.groups.get(code)
        if found is None:
            message = problem_message(code, self.language)
            found = self.groups[code] = ProblemGroup(code=code, severity=severity, title=message.title,
                                                     advice=message.advice)
        return found

    def problem(self, problem: Problem) -> ProblemView:
        params = mask_params(problem) if self.masked else dict(problem.params)
        return ProblemView(code=problem.code, severity=problem.severity,
                           text=fill_text(problem.code, params, self.language), params=params)

    def answer(self, plan: AnswerPlan, contact: ContactPlan | None) -> AnswerView:
        labels = self.labels
        if self.masked:
            respondent, email, phone = mask_name(plan.display_name), mask_email(plan.email), mask_phone(plan.phone)
        else:
            respondent, email, phone = plan.display_name, plan.email or "", plan.phone or ""
        problems = [self.problem(p) for p in plan.problems]
        for p in problems:
            if p.params.get("programme") and p.code not in _NAMES_PROGRAMME:
                # A problem about one of the answer's deals: say which, or its lines read identical.
                p.text += self.labels["about_programme"].format(programme=p.params["programme"])
        repeats: dict[tuple[str, str], int] = {}
        for p in problems:
            repeats[(p.code, p.text)] = repeats.get((p.code, p.text), 0) + 1
        distinct: list[ProblemView] = []
        for p in problems:
            g = self.group(p.code, p.severity)
            g.count += 1
            n = repeats.pop((p.code, p.text), 0)
            if n:  # the same words several times for one answer: one line, saying how many
                if n > 1:
                    p.text += self.labels["times"].format(n=n)
                distinct.append(p)
                g.answers.append((plan.answer_id, respondent, p.text))
        problems = distinct
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
            deals.append(DealView(action=d.action, label=label, deal_id=d.deal_id,
                                  programme=d.programme_title or labels["no_programme"], title=title))
        severities = {p.severity for p in plan.problems}
        status = "attention" if "attention" in severities else "warning" if "warning" in severities else "ready"
        status_label = labels[f"status_{status}"]
        if plan.outcome is not None:  # a real run: say what happened, with the ids it got
            contact_id = plan.outcome_contact_id or contact_id
            if contact_action == "create" and contact_id is not None:
                contact_label = labels["contact_created"].format(contact_id=contact_id)
            for view, d in zip(deals, plan.deals):
                view.deal_id = plan.outcome_deal_ids.get(d.programme_key, view.deal_id)
                if d.action == "create" and view.deal_id is not None:
                    view.label = labels["deal_created"].format(deal_id=view.deal_id)
            error = scrub_text(plan.outcome_error) if self.masked else redact(plan.outcome_error)
            outcome_label = labels[f"status_{plan.outcome}"].format(error=error)
            if plan.outcome != "pushed":
                status, status_label = "attention", outcome_label
            else:
                status_label = outcome_label if status == "ready" else f"{outcome_label}; {status_label}"
        for view in deals:
            view.url = self.record_url("deal", view.deal_id)
        return AnswerView(plan=plan, respondent=respondent, email=email, phone=phone, contact_action=contact_action,
                          contact_id=contact_id, contact_label=contact_label, deals=deals, problems=problems,
                          status=status, status_label=status_label,
                          contact_url=self.record_url("contact", contact_id))

    def record_url(self, kind: str, record_id: int | None) -> str | None:
        """The record's card on the portal (``/crm/deal/details/<id>/``), when the portal and the id are known."""
        if self.crm_url is None or record_id is None:
            return None
        return f"{self.crm_url}/crm/{kind}/details/{int(record_id)}/"

    def poll(self, plan: PollPlan) -> PollView:
        problems = [self.problem(p) for p in plan.problems]
        for p in problems:
            g = self.group(p.code, p.severity)
            g.count += 1
            g.polls.append((plan.poll_id, plan.poll_name, p.text))
        label = self.labels.get(f"poll_{plan.action}", plan.action).format(item_id=plan.item_id)
        if not self.summary.dry_run and plan.action == "create" and plan.item_id is not None:
            label = self.labels["poll_created"].format(item_id=plan.item_id)  # the id the run got
        return PollView(plan=plan, label=label, problems=problems)

    def build(self) -> ReportView:
        s, labels, lang = self.summary, self.labels, self.language
        plan: Plan | None = s.plan
        polls: list[PollView] = []
        answers: list[AnswerView] = []
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
        groups = sorted(self.groups.values(), key=lambda g: (SEVERITY_RANK.get(g.severity, 1), -g.count, g.code))
        severity_of = {g.code: g.severity for g in groups}
        by_code = sorted(((problem_message(code, lang).title, code, severity_of.get(code, _severity_of(code)), n)
                          for code, n in by_code_counts.items()),
                         key=lambda r: (SEVERITY_RANK.get(r[2], 1), -r[3], r[1]))
        totals = [(labels["run_id"], s.run_id), (labels["command"], s.command),
                  (labels["mode"], labels["mode_dry_run" if s.dry_run else "mode_real_run"]),
                  (labels["started_at"], time_text(s.started_at)), (labels["finished_at"], time_text(s.finished_at)),
                  (labels["duration"], duration_text(s.duration_s, lang)),
                  (labels["outcome"], outcome_text(s.outcome, lang))]
        if s.error:
            totals.append((labels["error"], error_text(s.error, self.masked, lang)))
        known = COUNTS[lang]
        counts = [(known[k], k, s.counts[k]) for k in known if k in s.counts]
        counts += [(k, k, s.counts[k]) for k in sorted(s.counts) if k not in known]
        requests = [(labels["bitrix_requests"], s.bitrix_requests), (labels["bitrix_retries"], s.bitrix_retries),
                    (labels["survey_requests"], s.survey_requests)]
        return ReportView(summary=s, language=lang, masked=self.masked, labels=labels, totals=totals, counts=counts,
                          by_code=by_code, requests=requests, groups=groups, polls=polls, answers=answers,
                          contacts=contacts, crm_url=self.crm_url)


def build_view(summary: RunSummary, language: str, show_personal_data: bool, crm_url: str | None = None) -> ReportView:
    """The view of ``summary`` in ``language``; personal data masked unless ``show_personal_data``.

    ``crm_url`` (``https://<portal>``, never the webhook: that holds the secret) makes
    every known contact and deal id a link to its card.
    """
    return ViewBuilder(summary, language, show_personal_data, crm_url).build()
