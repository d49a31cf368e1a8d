"""``cli.py explain``: why a deal or contact says what it says, for one answer.

Admissions staff ask "why does this deal say X?". The answer is in four places, put
side by side here: the answer's versions (the ledger's row; every version the intake
stored), the records it created or reused (the ledger's contact and deal ids, with
links), for each CRM field the job writes the mapping rule and the source value it came
from, and every problem with what to do.

The field lines are computed by the planner itself (``build_answer_plan`` over this one
answer), so they cannot drift from what a run does: a field the plan sends is
``sent``; one it leaves alone because the CRM already has a value (a reused deal's own
UTM attribution, say) is ``kept`` with that value.

``build_explanation`` is pure (data in, an ``Explanation`` out); ``gather`` reads the
store and, unless offline, the CRM, and calls it. Rendering is in
``sync.report.explain_text``.
"""
from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, Field

from sync.mapping import FieldMapping
from sync.plan.models import AnswerLookups, AnswerPlan, Command, CrmDeal, Plan, PollContext, Problem, Ref
from sync.plan.values import question, source_value
from sync.source.models import Answer

Outcome = Literal["sent", "cleared", "kept", "kept_group", "empty", "create_only", "not_sent", "not_sent_reuse",
                  "unknown"]


class VersionLine(BaseModel):
    """One version of the answer as the intake stored it (or the one the ledger holds, for the API source)."""

    number: int
    seen_at: datetime
    content_hash: str
    deliveries: int = 1
    last_delivered_at: datetime | None = None
    changed: list[str] = Field(default_factory=list)   # question codes changed since the version before
    current: bool = False                               # the version the ledger holds (and a run plans)


class LedgerState(BaseModel):
    status: str
    content_hash: str
    pushed_hash: str | None = None
    first_seen_at: datetime
    updated_at: datetime
    last_attempt_at: datetime | None = None
    pushed_at: datetime | None = None
    attempts: int = 0
    error: str | None = None
    run_id: str | None = None

    @property
    def pushed_current(self) -> bool:
        return self.pushed_hash is not None and self.pushed_hash == self.content_hash


class FieldLine(BaseModel):
    """One CRM field: the rule that fills it, the value that rule gives for this answer, what the plan does."""

    field: str
    rule: str
    value: Any = None
    outcome: Outcome = "unknown"
    sent: Any = None        # what the plan sends, when ``sent``
    crm: Any = None         # what the CRM holds, when ``kept``


class RecordLine(BaseModel):
    kind: Literal["contact", "deal"]
    id: int | None = None
    url: str | None = None
    action: str = ""        # create | update | reuse | known (offline: from the ledger only)
    programme: str | None = None
    programme_key: str | None = None
    fields: list[FieldLine] = Field(default_factory=list)


class ProblemLine(BaseModel):
    code: str
    severity: str
    params: dict[str, Any] = Field(default_factory=dict)


class Explanation(BaseModel):
    answer_id: int
    poll_id: int
    poll_name: str = ""
    source: Literal["api", "intake"] = "api"
    offline: bool = False
    ledger: LedgerState
    versions: list[VersionLine] = Field(default_factory=list)
    contact: RecordLine | None = None
    deals: list[RecordLine] = Field(default_factory=list)
    problems: list[ProblemLine] = Field(default_factory=list)
    problems_from: Literal["plan", "ledger"] = "plan"
    summary_to: str = "off"     # where the answer's summary goes (deal.summary.to)


# --- links -----------------------------------------------------------------------------------

def portal_host(webhook_url: str) -> str | None:
    """The portal's host (and port) from the webhook URL; the secret in its path never leaves here."""
    try:
        parts = urlsplit(webhook_url)
    except ValueError:
        return None
    host = parts.hostname
    if not host:
        return None
    return f"{host}:{parts.port}" if parts.port else host


def record_url(host: str | None, kind: str, record_id: int | None) -> str | None:
    if not host or record_id is None:
        return None
    return f"https://{host}/crm/{kind}/details/{record_id}/"


# --- the pure part -----------------------------------------------------------------------------

def _empty(value: Any) -> bool:
    if isinstance(value, (list, dict)):
        return not any(v not in (None, "", 0, "0") for v in (value.values() if isinstance(value, dict) else value))
    return value in (None, "", 0, "0")


def _outcome(line: FieldLine, *, command: Command | None, crm: dict[str, Any] | None, planned: bool,
             create_only: bool = False, group: list[str] = (), reuse: bool = False) -> FieldLine:
    """Fill ``line.outcome`` from the plan's command for the record and what the CRM holds."""
    if not planned:
        return line
    sent = command.params.get("fields", {}) if command is not None else {}
    if line.field in sent:
        value = sent[line.field]
        # The answer's own deal: a value this version no longer has is cleared, not kept.
        line.outcome, line.sent = ("cleared", None) if _empty(value) and line.value is None else ("sent", value)
    elif crm is not None and not _empty(crm.get(line.field)):
        line.outcome, line.crm = "kept", crm.get(line.field)
    elif line.value is None:
        line.outcome = "empty"
    elif create_only:
        line.outcome = "create_only"
    elif line.field in group and crm is not None and any(not _empty(crm.get(c)) for c in group):
        # The UTM fields are one attribution: a deal that has any of it keeps all of it.
        held = next(c for c in group if not _empty(crm.get(c)))
        line.outcome, line.crm = "kept_group", f"{held} = {json.dumps(crm.get(held), ensure_ascii=False, default=str)}"
    else:
        line.outcome = "not_sent_reuse" if reuse else "not_sent"
    return line


def _deal_lines(answer: Answer, poll: PollContext | None, mapping: FieldMapping, *, title: str | None,
                programme_id: int | None, has_programme: bool, command: Command | None, deal: CrmDeal | None,
                planned: bool, summary_sent: bool | None, reuse: bool = False) -> list[FieldLine]:
    dm, q = mapping.deal, mapping.questions
    crm = dict(deal.fields) if deal is not None else None
    if crm is not None and dm.programme_link_field and deal.programme_id is not None:
        crm.setdefault(dm.programme_link_field, deal.programme_id)
    lines: list[FieldLine] = []

    def add(field: str, rule: str, value: Any, *, create_only: bool = False) -> None:
        lines.append(_outcome(FieldLine(field=field, rule=rule, value=value), command=command, crm=crm,
                              planned=planned, create_only=create_only, group=dm.attribution_fields,
                              reuse=reuse))

    if title is not None:
        add("TITLE", "deal.title_template" if has_programme else "deal.title_without_programme", title)
    context = poll or PollContext(poll_id=answer.poll_id, owner_id=0)
    for code, source in dm.fields.items():
        add(code, source, source_value(source, answer=answer, poll=context, mapping=mapping))
    for code, enum in dm.enumerations.items():
        raw = question(answer, enum.question)
        add(code, f"question:{enum.question} → deal.enumerations.{code}",
            enum.values.get(str(raw)) if raw is not None else None)
    if dm.programme_link_field and has_programme:
        add(dm.programme_link_field, f"question:{q.programmes} → programmes", programme_id)
    add(dm.owner_field, "owner", poll.owner_id if poll is not None else None, create_only=True)
    add("CATEGORY_ID", "deal.category_id", dm.category_id, create_only=True)
    add("STAGE_ID", "deal.stage_id", dm.stage_id, create_only=True)
    if dm.source_id:
        add("SOURCE_ID", "deal.source_id", dm.source_id, create_only=True)
    if dm.summary.to != "off":
        field = "COMMENTS" if dm.summary.to == "comments" else "timeline"
        line = FieldLine(field=field, rule="deal.summary")
        if planned and summary_sent is not None:
            # Written once per answer version: not sent again means the deal carries this version already.
            line.outcome = "sent" if summary_sent else "kept"
        lines.append(line)
    return lines


def _contact_lines(answer: Answer, answer_plan: AnswerPlan | None, poll: PollContext | None, mapping: FieldMapping,
                   *, command: Command | None, crm: dict[str, Any] | None, planned: bool) -> list[FieldLine]:
    cm, q = mapping.contact, mapping.questions
    lines: list[FieldLine] = []
    sent = command.params.get("fields", {}) if command is not None else {}
    create = command is not None and command.kind == "contact_add"

    def add(field: str, rule: str, value: Any, *, create_only: bool = False) -> None:
        lines.append(_outcome(FieldLine(field=field, rule=rule, value=value), command=command, crm=crm,
                              planned=planned, create_only=create_only))

    email = answer_plan.email if answer_plan is not None else question(answer, q.email)
    line = FieldLine(field="EMAIL", rule=f"question:{q.email}", value=email)
    if planned:
        line.outcome = "sent" if create else ("kept" if crm is not None else "empty" if email is None else "not_sent")
        line.sent = email if create else None
        line.crm = email if crm is not None and not create else None  # the contact was found by this e-mail
    lines.append(line)
    for field, code in ((cm.last_name_field, q.last_name), (cm.name_field, q.first_name),
                        (cm.middle_name_field, q.middle_name)):
        if code:
            add(field, f"question:{code}", question(answer, code))
    if q.phone:
        phone = answer_plan.phone if answer_plan is not None else question(answer, q.phone)
        line = FieldLine(field="PHONE", rule=f"question:{q.phone}", value=phone)
        if planned:
            values = [p.get("VALUE") for p in sent.get("PHONE") or [] if isinstance(p, dict)]
            if phone and phone in values:
                line.outcome, line.sent = "sent", phone
            elif phone is None:
                line.outcome = "empty"
            else:
                line.outcome = "kept"  # the contact has this number already (phones are only ever added)
                line.crm = phone
        lines.append(line)
    context = poll or PollContext(poll_id=answer.poll_id, owner_id=0)
    for field, source in cm.on_create.items():
        add(field, source, source_value(source, answer=answer, poll=context, mapping=mapping), create_only=True)
    return lines


def _summary_targets(commands: Any) -> set[str]:
    """The deals (ids, or the names of the commands creating them) the plan adds a summary to."""
    out = set()
    for c in commands:
        if c.kind == "summary_add":
            entity = c.params["fields"]["ENTITY_ID"]
            out.add(entity.command if isinstance(entity, Ref) else str(entity))
    return out


def build_explanation(*, row: Any, mapping: FieldMapping, poll: PollContext | None, poll_name: str = "",
                      plan: Plan | None, lookups: AnswerLookups | None, versions: list[VersionLine],
                      host: str | None, source: Literal["api", "intake"] = "api") -> Explanation:
    """The explanation of one ledger row. ``plan`` is ``build_answer_plan`` over this answer alone, with
    live look-ups (``lookups``); ``plan=None`` means offline: field lines show rules and values only,
    records come from the ledger, problems are those the ledger recorded at the last push."""
    answer = Answer.model_validate(row.payload)
    planned = plan is not None
    ledger = LedgerState(status=row.status, content_hash=row.content_hash, pushed_hash=row.pushed_hash,
                         first_seen_at=row.first_seen_at, updated_at=row.updated_at,
                         last_attempt_at=row.last_attempt_at, pushed_at=row.pushed_at, attempts=row.attempts,
                         error=row.error, run_id=row.run_id)
    known_deals = {str(k): int(v) for k, v in (row.deal_ids or {}).items()}
    answer_plan = next((a for a in plan.answers if a.answer_id == answer.answer_id), None) if planned else None
    commands = {c.name: c for c in plan.commands} if planned else {}
    summaries = _summary_targets(commands.values())
    deals: list[RecordLine] = []
    if answer_plan is not None:
        for dp in answer_plan.deals:
            deal_id = dp.deal_id or known_deals.get(dp.programme_key)
            deal = lookups.deals.get(deal_id) if lookups is not None and deal_id is not None else None
            command = commands.get(dp.command)
            target = str(dp.deal_id) if dp.deal_id is not None else dp.command
            summary_sent = target in summaries
            deals.append(RecordLine(
                kind="deal", id=deal_id, url=record_url(host, "deal", deal_id), action=dp.action,
                programme=dp.programme_title, programme_key=dp.programme_key,
                fields=_deal_lines(answer, poll, mapping, title=dp.title, programme_id=dp.programme_id,
                                   has_programme=dp.programme_id is not None, command=command, deal=deal,
                                   planned=True, summary_sent=summary_sent, reuse=dp.action == "reuse")))
    planned_keys = {d.programme_key for d in deals}
    for key, deal_id in sorted(known_deals.items()):
        if key in planned_keys:
            continue
        # The ledger's deals the plan does not reach (offline, or a programme this version dropped).
        deals.append(RecordLine(kind="deal", id=deal_id, url=record_url(host, "deal", deal_id), action="known",
                                programme_key=key,
                                fields=_deal_lines(answer, poll, mapping, title=None,
                                                   programme_id=int(key) if key != "0" else None,
                                                   has_programme=key != "0", command=None, deal=None,
                                                   planned=False, summary_sent=None)))
    contact = None
    contact_plan = None
    if planned:
        contact_plan = next((c for c in plan.contacts if answer.answer_id in c.answer_ids), None)
    contact_id = row.contact_id or (contact_plan.contact_id if contact_plan is not None else None)
    if contact_plan is not None or contact_id is not None:
        command = commands.get(contact_plan.command) if contact_plan is not None and contact_plan.command else None
        crm = None
        if lookups is not None and contact_id is not None:
            found = next((c for cs in lookups.contacts_by_email.values() for c in cs if c.id == contact_id), None)
            if found is not None:
                cm = mapping.contact
                crm = {cm.name_field: found.name, cm.last_name_field: found.last_name,
                       cm.middle_name_field: found.second_name}
        action = contact_plan.action if contact_plan is not None else "known"
        contact = RecordLine(kind="contact", id=contact_id, url=record_url(host, "contact", contact_id),
                             action=action,
                             fields=_contact_lines(answer, answer_plan, poll, mapping, command=command, crm=crm,
                                                   planned=planned and contact_plan is not None))
    if answer_plan is not None:
        problems = [ProblemLine(code=p.code, severity=p.severity, params=p.params) for p in answer_plan.problems]
    else:
        problems = [ProblemLine(code=str(p.get("code")), severity=str(p.get("severity", "warning")),
                                params=dict(p.get("params") or {})) for p in row.problems or []]
    if not versions:  # the survey API keeps no history here: the ledger's version is the one known
        versions = [VersionLine(number=1, seen_at=row.first_seen_at, content_hash=row.content_hash, current=True)]
    return Explanation(answer_id=answer.answer_id, poll_id=answer.poll_id, poll_name=poll_name, source=source,
                       offline=not planned, ledger=ledger, versions=versions, contact=contact, deals=deals,
                       problems=problems, problems_from="plan" if planned else "ledger",
                       summary_to=mapping.deal.summary.to)


def inbox_versions(rows: list[Any], *, current_at: datetime | None) -> list[VersionLine]:
    """The intake's stored versions of one answer, oldest first, each with the question codes it changed."""
    out: list[VersionLine] = []
    previous: dict[str, Any] | None = None
    for number, row in enumerate(rows, start=1):
        body = row.body if isinstance(row.body, dict) else {}
        data = body.get("data") if isinstance(body.get("data"), dict) else {}
        changed = [] if previous is None else sorted(
            k for k in set(data) | set(previous) if data.get(k) != previous.get(k))
        if previous is not None and not changed and body != getattr(rows[number - 2], "body", None):
            changed = ["header_data"]  # the analytics or header changed, not the questions
        out.append(VersionLine(number=number, seen_at=row.stored_at, content_hash=row.content_hash,
                               deliveries=row.deliveries, last_delivered_at=row.last_delivered_at,
                               changed=changed, current=current_at is not None and row.stored_at == current_at))
        previous = data
    return out


def problem_of(line: ProblemLine) -> Problem:
    return Problem(code=line.code, severity=line.severity if line.severity in ("attention", "warning", "info")
                   else "warning", params=line.params)


# --- gathering: the store and the CRM ---------------------------------------------------------

def gather(ctx: Any, answer_id: int, *, offline: bool) -> Explanation | None:
    """Read the answer's ledger row, its poll, its intake versions and (unless ``offline`` or no webhook is
    configured) the CRM's look-ups; plan it; explain it. None when the answer is not in the store."""
    from storage.ledger import content_hash
    from sync.answers_stage import candidate_origin_ids
    from sync.plan.build import AnswerInput, ProgrammeResolver, build_answer_plan
    from sync.plan.normalize import normalize_email
    from sync.polls_stage import poll_context

    row = ctx.ledger.get_answer(answer_id)
    if row is None:
        return None
    mapping, settings = ctx.mapping, ctx.settings
    answer = Answer.model_validate(row.payload)
    poll_rows = ctx.ledger.poll_rows(poll_ids=[answer.poll_id])
    poll = poll_context(poll_rows[0].payload, poll_rows[0].item_id, poll_rows[0].assigned_by_id) if poll_rows else None
    source = "intake" if getattr(settings, "survey_source", "api") == "intake" else "api"
    versions: list[VersionLine] = []
    if source == "intake":
        from storage.inbox import InboxStore
        versions = inbox_versions(InboxStore(ctx.engine).answer_versions(answer_id=answer_id),
                                  current_at=row.updated_at)
    webhook = settings.bitrix24_webhook_url
    plan = lookups = None
    if not offline and webhook is not None:  # without a webhook there is no CRM to ask: as offline
        from sync.crm.lookups import fetch_answer_lookups, fetch_programmes
        source_name = settings.source_name or mapping.source_name
        programmes = fetch_programmes(ctx.bitrix, mapping)
        resolver = ProgrammeResolver(programmes, mapping.programmes.aliases)
        email = normalize_email(answer.value_of(mapping.questions.email))[0]
        known = {k: int(v) for k, v in (row.deal_ids or {}).items()}
        lookups = fetch_answer_lookups(ctx.bitrix, mapping, emails=[email] if email else [],
                                       origin_ids=candidate_origin_ids(answer, resolver, mapping),
                                       source_name=source_name, programmes=programmes,
                                       deal_ids=list(known.values()) if mapping.deal.reuse != "never" else ())
        item = AnswerInput(answer=answer, content_hash=row.content_hash or content_hash(row.payload),
                           known_deal_ids=known, edited=row.status == "changed")
        plan = build_answer_plan([item], polls={poll.poll_id: poll} if poll else {}, lookups=lookups,
                                 mapping=mapping, source_name=source_name)
    return build_explanation(row=row, mapping=mapping, poll=poll,
                             poll_name=poll.poll_name if poll is not None else "", plan=plan, lookups=lookups,
                             versions=versions, host=portal_host(webhook.get_secret_value()) if webhook is not None else None,
                             source=source)
