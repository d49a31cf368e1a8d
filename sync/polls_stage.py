"""The poll stage of a run: every staged poll that changed gets its poll form written.

Reads the polls to push from the ledger, looks up owners and existing forms in the
CRM, plans, and — unless this is a dry-run, which stops at the write — writes the
forms and records each outcome. What the answer stage needs comes back as
``PollForms``: a context per poll, and the polls whose form could not be written
(their answers wait for it).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from loguru import logger

from sync.crm.lookups import fetch_poll_lookups
from sync.crm.push import push_commands
from sync.mapping import FieldMapping
from sync.options import RunOptions
from sync.plan.build import build_poll_plan
from sync.plan.models import PollContext, PollLookups, Programme
from sync.source.models import Poll
from sync.tally import Tally


@dataclass
class PollForms:
    context: dict[int, PollContext] = field(default_factory=dict)
    failed: dict[int, str] = field(default_factory=dict)   # poll id -> why its form is not written
    programmes: list[Programme] | None = None              # read along with the poll look-ups, when asked


def poll_context(payload: dict, item_id: int | None, owner_id: int | None) -> PollContext:
    return PollContext(poll_id=payload["poll_id"], poll_name=payload.get("poll_name", ""),
                       poll_language=payload.get("poll_language", ""), status=payload.get("status", ""),
                       employee_email=payload.get("employee_email", ""), item_id=item_id, owner_id=owner_id or 0)


@dataclass(frozen=True)
class PollQuestions:
    """What the poll stage asks the CRM before planning: the owners, the forms it must read."""

    owner_emails: frozenset[str]
    poll_ids: frozenset[int]
    with_programmes: bool

    def covers(self, other: PollQuestions) -> bool:
        return (other.owner_emails <= self.owner_emails and other.poll_ids <= self.poll_ids
                and self.with_programmes == other.with_programmes)


def _to_push(options: RunOptions, ledger) -> list[tuple[Poll, str, int | None]]:
    return [(Poll.model_validate(r.payload), r.content_hash, r.item_id)
            for r in ledger.polls_to_push(poll_ids=options.poll_ids or None)]


def _questions(todo: list[tuple[Poll, str, int | None]], mapping: FieldMapping,
               with_programmes: bool) -> PollQuestions:
    # A list element is overwritten whole on update, so every form to write is read first;
    # a smart-process item only when the ledger does not know it.
    return PollQuestions(owner_emails=frozenset(p.employee_email for p, _, _ in todo),
                         poll_ids=frozenset(p.poll_id for p, _, item in todo
                                            if item is None or mapping.poll_form.is_list),
                         with_programmes=with_programmes)


def poll_questions(options: RunOptions, *, ledger, mapping: FieldMapping, with_programmes: bool) -> PollQuestions | None:
    """What ``sync_polls`` will ask the CRM, as the ledger stands now (None: no poll form to write)."""
    todo = _to_push(options, ledger)
    return _questions(todo, mapping, with_programmes) if todo else None


def read_poll_lookups(bitrix, mapping: FieldMapping, questions: PollQuestions) -> PollLookups:
    """The CRM's answers to ``questions`` (only reads: safe to run beside anything else)."""
    return fetch_poll_lookups(bitrix, mapping, owner_emails=sorted(questions.owner_emails),
                              poll_ids=sorted(questions.poll_ids), with_programmes=questions.with_programmes)


def sync_polls(options: RunOptions, *, ledger, bitrix, mapping: FieldMapping, tally: Tally,
               with_programmes: bool, read_ahead: tuple[PollQuestions, PollLookups] | None = None) -> PollForms:
    """Write the poll form of every poll that is new or changed; return what the answers need.

    ``read_ahead``: look-ups read earlier in the run (while the answers were pulled), used
    when they asked at least what is to be asked now; otherwise the CRM is asked again.
    """
    forms = PollForms()
    for row in ledger.poll_rows(poll_ids=options.poll_ids or None):
        if row.item_id is not None:
            forms.context[row.poll_id] = poll_context(row.payload, row.item_id, row.assigned_by_id)
    todo = _to_push(options, ledger)
    if not todo:
        return forms
    asked = _questions(todo, mapping, with_programmes)
    if read_ahead is not None and read_ahead[0].covers(asked):
        lookups = read_ahead[1]
    else:
        lookups = read_poll_lookups(bitrix, mapping, asked)
    forms.programmes = lookups.programmes
    plan = build_poll_plan(todo, lookups, mapping)
    polls = {poll.poll_id: poll for poll, _, _ in todo}
    for poll_plan in plan.polls:
        tally.note(poll_plan.problems)
        for p in poll_plan.problems:
            logger.warning("poll {}: {} ({})", poll_plan.poll_id, p.code, p.params)
        forms.context[poll_plan.poll_id] = poll_context(polls[poll_plan.poll_id].model_dump(mode="json"),
                                                        poll_plan.item_id, poll_plan.owner_id)
    if tally.plan is not None:
        tally.plan.polls.extend(plan.polls)
    if options.dry_run:  # the write is where a dry-run stops
        tally.count("poll_forms_to_create", sum(p.action == "create" for p in plan.polls))
        tally.count("poll_forms_to_update", sum(p.action == "update" for p in plan.polls))
        return forms
    results = push_commands(bitrix, plan.commands, batch_size=options.batch_size,
                            concurrency=options.concurrency, stop=options.stop)
    existing = _already_there(bitrix, mapping, plan, results)
    for poll_plan in plan.polls:
        r = results.get(poll_plan.command or "")
        if poll_plan.poll_id in existing:  # created meanwhile (another run, or a lost reply): found, not failed
            tally.count("poll_forms_found")
            ledger.mark_poll_pushed(poll_id=poll_plan.poll_id, item_id=existing[poll_plan.poll_id],
                                    assigned_by_id=poll_plan.owner_id, pushed_hash="",
                                    problems=[p.model_dump() for p in poll_plan.problems])
            forms.context[poll_plan.poll_id].item_id = existing[poll_plan.poll_id]
            poll_plan.item_id = existing[poll_plan.poll_id]
            continue
        if r is None or r.state != "ok":
            error = f"{r.error} {r.description}".strip() if r else "not sent"
            logger.error("poll {}: poll form not written: {}", poll_plan.poll_id, error)
            ledger.mark_poll_failed(poll_id=poll_plan.poll_id, error=error)
            tally.count("poll_forms_failed")
            # Its answers wait: pushed now, their deals would never be linked to the form.
            forms.context.pop(poll_plan.poll_id, None)
            forms.failed[poll_plan.poll_id] = error
            continue
        item_id = r.created_id if poll_plan.action == "create" else poll_plan.item_id
        tally.written("poll_form_add" if poll_plan.action == "create" else "poll_form_update")
        ledger.mark_poll_pushed(poll_id=poll_plan.poll_id, item_id=item_id, assigned_by_id=poll_plan.owner_id,
                                pushed_hash=poll_plan.content_hash,
                                problems=[p.model_dump() for p in poll_plan.problems])
        forms.context[poll_plan.poll_id].item_id = item_id
        poll_plan.item_id = item_id  # the report shows the id the run got
    return forms


def _already_there(bitrix, mapping: FieldMapping, plan, results) -> dict[int, int]:
    """Poll forms whose add was refused because the element code exists: their ids, asked of the CRM.

    The empty ``pushed_hash`` they are marked with makes the next run write the poll's
    content onto the form it found.
    """
    refused = [p.poll_id for p in plan.polls if p.action == "create"
               and getattr(results.get(p.command or ""), "error", "") == "ERROR_ELEMENT_ALREADY_EXISTS"]
    if not refused:
        return {}
    return dict(fetch_poll_lookups(bitrix, mapping, owner_emails=[], poll_ids=refused).items_by_poll)
