"""Reads from Bitrix24 that the planner needs, made in as few ``batch`` calls as possible.

Each function builds its read commands, sends them 50 to a call, and returns plain
look-up models (``sync.plan.models``). Reads are idempotent, so the client retries them.
Replies are read by ``sync.crm.reads`` (batched, paged, shape-tolerant).
"""
from __future__ import annotations

from typing import Any, Iterable

from core.iterables import chunks
from sync.clients import rows
from sync.crm.deal_lookups import deal_commands, fetch_summaries, read_deals
from sync.crm.reads import (FINDBYCOMM_VALUES, LIST_PAGE, ReadClient, _id, _multi_values, _skipped, _text,
                            read_commands)
from sync.mapping import FieldMapping
from sync.plan.normalize import email_identity, match_key_email
from sync.plan.models import AnswerLookups, CrmContact, CrmUser, PollLookups, Programme

def _programmes_command(mapping: FieldMapping) -> tuple[str, dict]:
    pm = mapping.programmes
    if pm.is_list:
        return "lists.element.get", {**pm.list_params(), "ELEMENT_ORDER": {"ID": "ASC"}}
    return "crm.item.list", {"entityTypeId": pm.entity_type_id, "select": ["id", pm.title_field],
                             "order": {"id": "ASC"}}


def fetch_programmes(client: ReadClient, mapping: FieldMapping) -> list[Programme]:
    method, params = _programmes_command(mapping)
    return _programmes_from(list(client.list_all(method, params)), mapping)


def _property_values(value: Any) -> list[str]:
    """A list element's property: ``{"<value id>": "v"}``, a list, or a plain value → its values as text."""
    if isinstance(value, dict):
        return [_text(v) for v in value.values()]
    if isinstance(value, list):
        return [_text(v) for v in value]
    return [_text(value)] if value not in (None, "") else []


def _programmes_from(found: list, mapping: FieldMapping) -> list[Programme]:
    pm = mapping.programmes
    method = "lists.element.get (programmes)" if pm.is_list else "crm.item.list (programmes)"
    programmes = []
    for row in rows(method, found):
        item_id = _id(row.get("id", row.get("ID")))
        if item_id is None:
            _skipped(method, row)
            continue
        active = True
        if pm.status_field and pm.active_values:
            active = bool(set(_property_values(row.get(pm.status_field))) & set(pm.active_values))
        programmes.append(Programme(id=item_id, title=_text(row.get(pm.title_field)), active=active))
    return programmes


def fetch_poll_lookups(client: ReadClient, mapping: FieldMapping, *, owner_emails: Iterable[str],
                       poll_ids: Iterable[int], with_programmes: bool = False) -> PollLookups:
    """Users for the polls' owners and existing poll-form items for polls not known in the ledger.

    ``with_programmes`` reads the programmes in the same batch (one request less per run).
    """
    pf = mapping.poll_form
    commands: dict[str, tuple[str, dict]] = {}
    emails = sorted({match_key_email(e) for e in owner_emails if e and e.strip()})
    for i, email in enumerate(emails):
        commands[f"user_{i}"] = ("user.get", {"FILTER": {"EMAIL": email}})
    poll_ids = sorted(set(poll_ids))
    for i, group in enumerate(chunks(poll_ids, LIST_PAGE)):
        if pf.is_list:  # the element's code is the poll id: unique in the list, a natural key
            commands[f"pf_{i}"] = ("lists.element.get", {**pf.list_params(),
                                                         "FILTER": {"=CODE": [str(p) for p in group]}})
        else:
            commands[f"pf_{i}"] = ("crm.item.list", {"entityTypeId": pf.entity_type_id,
                                                     "filter": {f"@{pf.poll_id_field}": list(group)},
                                                     "select": ["id", pf.poll_id_field], "order": {"id": "ASC"}})
    if with_programmes:
        commands["programmes"] = _programmes_command(mapping)
    pages = read_commands(client, commands) if commands else {}
    lookups = PollLookups()
    if with_programmes:
        key = None if mapping.programmes.is_list else "items"
        found = [row for page in pages.get("programmes", []) for row in rows("programmes", page, key=key)]
        lookups.programmes = _programmes_from(found, mapping)
    for i, email in enumerate(emails):
        for page in pages.get(f"user_{i}", []):
            for row in rows("user.get", page):
                if match_key_email(_text(row.get("EMAIL"))) != email:
                    continue
                user_id = _id(row.get("ID"))
                if user_id is None:
                    _skipped("user.get", row)
                    continue
                user = CrmUser(id=user_id, email=email, active=row.get("ACTIVE") in (True, "Y", "1", 1))
                known = lookups.users_by_email.get(email)
                if known is None or (user.active and not known.active):
                    lookups.users_by_email[email] = user
    for name, result_pages in pages.items():
        if not name.startswith("pf_"):
            continue
        for page in result_pages:
            for row in rows("poll forms", page, key=None if pf.is_list else "items"):
                if pf.is_list:
                    poll_id = _id(row.get("CODE")) or _id(_first_value(row.get(pf.poll_id_field)))
                else:
                    poll_id = _id(row.get(pf.poll_id_field))
                item_id = _id(row.get("id", row.get("ID")))
                if poll_id is None:
                    continue
                if item_id is None:
                    _skipped("poll forms", row)
                    continue
                if poll_id not in lookups.items_by_poll or item_id < lookups.items_by_poll[poll_id]:
                    lookups.items_by_poll[poll_id] = item_id
                    if pf.is_list:
                        lookups.elements_by_poll[poll_id] = row
    return lookups


def _first_value(value: Any) -> Any:
    values = _property_values(value)
    return values[0] if values else None


def fetch_answer_lookups(client: ReadClient, mapping: FieldMapping, *, emails: Iterable[str],
                         origin_ids: Iterable[str], source_name: str,
                         programmes: list[Programme], concurrency: int = 1,
                         deal_ids: Iterable[int] = ()) -> AnswerLookups:
    """Existing contacts for ``emails`` (with their fields) and the deals that may already exist.

    Deals are asked of the CRM by their external keys (``origin_ids``) and, when the mapping
    reuses deals, by the contacts found; then the summaries those deals already carry.
    Three rounds at most, each one ``batch`` per 50 commands.
    """
    # Asked in the portal's folding (ASCII only), matched in the job's (every letter): an
    # address typed "Пётр@x.ru" is asked as typed and as stored by the job ("пётр@x.ru").
    emails = [e for e in emails if isinstance(e, str) and e.strip()]
    wanted_emails = {email_identity(e) for e in emails}
    keys = sorted({match_key_email(e) for e in emails} | {match_key_email(e) for e in wanted_emails})
    commands: dict[str, tuple[str, dict]] = {}
    for i, group in enumerate(chunks(keys, FINDBYCOMM_VALUES)):
        commands[f"dup_{i}"] = ("crm.duplicate.findbycomm", {"type": "EMAIL", "values": list(group),
                                                             "entity_type": "CONTACT"})
    origin_ids = sorted(set(origin_ids))
    commands.update(deal_commands(mapping, contact_ids=[], origin_ids=origin_ids, source_name=source_name,
                                  deal_ids=deal_ids))
    pages = read_commands(client, commands, concurrency=concurrency) if commands else {}
    contact_ids: set[int] = set()
    for name, result_pages in pages.items():
        if not name.startswith("dup_"):
            continue
        for page in result_pages:
            found = (page.get("CONTACT") or []) if isinstance(page, dict) else []
            for value in found.values() if isinstance(found, dict) else found if isinstance(found, list) else []:
                if _id(value) is not None:
                    contact_ids.add(_id(value))
    deals = read_deals(pages, mapping)
    contacts, by_contact = fetch_contacts(client, sorted(contact_ids), concurrency=concurrency,
                                          mapping=mapping, source_name=source_name)
    deals.update(by_contact)
    fetch_summaries(client, mapping, deals, concurrency=concurrency)
    by_email: dict[str, list[CrmContact]] = {}
    for contact in contacts:
        for value in {email_identity(e) for e in contact.emails}:
            if value in wanted_emails:
                by_email.setdefault(value, []).append(contact)
    wanted = set(origin_ids)
    deals_by_origin: dict[str, int] = {}
    deals_by_contact: dict[int, list[int]] = {}
    for deal in sorted(deals.values(), key=lambda d: d.id):
        if deal.originator_id in (source_name, "") and deal.origin_id in wanted:
            deals_by_origin.setdefault(deal.origin_id, deal.id)
        if deal.contact_id is not None:
            deals_by_contact.setdefault(deal.contact_id, []).append(deal.id)
    return AnswerLookups(programmes=programmes, contacts_by_email=by_email, deals_by_origin=deals_by_origin,
                         deals=deals, deals_by_contact=deals_by_contact)


def fetch_contacts(client: ReadClient, ids: list[int], *, concurrency: int = 1, mapping: FieldMapping | None = None,
                   source_name: str = "") -> tuple[list[CrmContact], dict]:
    """The contacts ``ids`` with their fields, and (when ``mapping`` reuses deals) their deals, in one round."""
    if not ids:
        return [], {}
    commands = {f"ct_{i}": ("crm.contact.list", {"filter": {"@ID": list(group)},
                                                 "select": ["ID", "NAME", "LAST_NAME", "SECOND_NAME", "EMAIL", "PHONE"],
                                                 "order": {"ID": "ASC"}})
                for i, group in enumerate(chunks(ids, LIST_PAGE))}
    if mapping is not None:
        commands.update(deal_commands(mapping, contact_ids=ids, origin_ids=[], source_name=source_name))
    found: dict[int, CrmContact] = {}
    pages = read_commands(client, commands, concurrency=concurrency)
    deals = read_deals(pages, mapping) if mapping is not None else {}
    for name, result_pages in pages.items():
        if not name.startswith("ct_"):
            continue
        for page in result_pages:
            for row in rows("crm.contact.list", page):
                contact_id = _id(row.get("ID"))
                if contact_id is None:
                    _skipped("crm.contact.list", row)
                    continue
                found[contact_id] = CrmContact(
                    id=contact_id, name=_text(row.get("NAME")), last_name=_text(row.get("LAST_NAME")),
                    second_name=_text(row.get("SECOND_NAME")), emails=_multi_values(row.get("EMAIL")),
                    phones=_multi_values(row.get("PHONE")))
    return [found[i] for i in sorted(found)], deals
