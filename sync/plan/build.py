"""Planning answers: a pure function from answers + CRM look-ups + mapping to commands and problems.

Dry-run and the real run share this step; only the real run pushes the commands.
Nothing here does I/O, so every rule is unit-tested without a network.

Which deal an answer's programme lands on (``deal.reuse`` in the mapping):

* the deal this answer created (found by ``ORIGINATOR_ID``/``ORIGIN_ID``) follows the
  answer: an edit rewrites the fields the answer owns, clearing what it no longer says;
* ``open``/``any``: otherwise the contact's open (or any) deal for that programme is
  reused — empty fields filled, the UTM group only when all of it is empty, stage,
  owner and a manager's text untouched; two answers of one run share one new deal;
* otherwise a new deal.

Every deal gets the answer's summary once per answer version (``sync.plan.summary``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

from sync.mapping import FieldMapping
from sync.plan.models import (AnswerLookups, AnswerPlan, Command, ContactPlan, CrmContact, CrmDeal, DealPlan, Plan,
                              PollContext, Problem, Programme, Ref)
from sync.plan.normalize import clean_text, normalize_email, normalize_phone, normalize_title, phone_digits
from sync.plan.polls import build_poll_plan, resolve_owner
from sync.plan.programmes import ProgrammeResolver, chosen_programmes
from sync.plan.summary import answer_version, summary_text
from sync.plan.values import NAME_MAX, TITLE_MAX, cut, question, render_title, shown, source_value
from sync.source.models import Answer

__all__ = ["AnswerInput", "ProgrammeResolver", "build_answer_plan", "build_poll_plan", "chosen_programmes",
           "origin_id", "resolve_owner"]


def origin_id(answer_id: int, programme_key: str) -> str:
    """The deal's external key: ``<answer_id>:<programme item id>`` (``0`` when no programme)."""
    return f"{answer_id}:{programme_key}"


@dataclass
class AnswerInput:
    """An answer to plan, with what the ledger remembers of its earlier pushes."""

    answer: Answer
    content_hash: str = ""
    known_deal_ids: dict[str, int] = field(default_factory=dict)
    edited: bool = False     # an earlier version was pushed: its summary says this one is an edit


def _name_part(answer: Answer, code: str | None, what: str, problems: list[Problem]) -> str:
    raw = question(answer, code)
    if raw is not None and (isinstance(raw, bool) or not isinstance(raw, (str, int, float))):
        problems.append(Problem(code="invalid_value", severity="warning", params={"question": code, "field": what}))
        return ""
    text = clean_text(raw)[0]
    return cut(text, field=what, limit=NAME_MAX, problems=problems)


def _empty(value: Any) -> bool:
    if isinstance(value, (list, dict)):
        return not any(v not in (None, "", 0, "0") for v in (value.values() if isinstance(value, dict) else value))
    return value in (None, "", 0, "0")


@dataclass
class _NewContact:
    plan: ContactPlan
    fields: dict[str, Any]
    phones: list[str]


@dataclass
class _Target:
    """Where one programme of an answer lands."""

    action: str                      # create | own | reuse | shared (a deal this plan creates for another answer)
    deal: CrmDeal | None = None
    deal_id: int | None = None
    command: Command | None = None   # for "shared": the create command of the deal


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
        self.counter = 0
        self.deal_commands: list[Command] = []
        self.summary_commands: list[Command] = []
        self.deal_updates: dict[int, Command] = {}                # one update per existing deal in a plan
        self.new_deals: dict[tuple[str, str], Command] = {}       # (contact, programme key) → its create
        self._versions: dict[int, str] = {}
        self._summaries: dict[tuple[int, bool], str] = {}
        self._owned: dict[int, dict[str, Any]] = {}

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
            return chosen.id, self._fill_empty(chosen, answer, names, phone)
        new = self.new_contacts.get(email)
        if new is None:
            self.counter += 1
            name = f"ca_{self.counter}"
            fields: dict[str, Any] = {"EMAIL": [{"VALUE": email, "VALUE_TYPE": cm.email_value_type}]}
            for code, source in cm.on_create.items():
                value = source_value(source, answer=answer, poll=poll, mapping=self.mapping)
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

    def _fill_empty(self, contact: CrmContact, answer: Answer, names: dict[str, str], phone: str | None) -> str:
        """Plan the fill-in of an existing contact's empty fields; returns its command name (it may stay empty)."""
        cm = self.mapping.contact
        entry = self.updates.get(contact.id)
        if entry is None:
            plan = ContactPlan(email="", action="reuse", contact_id=contact.id, command=f"cu_{contact.id}")
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
        return plan.command or ""

    # deals -----------------------------------------------------------------------------------
    def _target(self, item: AnswerInput, contact: int | Ref, programme: Programme | None, key: str) -> _Target:
        answer, dm = item.answer, self.mapping.deal
        oid = origin_id(answer.answer_id, key)
        own_id = self.lookups.deals_by_origin.get(oid)
        if own_id is None and item.known_deal_ids.get(key) in self.lookups.deals:
            own_id = item.known_deal_ids[key]
        if own_id is None:
            # A deal the ledger saw this answer land on, not found by its key nor by its id (asked
            # by id when deals are reused): deleted in the CRM. Its update fails as deleted_in_crm
            # for a person to decide; a new deal in its place would undo the manager's delete.
            own_id = item.known_deal_ids.get(key)
        if own_id is not None:
            deal = self.lookups.deals.get(own_id)
            mine = deal is None or (deal.origin_id == oid and deal.originator_id == self.source_name)
            return _Target("own" if mine else "reuse", deal=deal, deal_id=own_id)
        contact_key = f"id:{contact}" if isinstance(contact, int) else f"ref:{contact.command}"
        if dm.reuse != "never":
            programme_id = programme.id if programme else None
            if isinstance(contact, int):
                for deal_id in self.lookups.deals_by_contact.get(contact, []):
                    deal = self.lookups.deals[deal_id]
                    if deal.programme_id == programme_id and (deal.open or dm.reuse == "any"):
                        return _Target("reuse", deal=deal, deal_id=deal.id)
            shared = self.new_deals.get((contact_key, key))
            if shared is not None:
                return _Target("shared", command=shared)
        return _Target("create")

    def _owned_fields(self, answer: Answer, poll: PollContext, problems: list[Problem]) -> dict[str, Any]:
        """Every field the answer owns, ``None`` where this version has no value.

        The same on each of the answer's deals: built (and its problems noted) once, read-only after.
        """
        fields = self._owned.get(answer.answer_id)
        if fields is None:
            fields = self._owned[answer.answer_id] = self._owned_fields_of(answer, poll, problems)
        return fields

    def _owned_fields_of(self, answer: Answer, poll: PollContext, problems: list[Problem]) -> dict[str, Any]:
        dm = self.mapping.deal
        fields: dict[str, Any] = {}
        for code, source in dm.fields.items():
            fields[code] = source_value(source, answer=answer, poll=poll, mapping=self.mapping)
        for code, enum in dm.enumerations.items():
            raw = question(answer, enum.question)
            fields[code] = None
            if raw is None or raw == "":
                continue
            text = clean_text(raw)[0] if isinstance(raw, (str, int, float)) else ""
            enum_id = enum.values.get(text)
            if enum_id is None:
                folded = {normalize_title(k): v for k, v in enum.values.items()}
                enum_id = folded.get(normalize_title(text)) if text else None
            if enum_id is None:
                problems.append(Problem(code="unknown_enum_value", severity="warning",
                                        params={"field": code, "value": shown(text or repr(raw)),
                                                "known": sorted(enum.values)}))
            else:
                fields[code] = enum_id
        return fields

    def _title(self, answer: Answer, poll: PollContext, names: dict[str, str], programme: Programme | None,
               problems: list[Problem]) -> str:
        dm = self.mapping.deal
        values = {"programme": programme.title if programme else "", "poll_name": poll.poll_name,
                  "answer_id": str(answer.answer_id), "email": "", **names}
        template = dm.title_template if programme else dm.title_without_programme
        title = cut(clean_text(render_title(template, values))[0], field="TITLE", limit=TITLE_MAX, problems=problems)
        return title or f"Answer {answer.answer_id}"

    def _fill_only(self, deal: CrmDeal | None, owned: dict[str, Any], programme: Programme | None) -> dict[str, Any]:
        """What a reused deal gets: empty fields filled; the UTM group only when all of it is empty."""
        dm = self.mapping.deal
        current = deal.fields if deal is not None else {}
        group = dm.attribution_fields
        fields = {code: value for code, value in owned.items()
                  if code not in group and value is not None and _empty(current.get(code))}
        if group and all(_empty(current.get(code)) for code in group):
            fields.update({code: owned[code] for code in group if owned.get(code) is not None})
        if dm.programme_link_field and programme and deal is not None and deal.programme_id is None:
            fields[dm.programme_link_field] = programme.id
        return fields

    def _deal(self, item: AnswerInput, poll: PollContext, names: dict[str, str], contact: int | Ref,
              depends: str | None, programme: Programme | None, problems: list[Problem]) -> DealPlan:
        answer, dm = item.answer, self.mapping.deal
        key = str(programme.id) if programme else "0"
        oid = origin_id(answer.answer_id, key)
        target = self._target(item, contact, programme, key)
        owned = self._owned_fields(answer, poll, problems)
        title = self._title(answer, poll, names, programme, problems)
        summary = self._summary(item, poll, target)
        if target.action == "create":
            fields: dict[str, Any] = {"TITLE": title, dm.contact_field: contact, "ORIGINATOR_ID": self.source_name,
                                      "ORIGIN_ID": oid, "CATEGORY_ID": dm.category_id, "STAGE_ID": dm.stage_id,
                                      dm.owner_field: poll.owner_id}
            if dm.source_id:
                fields["SOURCE_ID"] = dm.source_id
            if dm.poll_form_link_field and poll.item_id:
                fields[dm.poll_form_link_field] = poll.item_id
            if dm.programme_link_field and programme:
                fields[dm.programme_link_field] = programme.id
            fields.update({code: value for code, value in owned.items() if value is not None})
            if summary and dm.summary.to == "comments":
                fields["COMMENTS"] = summary
            name = f"da_{answer.answer_id}_{key}"
            command = Command(name=name, method="crm.deal.add", kind="deal_add", answer_ids=[answer.answer_id],
                              external_key=oid, depends_on=[depends] if depends and isinstance(contact, Ref) else [],
                              params={"fields": fields, "params": {"REGISTER_SONET_EVENT": "N"}})
            self.deal_commands.append(command)
            contact_key = f"id:{contact}" if isinstance(contact, int) else f"ref:{contact.command}"
            self.new_deals[(contact_key, key)] = command
            if summary and dm.summary.to == "timeline":
                self._add_summary(answer, Ref(command=name), summary, depends_on=name)
            return DealPlan(origin_id=oid, programme_key=key, programme_id=programme.id if programme else None,
                            programme_title=programme.title if programme else None, action="create",
                            command=name, title=title)
        if target.action == "shared":
            command = target.command
            body = command.params["fields"]
            for code, value in self._fill_only(None, owned, programme).items():
                if _empty(body.get(code)) and (code not in dm.attribution_fields or
                                               all(_empty(body.get(c)) for c in dm.attribution_fields)):
                    body[code] = value
            command.answer_ids.append(answer.answer_id)
            if summary:
                if dm.summary.to == "comments":
                    body["COMMENTS"] = (body.get("COMMENTS", "") + "\n\n" + summary).strip()
                else:
                    self._add_summary(answer, Ref(command=command.name), summary, depends_on=command.name)
            return DealPlan(origin_id=oid, programme_key=key, programme_id=programme.id if programme else None,
                            programme_title=programme.title if programme else None, action="reuse",
                            command=command.name, title=body.get("TITLE", title))
        # An existing deal: the answer's own (rewritten) or someone else's (filled).
        deal_id = target.deal_id
        if target.action == "own":
            fields = {"TITLE": title, **{c: ("" if v is None else v) for c, v in owned.items()}}
            if dm.programme_link_field and programme:
                fields[dm.programme_link_field] = programme.id
            if dm.poll_form_link_field and poll.item_id:
                fields[dm.poll_form_link_field] = poll.item_id
            # CONTACT_ID only when it changed: re-sent, it can drop contacts a manager linked. A contact
            # this plan creates is always a change: the deal has none, or a wrong one from a failed chain.
            if target.deal is None or isinstance(contact, Ref) or target.deal.contact_id != contact:
                fields[dm.contact_field] = contact
        else:
            fields = self._fill_only(target.deal, owned, programme)
        if summary and dm.summary.to == "comments":
            existing = target.deal.fields.get("COMMENTS", "") if target.deal else ""
            fields["COMMENTS"] = (str(existing or "") + "\n\n" + summary).strip()
        action = "update" if target.action == "own" else "reuse"
        command = self.deal_updates.get(deal_id)
        if command is None and fields:
            name = f"du_{deal_id}"
            command = Command(name=name, method="crm.deal.update", kind="deal_update", answer_ids=[],
                              external_key=oid, depends_on=[depends] if depends and isinstance(contact, Ref) else [],
                              params={"id": deal_id, "fields": fields, "params": {"REGISTER_SONET_EVENT": "N"}})
            self.deal_updates[deal_id] = command
            self.deal_commands.append(command)
        elif command is not None:
            body = command.params["fields"]
            for code, value in fields.items():
                if code == "COMMENTS":
                    body["COMMENTS"] = (body.get("COMMENTS", "") + "\n\n" + summary).strip()
                elif _empty(body.get(code)):
                    body[code] = value
        if command is not None:
            command.answer_ids.append(answer.answer_id)
        if summary and dm.summary.to == "timeline":
            self._add_summary(answer, deal_id, summary, depends_on=None)
        return DealPlan(origin_id=oid, programme_key=key, programme_id=programme.id if programme else None,
                        programme_title=programme.title if programme else None, action=action, deal_id=deal_id,
                        command=command.name if command is not None else "", title=title)

    def _summary(self, item: AnswerInput, poll: PollContext, target: _Target) -> str | None:
        """The summary to write on the target deal, or None when it carries this version already."""
        if self.mapping.deal.summary.to == "off":
            return None
        answer_id = item.answer.answer_id
        version = self._versions.get(answer_id)
        if version is None:
            version = self._versions[answer_id] = answer_version(item.answer)
        if target.deal is not None and f"{answer_id}:{version}" in target.deal.summaries:
            return None
        edited = item.edited or (target.deal is not None and any(
            s.startswith(f"{answer_id}:") for s in target.deal.summaries))
        key = (answer_id, edited)
        text = self._summaries.get(key)  # the same text on each of the answer's deals: built once
        if text is None:
            text = self._summaries[key] = summary_text(item.answer, poll, self.mapping, version=version,
                                                       edited=edited)
        return text

    def _add_summary(self, answer: Answer, deal: int | Ref, text: str, *, depends_on: str | None) -> None:
        target = deal.command if isinstance(deal, Ref) else str(deal)
        name = f"sm_{answer.answer_id}_{target}"
        self.summary_commands.append(Command(
            name=name, method="crm.timeline.comment.add", kind="summary_add", answer_ids=[answer.answer_id],
            external_key=f"{answer.answer_id}:{target}", depends_on=[depends_on] if depends_on else [],
            params={"fields": {"ENTITY_ID": deal, "ENTITY_TYPE": "deal", "COMMENT": text}}))

    # one answer ------------------------------------------------------------------------------
    def add(self, item: AnswerInput) -> None:
        answer = item.answer
        q = self.mapping.questions
        problems: list[Problem] = []
        result = AnswerPlan(answer_id=answer.answer_id, poll_id=answer.poll_id, content_hash=item.content_hash)
        self.plan.answers.append(result)
        poll = self.polls.get(answer.poll_id)
        raw_email = question(answer, q.email)
        email, reason = normalize_email(raw_email)
        names = {key: _name_part(answer, getattr(q, key), key, problems)
                 for key in ("first_name", "last_name", "middle_name")}
        result.display_name = " ".join(v for v in (names["last_name"], names["first_name"], names["middle_name"]) if v)
        phone, phone_problem = normalize_phone(question(answer, q.phone), self.mapping.phone_region)
        result.phone = phone
        result.email = email
        if phone_problem:
            problems.append(Problem(code=phone_problem, severity="warning",
                                    params={"value": clean_text(question(answer, q.phone), max_length=40)[0]}))
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
            programme, found = self.programmes.resolve_all(name)
            problems.extend(found)
            if programme and programme.id not in {p.id for p in resolved}:
                resolved.append(programme)
        if chosen and not resolved:
            problems.append(Problem(code="all_programmes_unknown", severity="attention",
                                    params={"given": [shown(name) for name in chosen[:10]]}))
        elif not chosen:
            problems.append(Problem(code="no_programme", severity="info"))
        result.problems = problems  # the same list: problems found below still land on the answer
        if email is None or poll is None or (chosen and not resolved):
            return
        contact, depends = self._contact(email, answer, poll, names, phone, problems)
        result.contact_email = email
        for programme in resolved or [None]:
            result.deals.append(self._deal(item, poll, names, contact, depends, programme, problems))

    def finish(self) -> Plan:
        cm = self.mapping.contact
        contact_commands: list[Command] = []
        for email, new in self.new_contacts.items():
            fields = dict(new.fields)
            for code, text in cm.placeholders.items():
                if not fields.get(code):
                    fields[code] = text
            if new.phones:
                fields["PHONE"] = [{"VALUE": p, "VALUE_TYPE": cm.phone_value_type} for p in new.phones]
            contact_commands.append(Command(name=new.plan.command, method="crm.contact.add", kind="contact_add",
                                            answer_ids=list(new.plan.answer_ids), external_key=email,
                                            params={"fields": fields, "params": {"REGISTER_SONET_EVENT": "N"}}))
        for contact_id, (plan, fields, phones) in self.updates.items():
            if not fields and not phones:
                plan.command = None
                continue
            body = dict(fields)
            if phones:
                body["PHONE"] = [{"VALUE": p, "VALUE_TYPE": cm.phone_value_type} for p in phones]
            plan.action = "update"
            contact_commands.append(Command(name=plan.command, method="crm.contact.update", kind="contact_update",
                                            answer_ids=list(plan.answer_ids), external_key=str(contact_id),
                                            params={"id": contact_id, "fields": body,
                                                    "params": {"REGISTER_SONET_EVENT": "N"}}))
        # Dependencies first: a contact's create precedes its deals, a deal's create its summaries.
        self.plan.commands = _order_for_packing(contact_commands, self.deal_commands + self.summary_commands)
        return self.plan


def _order_for_packing(contacts: list[Command], rest: list[Command]) -> list[Command]:
    """Each command right after the command it depends on, so packing keeps them in one batch."""
    by_dependency: dict[str, list[Command]] = {}
    free: list[Command] = []
    for command in rest:
        if command.depends_on:
            by_dependency.setdefault(command.depends_on[0], []).append(command)
        else:
            free.append(command)
    ordered: list[Command] = []

    def place(command: Command) -> None:
        ordered.append(command)
        for child in by_dependency.pop(command.name, []):
            place(child)

    for command in contacts + free:
        place(command)
    for children in list(by_dependency.values()):  # pragma: no cover - every dependency is a planned command
        ordered.extend(children)
    return ordered


def build_answer_plan(answers: Iterable[AnswerInput], *, polls: dict[int, PollContext], lookups: AnswerLookups,
                      mapping: FieldMapping, source_name: str | None = None) -> Plan:
    """Plan contacts, deals and summaries for ``answers``; see the module docstring and DESIGN.md."""
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
