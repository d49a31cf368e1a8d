"""Poll forms: one per poll, in a smart process (``crm.item.*``) or a universal list (``lists.element.*``)."""
from __future__ import annotations

from typing import Any, Iterable

from sync.mapping import FieldMapping
from sync.plan.models import Command, Plan, PollContext, PollLookups, PollPlan, Problem
from sync.plan.normalize import clean_text, match_key_email
from sync.plan.values import TITLE_MAX, cut, source_value
from sync.source.models import Poll


def resolve_owner(email: str, users: PollLookups, mapping: FieldMapping) -> tuple[int, list[Problem]]:
    """The poll owner's user id, or the default responsible user with a warning saying why."""
    default = mapping.default_responsible_user_id
    key = match_key_email(email or "")  # the key fetch_poll_lookups files users under
    user = users.users_by_email.get(key)
    if user is None:
        return default, [Problem(code="unknown_owner", severity="warning",
                                 params={"employee_email": email, "default_user_id": default})]
    if not user.active:
        return default, [Problem(code="inactive_owner", severity="warning",
                                 params={"employee_email": email, "user_id": user.id, "default_user_id": default})]
    return user.id, []


def _element_fields(element: dict[str, Any] | None) -> dict[str, Any]:
    """A list element's current properties as ``lists.element.update`` takes them back."""
    out: dict[str, Any] = {}
    for key, value in (element or {}).items():
        if not key.startswith("PROPERTY_"):
            continue
        values = list(value.values()) if isinstance(value, dict) else value if isinstance(value, list) else [value]
        values = [v for v in values if v not in (None, "")]
        if values:
            out[key] = values[0] if len(values) == 1 else values
    return out


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
        owner_id, problems = resolve_owner(poll.employee_email, lookups, mapping)
        if poll.status == "unregistered":  # answers named it, the portal never registered it
            problems = [Problem(code="unregistered_poll", severity="warning",
                                params={"poll_id": poll.poll_id, "default_user_id": owner_id})]
        # The CRM first: a form found by its poll id is the form, whatever the ledger remembers.
        item_id = lookups.items_by_poll.get(poll.poll_id) or known_item or known.get(poll.poll_id)
        title = cut(clean_text(poll.poll_name)[0], field=pf.title_field, limit=TITLE_MAX, problems=problems)
        fields: dict[str, Any] = {pf.title_field: title or f"Poll {poll.poll_id}",
                                  pf.poll_id_field: str(poll.poll_id) if pf.is_list else poll.poll_id,
                                  pf.owner_field: owner_id}
        if pf.url_field and pf.url_template:
            fields[pf.url_field] = pf.url_template.format(poll_id=poll.poll_id)
        context = PollContext(poll_id=poll.poll_id, poll_name=poll.poll_name, poll_language=poll.poll_language,
                              status=poll.status, employee_email=poll.employee_email, owner_id=owner_id)
        for code, source in pf.fields.items():
            value = source_value(source, answer=None, poll=context, mapping=mapping)
            if value is not None:
                fields[code] = value
        action = "create" if item_id is None else "update"
        name = f"{'pf' if action == 'create' else 'pu'}_{poll.poll_id}"
        kind = "poll_form_add" if action == "create" else "poll_form_update"
        if pf.is_list:
            # lists.element.update overwrites the whole element: what it holds besides ours is sent back.
            body = {**_element_fields(lookups.elements_by_poll.get(poll.poll_id)), **fields}
            params = {**pf.list_params(), "ELEMENT_CODE": str(poll.poll_id), "FIELDS": body}
            if item_id is not None:
                params["ELEMENT_ID"] = item_id
            method = "lists.element.add" if action == "create" else "lists.element.update"
        else:
            params = {"entityTypeId": pf.entity_type_id, "fields": fields}
            if item_id is not None:
                params["id"] = item_id
            method = "crm.item.add" if action == "create" else "crm.item.update"
        plan.commands.append(Command(name=name, method=method, kind=kind, poll_id=poll.poll_id,
                                     external_key=str(poll.poll_id), params=params))
        plan.polls.append(PollPlan(poll_id=poll.poll_id, poll_name=poll.poll_name, action=action, item_id=item_id,
                                   owner_id=owner_id, command=name, problems=problems, content_hash=content_hash))
    return plan
