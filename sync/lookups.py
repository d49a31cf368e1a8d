"""Reads from Bitrix24 that the planner needs, made in as few ``batch`` calls as possible.

Each function builds its read commands, sends them 50 to a call, and returns plain
look-up models (``sync.plan_models``). Reads are idempotent, so the client retries them.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any, Iterable, Protocol

from loguru import logger

from sync.errors import RetriableError
from sync.mapping import FieldMapping
from sync.normalize import match_key_email
from sync.plan_models import AnswerLookups, CrmContact, CrmUser, PollLookups, Programme

FINDBYCOMM_VALUES = 20   # crm.duplicate.findbycomm takes at most 20 values
LIST_PAGE = 50           # every *.list page holds 50 rows
READ_ROUNDS = 4          # a read command failing inside a batch is re-sent this many times


class ReadClient(Protocol):
    def batch(self, commands: dict[str, tuple[str, dict]], *, halt: bool = False, idempotent: bool) -> Any: ...
    def list_all(self, method: str, params: dict | None = None, **kwargs) -> Iterable[dict]: ...


def chunks(items: list, size: int) -> Iterable[list]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def read_commands(client: ReadClient, commands: dict[str, tuple[str, dict]], *,
                  concurrency: int = 1) -> dict[str, Any]:
    """Run read commands 50 to a batch; a list command with more pages is followed to its end.

    Returns ``name → list of results`` (one per page). A command that keeps failing
    raises ``RetriableError``: planning on partial look-ups could duplicate records.
    """
    pending = dict(commands)
    pages: dict[str, list[Any]] = {name: [] for name in commands}
    failures: dict[str, str] = {}
    rounds = 0
    while pending:
        rounds += 1
        if rounds > READ_ROUNDS + 20:  # pragma: no cover - only a server that pages forever gets here
            raise RetriableError("Bitrix24 kept paging a look-up; giving up this run", system="bitrix24")
        follow: dict[str, tuple[str, dict]] = {}
        groups = list(chunks(list(pending), 50))
        if concurrency > 1 and len(groups) > 1:
            with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="lookup") as pool:
                replies = list(pool.map(lambda g: client.batch({n: pending[n] for n in g}, halt=False,
                                                               idempotent=True), groups))
        else:
            replies = [client.batch({n: pending[n] for n in g}, halt=False, idempotent=True) for g in groups]
        for group, reply in zip(groups, replies):
            outcomes = getattr(reply, "outcomes", reply)
            for name in group:
                outcome = outcomes.get(name)
                base = name.split("~")[0]
                if outcome is None or not outcome.ok:
                    reason = f"{getattr(outcome, 'error', '')} {getattr(outcome, 'error_description', '')}".strip()
                    failures[name] = failures.get(name, "") + "|"
                    if failures[name].count("|") > READ_ROUNDS:
                        raise RetriableError(f"Bitrix24 look-up {pending[name][0]} keeps failing ({reason or 'no reply'})",
                                             system="bitrix24", code=getattr(outcome, "error", "") or "")
                    logger.debug("look-up {} failed ({}), will retry", name, reason)
                    follow[name] = pending[name]
                    continue
                pages[base].append(outcome.result)
                nxt = getattr(outcome, "next", None)
                if nxt:
                    method, params = pending[name]
                    follow[f"{base}~{nxt}"] = (method, {**params, "start": nxt})
        pending = follow
    return pages


def fetch_programmes(client: ReadClient, mapping: FieldMapping) -> list[Programme]:
    pm = mapping.programmes
    rows = client.list_all("crm.item.list", {"entityTypeId": pm.entity_type_id, "select": ["id", pm.title_field],
                                             "order": {"id": "ASC"}})
    return [Programme(id=int(r["id"]), title=str(r.get(pm.title_field) or "")) for r in rows]


def fetch_poll_lookups(client: ReadClient, mapping: FieldMapping, *, owner_emails: Iterable[str],
                       poll_ids: Iterable[int]) -> PollLookups:
    """Users for the polls' owners and existing poll-form items for polls not known in the ledger."""
    pf = mapping.poll_form
    commands: dict[str, tuple[str, dict]] = {}
    emails = sorted({match_key_email(e) for e in owner_emails if e and e.strip()})
    for i, email in enumerate(emails):
        commands[f"user_{i}"] = ("user.get", {"FILTER": {"EMAIL": email}})
    poll_ids = sorted(set(poll_ids))
    for i, group in enumerate(chunks(poll_ids, LIST_PAGE)):
        commands[f"pf_{i}"] = ("crm.item.list", {"entityTypeId": pf.entity_type_id,
                                                 "filter": {f"@{pf.poll_id_field}": group},
                                                 "select": ["id", pf.poll_id_field], "order": {"id": "ASC"}})
    pages = read_commands(client, commands) if commands else {}
    lookups = PollLookups()
    for i, email in enumerate(emails):
        for page in pages.get(f"user_{i}", []):
            for row in page or []:
                if match_key_email(str(row.get("EMAIL") or "")) != email:
                    continue
                user = CrmUser(id=int(row["ID"]), email=email, active=row.get("ACTIVE") in (True, "Y", "1", 1))
                known = lookups.users_by_email.get(email)
                if known is None or (user.active and not known.active):
                    lookups.users_by_email[email] = user
    for name, result_pages in pages.items():
        if not name.startswith("pf_"):
            continue
        for page in result_pages:
            for row in (page or {}).get("items", []) if isinstance(page, dict) else []:
                poll_id = row.get(pf.poll_id_field)
                if poll_id in (None, ""):
                    continue
                poll_id, item_id = int(poll_id), int(row["id"])
                if poll_id not in lookups.items_by_poll or item_id < lookups.items_by_poll[poll_id]:
                    lookups.items_by_poll[poll_id] = item_id
    return lookups


def fetch_answer_lookups(client: ReadClient, mapping: FieldMapping, *, emails: Iterable[str],
                         origin_ids: Iterable[str], source_name: str,
                         programmes: list[Programme], concurrency: int = 1) -> AnswerLookups:
    """Existing contacts for ``emails`` (with their fields) and deals for ``origin_ids``."""
    emails = sorted(set(emails))
    origin_ids = sorted(set(origin_ids))
    commands: dict[str, tuple[str, dict]] = {}
    for i, group in enumerate(chunks(emails, FINDBYCOMM_VALUES)):
        commands[f"dup_{i}"] = ("crm.duplicate.findbycomm", {"type": "EMAIL", "values": group,
                                                             "entity_type": "CONTACT"})
    for i, group in enumerate(chunks(origin_ids, LIST_PAGE)):
        commands[f"deals_{i}"] = ("crm.deal.list", {"filter": {"ORIGINATOR_ID": source_name, "@ORIGIN_ID": group},
                                                    "select": ["ID", "ORIGIN_ID"], "order": {"ID": "ASC"}})
    pages = read_commands(client, commands, concurrency=concurrency) if commands else {}
    contact_ids: set[int] = set()
    deals_by_origin: dict[str, int] = {}
    wanted = set(origin_ids)
    for name, result_pages in pages.items():
        for page in result_pages:
            if name.startswith("dup_") and isinstance(page, dict):
                contact_ids.update(int(i) for i in page.get("CONTACT", []) or [])
            elif name.startswith("deals_"):
                for row in page or []:
                    key = str(row.get("ORIGIN_ID") or "")
                    if key in wanted:
                        deal_id = int(row["ID"])
                        deals_by_origin[key] = min(deal_id, deals_by_origin.get(key, deal_id))
    contacts = fetch_contacts(client, sorted(contact_ids), concurrency=concurrency)
    wanted_emails = set(emails)
    by_email: dict[str, list[CrmContact]] = {}
    for contact in contacts:
        for value in {match_key_email(e) for e in contact.emails}:
            if value in wanted_emails:
                by_email.setdefault(value, []).append(contact)
    return AnswerLookups(programmes=programmes, contacts_by_email=by_email, deals_by_origin=deals_by_origin)


def fetch_contacts(client: ReadClient, ids: list[int], *, concurrency: int = 1) -> list[CrmContact]:
    if not ids:
        return []
    commands = {f"ct_{i}": ("crm.contact.list", {"filter": {"@ID": group},
                                                 "select": ["ID", "NAME", "LAST_NAME", "SECOND_NAME", "EMAIL", "PHONE"],
                                                 "order": {"ID": "ASC"}})
                for i, group in enumerate(chunks(ids, LIST_PAGE))}
    found: dict[int, CrmContact] = {}
    for result_pages in read_commands(client, commands, concurrency=concurrency).values():
        for page in result_pages:
            for row in page or []:
                contact = CrmContact(
                    id=int(row["ID"]), name=row.get("NAME") or "", last_name=row.get("LAST_NAME") or "",
                    second_name=row.get("SECOND_NAME") or "",
                    emails=[str(e.get("VALUE") or "") for e in row.get("EMAIL") or [] if isinstance(e, dict)],
                    phones=[str(p.get("VALUE") or "") for p in row.get("PHONE") or [] if isinstance(p, dict)])
                found[contact.id] = contact
    return [found[i] for i in sorted(found)]
