"""Planning: a pure function from answers + CRM look-ups + mapping to commands and problems.

Dry-run and the real run share this step; only the real run pushes the commands.
Nothing here does I/O, so every rule is unit-tested without a network.
"""
from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Iterable

from sync.mapping import FieldMapping
from sync.source.models import Answer, Poll
from sync.plan.normalize import clean_text, normalize_email, normalize_phone, normalize_title, phone_digits
from sync.plan.models import (AnswerLookups, AnswerPlan, Command, ContactPlan, CrmContact, DealPlan, Plan,
                              PollContext, PollLookups, PollPlan, Problem, Programme, Ref)

NAME_MAX = 50          # Bitrix24's NAME / LAST_NAME / SECOND_NAME columns
TITLE_MAX = 255        # deal TITLE column
TEXT_MAX = 2000        # UF string fields: generous but bounded
SHOWN_MAX = 200        # what a problem quotes of a respondent's text: enough to recognise it


def _shown(value: Any) -> str:
    """A respondent's value as a problem quotes it: clean, and short even if they typed 10,000 characters."""
    text, truncated = clean_text(value, max_length=SHOWN_MAX)
    return text + "…" if truncated else text


def origin_id(answer_id: int, programme_key: str) -> str:
    """The deal's external key: ``<answer_id>:<programme item id>`` (``0`` when no programme)."""
    return f"{answer_id}:{programme_key}"


@dataclass
class AnswerInput:
    """An answer to plan, with what the ledger remembers of its earlier pushes."""

    answer: Answer
    content_hash: str = ""
    known_deal_ids: dict[str, int] = field(default_factory=dict)


# --- polls -------------------------------------------------------------------------------------

def resolve_owner(email: str, users: PollLookups, mapping: FieldMapping) -> tuple[int, list[Problem]]:
    """The poll owner's user id, or the default responsible user with a warning saying why."""
    default = mapping.default_responsible_user_id
    key = (email or "").strip().lower()
    user = users.users_by_email.get(key)
    if user is None:
        return default, [Problem(code="unknown_owner", severity="warning",
                                 params={"employee_email": email, "default_user_id": default})]
    if not user.active:
        return default, [Problem(code="inactive_owner", severity="warning",
                                 params={"employee_email": email, "user_id": user.id, "default_user_id": default})]
    return user.id, []


def build_poll_plan(polls: Iterable[tuple[Poll, str, int | None]], lookups: PollLookups,
                    mapping: FieldMapping) -> Plan:
    """Plan a poll form per poll: ``(poll, content_hash, known item id)`` → create or update commands."""
    pf = mapping.poll_form
    plan = Plan()
    latest: dict[int, tuple[Poll, str, int | None]] = {}
    known: dict[int, int] = {}
    for poll, content_hash, known_item in polls:  # one poll form per poll: the newest content wins
        seen = latest.get(poll.poll_id)
        if seen is None or poll.updated_at >= seen[0].updated_at:
            latest[poll.poll_id] = (poll, content_hash, known_item)
        if known_item is not None:
            known.setdefault(poll.poll_id, known_item)
    for poll, content_hash, known_item in latest.values():
        known_item = known_item or known.get(poll.poll_id)
        owner_id, problems = resolve_owner(poll.employee_email, lookups, mapping)
        item_id = known_item or lookups.items_by_poll.get(poll.poll_id)
        fields: dict[str, Any] = {pf.title_field: clean_text(poll.poll_name, max_length=TITLE_MAX)[0] or f"Poll {poll.poll_id}",
                                  pf.poll_id_field: poll.poll_id, pf.owner_field: owner_id}
        context = PollContext(poll_id=poll.poll_id, poll_name=poll.poll_name, poll_language=poll.poll_language,
                              status=poll.status, employee_email=poll.employee_email, owner_id=owner_id)
        for code, source in pf.fields.items():
            value = _source_value(source, answer=None, poll=context, mapping=mapping)
            if value is not None:
                fields[code] = value
        if item_id is None:
            name = f"pf_{poll.poll_id}"
            plan.commands.append(Command(name=name, method="crm.item.add", kind="poll_form_add", poll_id=poll.poll_id,
                                         external_key=str(poll.poll_id),
                                         params={"entityTypeId": pf.entity_type_id, "fields": fields}))
            plan.polls.append(PollPlan(poll_id=poll.poll_id, poll_name=poll.poll_name, action="create",
                                       owner_id=owner_id, command=name, problems=problems, content_hash=content_hash))
        else:
            name = f"pu_{poll.poll_id}"
            plan.commands.append(Command(name=name, method="crm.item.update", kind="poll_form_update",
                                         poll_id=poll.poll_id, external_key=str(poll.poll_id),
                                         params={"entityTypeId": pf.entity_type_id, "id": item_id, "fields": fields}))
            plan.polls.append(PollPlan(poll_id=poll.poll_id, poll_name=poll.poll_name, action="update",
                                       item_id=item_id, owner_id=owner_id, command=name, problems=problems,
                                       content_hash=content_hash))
    return plan


# --- programmes --------------------------------------------------------------------------------

class ProgrammeResolver:
    """Chosen name → programme: exact title, then a unique normalised title, then an alias."""

    def __init__(self, programmes: list[Programme], aliases: dict[str, str | int]) -> None:
        self._by_title = {p.title: p for p in programmes}
        self._by_id = {p.id: p for p in programmes}
        self._by_norm: dict[str, list[Programme]] = defaultdict(list)
        for p in programmes:
            self._by_norm[normalize_title(p.title)].append(p)
        self._aliases = {normalize_title(alias): target for alias, target in aliases.items()}

    def resolve(self, name: str) -> tuple[Programme | None, Problem | None]:
        exact = self._by_title.get(name)
        if exact is not None:
            return exact, None
        norm = normalize_title(name)
        candidates = self._by_norm.get(norm, [])
        if len(candidates) == 1:
            return candidates[0], Problem(code="programme_normalised", severity="info",
                                          params={"given": _shown(name), "programme": candidates[0].title})
        if len(candidates) > 1:
            return None, Problem(code="ambiguous_programme", severity="attention",
                                 params={"given": _shown(name), "candidates": sorted(p.title for p in candidates)})
        target = self._aliases.get(norm)
        if target is not None:
            found = self._by_id.get(target) if isinstance(target, int) else self._by_title.get(str(target))
            if found is None and not isinstance(target, int):
                matches = self._by_norm.get(normalize_title(str(target)), [])
                found = matches[0] if len(matches) == 1 else None
            if found is not None:
                return found, Problem(code="programme_alias", severity="info",
                                      params={"given": _shown(name), "programme": found.title})
            return None, Problem(code="alias_target_missing", severity="attention",
                                 params={"given": _shown(name), "target": str(target)})
        return None, Problem(code="unknown_programme", severity="attention", params={"given": _shown(name)})


# --- answers -----------------------------------------------------------------------------------

def _question(answer: Answer, code: str | None) -> Any:
    return answer.value_of(code) if code else None


def _source_value(source: str, *, answer: Answer | None, poll: PollContext, mapping: FieldMapping) -> Any:
    kind, _, arg = source.partition(":")
    if source == "owner":
        return poll.owner_id
    if source == "cookies":
        if answer is None or not answer.cookies:
            return None
        text = "; ".join(f"{k}={v}" for k, v in answer.cookies.items() if v is not None)
        return clean_text(text, max_length=TEXT_MAX)[0] or None
    if kind == "const":
        return arg
    if kind == "poll":
        value = getattr(poll, arg, None)
        return value if value not in ("", None) else None
    if answer is None:
        return None
    if kind == "answer":
        value = getattr(answer, arg)
        return value.isoformat() if hasattr(value, "isoformat") else value
    if kind == "question":
        value = _question(answer, arg)
    elif kind == "utm":
        value = answer.utm.get(arg)
    elif kind == "meta":
        value = answer.meta.get(arg)
    elif kind == "cookie":
        value = answer.cookies.get(arg)
    else:  # pragma: no cover - the mapping model rejects other kinds
        return None
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, list):
        value = ", ".join(str(v) for v in value if v is not None)
    if isinstance(value, dict):
        return None
    text = clean_text(value, max_length=TEXT_MAX)[0]
    return text or None


def _name_part(answer: Answer, code: str | None, what: str, problems: list[Problem]) -> str:
    raw = _question(answer, code)
    if raw is not None and (isinstance(raw, bool) or not isinstance(raw, (str, int, float))):
        problems.append(Problem(code="invalid_value", severity="warning", params={"question": code, "field": what}))
        return ""
    text, truncated = clean_text(raw, max_length=NAME_MAX)
    if truncated:
        problems.append(Problem(code="name_truncated", severity="info", params={"field": what, "max": NAME_MAX}))
    return text


def chosen_programmes(answer: Answer, code: str | None, problems: list[Problem]) -> list[str]:
    raw = _question(answer, code)
    if raw is None:
        return []
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list):
        problems.append(Problem(code="invalid_value", severity="warning",
                                params={"question": code, "field": "programmes"}))
        return []
    names: list[str] = []
    for item in raw:
        if not isinstance(item, (str, int, float)) or isinstance(item, bool):
            problems.append(Problem(code="invalid_value", severity="warning",
                                    params={"question": code, "field": "programmes"}))
            continue
        # Keep inner spacing: an inexact title must resolve by normalisation, and be noted as such.
        text = clean_text(item, collapse_spaces=False)[0]
        if text and text not in names:
            names.append(text)
    return names


def _render_title(template: str, values: dict[str, str]) -> str:
    text = template.format_map(defaultdict(str, values))
    text = " ".join(text.split())
    return re.sub(r"[\s—–:-]+$", "", text)


@dataclass
class _NewContact:
    plan: ContactPlan
    fields: dict[str, Any]
    phones: list[str]


class _AnswerPlanner:
    def __init__(self, *, polls: dict[int, PollContext], lookups: AnswerLookups, mapping: FieldMapping,
                 source_name: str) -> None:
        self.polls = polls
        self.lookups = lookups
        self.mapping = mapping
        self.source_name = source_name
        self.programmes = ProgrammeResolver(lookups.programmes, mapping.programmes.aliases)
        self.plan = Plan()
        self.new_contacts: dict[str, _NewContact] = {}
        self.updates: dict[int, tuple[ContactPlan, dict[str, Any], list[str]]] = {}
        self.reused: dict[str, ContactPlan] = {}
        self.counter = 0

    # contact ---------------------------------------------------------------------------------
    def _contact(self, email: str, answer: Answer, poll: PollContext, names: dict[str, str], phone: str | None,
                 problems: list[Problem]) -> tuple[int | Ref, str | None]:
        """The contact for ``email``: an existing id (maybe with a fill-empty update) or a Ref to a create."""
        cm = self.mapping.contact
        existing = sorted(self.lookups.contacts_by_email.get(email, []), key=lambda c: c.id)
        if existing:
            chosen = existing[0]
            if len(existing) > 1:
                problems.append(Problem(code="duplicate_contacts", severity="info",
                                        params={"contact_ids": [c.id for c in existing], "chosen": chosen.id}))
            self._fill_empty(chosen, answer, names, phone)
            return chosen.id, None
        new = self.new_contacts.get(email)
        if new is None:
            self.counter += 1
            name = f"ca_{self.counter}"
            fields: dict[str, Any] = {"EMAIL": [{"VALUE": email, "VALUE_TYPE": cm.email_value_type}]}
            for code, source in cm.on_create.items():
                value = _source_value(source, answer=answer, poll=poll, mapping=self.mapping)
                if value is not None:
                    fields[code] = value
            new = _NewContact(plan=ContactPlan(email=email, action="create", command=name), fields=fields, phones=[])
            self.new_contacts[email] = new
            self.plan.contacts.append(new.plan)
        for code, key in ((cm.name_field, "first_name"), (cm.last_name_field, "last_name"),
                          (cm.middle_name_field, "middle_name")):
            if names[key] and not new.fields.get(code):
                new.fields[code] = names[key]
        if phone and phone_digits(phone) not in {phone_digits(p) for p in new.phones}:
            new.phones.append(phone)
        new.plan.answer_ids.append(answer.answer_id)
        return Ref(command=new.plan.command), new.plan.command

    def _fill_empty(self, contact: CrmContact, answer: Answer, names: dict[str, str], phone: str | None) -> None:
        cm = self.mapping.contact
        entry = self.updates.get(contact.id)
        if entry is None:
            plan = ContactPlan(email="", action="reuse", contact_id=contact.id)
            entry = (plan, {}, [])
            self.updates[contact.id] = entry
            self.plan.contacts.append(plan)
        plan, fields, phones = entry
        plan.answer_ids.append(answer.answer_id)
        if not plan.email:
            plan.email = contact.emails[0].strip().lower() if contact.emails else ""
        current = {cm.name_field: contact.name, cm.last_name_field: contact.last_name,
                   cm.middle_name_field: contact.second_name}
        for code, key in ((cm.name_field, "first_name"), (cm.last_name_field, "last_name"),
                          (cm.middle_name_field, "middle_name")):
            if names[key] and not (current[code] or "").strip() and code not in fields:
                fields[code] = names[key]
                plan.changes.append(code)
        if phone:
            known = {phone_digits(p) for p in contact.phones} | {phone_digits(p) for p in phones}
            if phone_digits(phone) not in known:
                phones.append(phone)
                plan.changes.append("PHONE")

    # deals -----------------------------------------------------------------------------------
    def _deal_fields(self, answer: Answer, poll: PollContext, names: dict[str, str], contact: int | Ref,
                     programme: Programme | None, problems: list[Problem], *, create: bool) -> tuple[dict, str]:
        dm = self.mapping.deal
        values = {"programme": programme.title if programme else "", "poll_name": poll.poll_name,
                  "answer_id": str(answer.answer_id), "email": "", **names}
        template = dm.title_template if programme else dm.title_without_programme
        title = clean_text(_render_title(template, values), max_length=TITLE_MAX)[0] or f"Answer {answer.answer_id}"
        key = str(programme.id) if programme else "0"
        fields: dict[str, Any] = {"TITLE": title, dm.contact_field: contact,
                                  "ORIGINATOR_ID": self.source_name, "ORIGIN_ID": origin_id(answer.answer_id, key)}
        if create:
            fields["CATEGORY_ID"] = dm.category_id
            fields["STAGE_ID"] = dm.stage_id
            if dm.source_id:
                fields["SOURCE_ID"] = dm.source_id
            fields[dm.owner_field] = poll.owner_id
        if dm.poll_form_link_field and poll.item_id:
            fields[dm.poll_form_link_field] = poll.item_id
        if dm.programme_link_field and programme:
            fields[dm.programme_link_field] = programme.id
        for code, source in dm.fields.items():
            value = _source_value(source, answer=answer, poll=poll, mapping=self.mapping)
            if value is not None:
                fields[code] = value
        for code, enum in dm.enumerations.items():
            raw = _question(answer, enum.question)
            if raw is None or raw == "":
                continue
            text = clean_text(raw)[0] if isinstance(raw, (str, int, float)) else ""
            enum_id = enum.values.get(text)
            if enum_id is None:
                folded = {normalize_title(k): v for k, v in enum.values.items()}
                enum_id = folded.get(normalize_title(text)) if text else None
            if enum_id is None:
                problems.append(Problem(code="unknown_enum_value", severity="warning",
                                        params={"field": code, "value": _shown(text or repr(raw)),
                                                "known": sorted(enum.values)}))
            else:
                fields[code] = enum_id
        return fields, key

    # one answer ------------------------------------------------------------------------------
    def add(self, item: AnswerInput) -> None:
        answer = item.answer
        q = self.mapping.questions
        problems: list[Problem] = []
        result = AnswerPlan(answer_id=answer.answer_id, poll_id=answer.poll_id, content_hash=item.content_hash)
        self.plan.answers.append(result)
        poll = self.polls.get(answer.poll_id)
        raw_email = _question(answer, q.email)
        email, reason = normalize_email(raw_email)
        names = {key: _name_part(answer, getattr(q, key), key, problems)
                 for key in ("first_name", "last_name", "middle_name")}
        result.display_name = " ".join(v for v in (names["last_name"], names["first_name"], names["middle_name"]) if v)
        phone, phone_problem = normalize_phone(_question(answer, q.phone), self.mapping.phone_region)
        result.phone = phone
        result.email = email
        if phone_problem:
            problems.append(Problem(code=phone_problem, severity="warning",
                                    params={"value": clean_text(_question(answer, q.phone), max_length=40)[0]}))
        if reason:
            problems.append(Problem(code=reason, severity="attention",
                                    params={"value": clean_text(raw_email, max_length=80)[0]}))
        if poll is None:
            problems.append(Problem(code="unknown_poll", severity="attention", params={"poll_id": answer.poll_id}))
        for part in answer.ignored:  # set aside when the answer was read (sync.source.models)
            problems.append(Problem(code="invalid_value", severity="warning",
                                    params={"question": part.part, "field": f"{part.part}: {part.got}"}))
        chosen = chosen_programmes(answer, q.programmes, problems)
        resolved: list[Programme] = []
        for name in chosen:
            programme, problem = self.programmes.resolve(name)
            if problem:
                problems.append(problem)
            if programme and programme.id not in {p.id for p in resolved}:
                resolved.append(programme)
        if chosen and not resolved:
            problems.append(Problem(code="all_programmes_unknown", severity="attention",
                                    params={"given": [_shown(name) for name in chosen[:10]]}))
        elif not chosen:
            problems.append(Problem(code="no_programme", severity="info"))
        result.problems = problems  # the same list: problems found below still land on the answer
        if email is None or poll is None or (chosen and not resolved):
            return
        contact, depends = self._contact(email, answer, poll, names, phone, problems)
        result.contact_email = email
        for programme in resolved or [None]:
            key = str(programme.id) if programme else "0"
            oid = origin_id(answer.answer_id, key)
            deal_id = item.known_deal_ids.get(key) or self.lookups.deals_by_origin.get(oid)
            fields, _ = self._deal_fields(answer, poll, names, contact, programme, problems, create=deal_id is None)
            if deal_id is None:
                name = f"da_{answer.answer_id}_{key}"
                command = Command(name=name, method="crm.deal.add", kind="deal_add", answer_ids=[answer.answer_id],
                                  external_key=oid, depends_on=[depends] if depends else [],
                                  params={"fields": fields, "params": {"REGISTER_SONET_EVENT": "N"}})
            else:
                name = f"du_{answer.answer_id}_{key}"
                command = Command(name=name, method="crm.deal.update", kind="deal_update",
                                  answer_ids=[answer.answer_id], external_key=oid,
                                  depends_on=[depends] if depends else [],
                                  params={"id": deal_id, "fields": fields})
            self.plan.commands.append(command)
            result.deals.append(DealPlan(origin_id=oid, programme_key=key, programme_id=programme.id if programme else None,
                                         programme_title=programme.title if programme else None,
                                         action="create" if deal_id is None else "update", deal_id=deal_id,
                                         command=name, title=fields["TITLE"]))

    def finish(self) -> Plan:
        cm = self.mapping.contact
        contact_commands: list[Command] = []
        for email, new in self.new_contacts.items():
            fields = dict(new.fields)
            if new.phones:
                fields["PHONE"] = [{"VALUE": p, "VALUE_TYPE": cm.phone_value_type} for p in new.phones]
            contact_commands.append(Command(name=new.plan.command, method="crm.contact.add", kind="contact_add",
                                            answer_ids=list(new.plan.answer_ids), external_key=email,
                                            params={"fields": fields, "params": {"REGISTER_SONET_EVENT": "N"}}))
        for contact_id, (plan, fields, phones) in self.updates.items():
            if not fields and not phones:
                continue
            body = dict(fields)
            if phones:
                body["PHONE"] = [{"VALUE": p, "VALUE_TYPE": cm.phone_value_type} for p in phones]
            plan.action = "update"
            plan.command = f"cu_{contact_id}"
            contact_commands.append(Command(name=plan.command, method="crm.contact.update", kind="contact_update",
                                            answer_ids=list(plan.answer_ids), external_key=str(contact_id),
                                            params={"id": contact_id, "fields": body,
                                                    "params": {"REGISTER_SONET_EVENT": "N"}}))
        # Dependencies first: a contact's create precedes the deals that reference it.
        self.plan.commands = _order_for_packing(contact_commands, self.plan.commands)
        return self.plan


def _order_for_packing(contacts: list[Command], deals: list[Command]) -> list[Command]:
    """Each new contact immediately followed by its deals, so packing keeps them in one batch."""
    by_dependency: dict[str, list[Command]] = defaultdict(list)
    free: list[Command] = []
    for deal in deals:
        if deal.depends_on:
            by_dependency[deal.depends_on[0]].append(deal)
        else:
            free.append(deal)
    ordered: list[Command] = []
    for contact in contacts:
        ordered.append(contact)
        ordered.extend(by_dependency.pop(contact.name, []))
    for rest in by_dependency.values():  # pragma: no cover - every Ref points at a planned contact
        ordered.extend(rest)
    ordered.extend(free)
    return ordered


def build_answer_plan(answers: Iterable[AnswerInput], *, polls: dict[int, PollContext], lookups: AnswerLookups,
                      mapping: FieldMapping, source_name: str | None = None) -> Plan:
    """Plan contacts and deals for ``answers``; see the module docstring and DESIGN.md."""
    planner = _AnswerPlanner(polls=polls, lookups=lookups, mapping=mapping,
                             source_name=source_name or mapping.source_name)
    latest: dict[int, AnswerInput] = {}
    for item in answers:  # one plan per answer id: the newest content wins
        seen = latest.get(item.answer.answer_id)
        if seen is None or item.answer.updated_at >= seen.answer.updated_at:
            latest[item.answer.answer_id] = item
    for item in sorted(latest.values(), key=lambda i: i.answer.answer_id):
        planner.add(item)
    return planner.finish()
