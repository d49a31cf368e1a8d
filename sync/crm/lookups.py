"""Reads from Bitrix24 that the planner needs, made in as few ``batch`` calls as possible.

Each function builds its read commands, sends them 50 to a call, and returns plain
look-up models (``sync.plan.models``). Reads are idempotent, so the client retries them.

Replies are read for their meaning, not their exact shape: rows may come as a list or
as an object keyed by index or id (PHP ``json_encode``), ``[]`` or null when empty, ids
as numbers or strings, text fields as null or numbers, with fields we did not ask for.
A row that is not an object, or has no usable id, cannot be referred to: it is skipped
with a warning naming the method, and the rest of the reply is used.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any, Iterable, Protocol

from loguru import logger

from core.errors import RetriableError
from sync.mapping import FieldMapping
from sync.plan.normalize import match_key_email
from sync.plan.models import AnswerLookups, CrmContact, CrmUser, PollLookups, Programme

FINDBYCOMM_VALUES = 20   # crm.duplicate.findbycomm takes at most 20 values
LIST_PAGE = 50           # every *.list page holds 50 rows
READ_ROUNDS = 4          # a read command failing inside a batch is re-sent this many times


class ReadClient(Protocol):
    def batch(self, commands: dict[str, tuple[str, dict]], *, halt: bool = False, idempotent: bool) -> Any: ...
    def list_all(self, method: str, params: dict | None = None, **kwargs) -> Iterable[dict]: ...


def _rows(page: Any, method: str, key: str | None = None) -> list[dict]:
    """The rows of one result page, whatever container PHP gave them in (``key``: a wrapping object's list)."""
    if key is not None and isinstance(page, dict) and key in page:
        page = page[key]
    if isinstance(page, dict):
        page = list(page.values())
    if not isinstance(page, list):
        if page not in (None, "", False):
            logger.warning("Bitrix24 {}: a result of type {} where rows were expected; ignored", method,
                           type(page).__name__)
        return []
    rows = [row for row in page if isinstance(row, dict)]
    if len(rows) < len(page):
        logger.warning("Bitrix24 {}: {} row(s) that are not objects; ignored", method, len(page) - len(rows))
    return rows


def _id(value: Any) -> int | None:
    """A positive id from ``7``, ``"7"`` or ``7.0``; None for anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():  # not "²" or "７"
        value = int(value.strip())
    return value if isinstance(value, int) and value > 0 else None


def _text(value: Any) -> str:
    if value is None or isinstance(value, (dict, list, bool)):
        return ""
    return str(value)


def _multi_values(value: Any) -> list[str]:
    """The VALUEs of a multi-field (``EMAIL``, ``PHONE``): a list or an object of entries, or plain strings."""
    entries = list(value.values()) if isinstance(value, dict) else value if isinstance(value, list) else []
    values = []
    for entry in entries:
        if isinstance(entry, dict):
            entry = entry.get("VALUE")
        text = _text(entry)
        if text:
            values.append(text)
    return values


def _skipped(method: str, row: dict) -> None:
    logger.warning("Bitrix24 {}: a row without a usable ID ({}); ignored", method,
                   ", ".join(f"{k}={str(v)[:20]!r}" for k, v in list(row.items())[:4]))


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


def _programmes_query(mapping: FieldMapping) -> dict:
    pm = mapping.programmes
    return {"entityTypeId": pm.entity_type_id, "select": ["id", pm.title_field], "order": {"id": "ASC"}}


def fetch_programmes(client: ReadClient, mapping: FieldMapping) -> list[Programme]:
    return _programmes_from(list(client.list_all("crm.item.list", _programmes_query(mapping))), mapping)


def _programmes_from(rows: list, mapping: FieldMapping) -> list[Programme]:
    pm = mapping.programmes
    programmes = []
    for row in _rows(rows, "crm.item.list"):
        item_id = _id(row.get("id", row.get("ID")))
        if item_id is None:
            _skipped("crm.item.list (programmes)", row)
            continue
        programmes.append(Programme(id=item_id, title=_text(row.get(pm.title_field))))
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
        commands[f"pf_{i}"] = ("crm.item.list", {"entityTypeId": pf.entity_type_id,
                                                 "filter": {f"@{pf.poll_id_field}": group},
                                                 "select": ["id", pf.poll_id_field], "order": {"id": "ASC"}})
    if with_programmes:
        commands["programmes"] = ("crm.item.list", _programmes_query(mapping))
    pages = read_commands(client, commands) if commands else {}
    lookups = PollLookups()
    if with_programmes:
        rows = [row for page in pages.get("programmes", []) for row in _rows(page, "crm.item.list", key="items")]
        lookups.programmes = _programmes_from(rows, mapping)
    for i, email in enumerate(emails):
        for page in pages.get(f"user_{i}", []):
            for row in _rows(page, "user.get"):
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
            for row in _rows(page, "crm.item.list (poll forms)", key="items"):
                poll_id, item_id = _id(row.get(pf.poll_id_field)), _id(row.get("id", row.get("ID")))
                if poll_id is None:
                    continue
                if item_id is None:
                    _skipped("crm.item.list (poll forms)", row)
                    continue
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
                found = page.get("CONTACT") or []
                for value in found.values() if isinstance(found, dict) else found if isinstance(found, list) else []:
                    if _id(value) is not None:
                        contact_ids.add(_id(value))
            elif name.startswith("deals_"):
                for row in _rows(page, "crm.deal.list"):
                    key = _text(row.get("ORIGIN_ID"))
                    if key in wanted:
                        deal_id = _id(row.get("ID"))
                        if deal_id is None:
                            _skipped("crm.deal.list", row)
                            continue
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
            for row in _rows(page, "crm.contact.list"):
                contact_id = _id(row.get("ID"))
                if contact_id is None:
                    _skipped("crm.contact.list", row)
                    continue
                found[contact_id] = CrmContact(
                    id=contact_id, name=_text(row.get("NAME")), last_name=_text(row.get("LAST_NAME")),
                    second_name=_text(row.get("SECOND_NAME")), emails=_multi_values(row.get("EMAIL")),
                    phones=_multi_values(row.get("PHONE")))
    return [found[i] for i in sorted(found)]
