"""Deal look-ups: which deals already exist for the answers of a chunk, asked of the CRM.

Two keys, by the mapping's ``deal.reuse``:

* ``never`` — one deal per answer and programme: deals by ``ORIGINATOR_ID`` + ``ORIGIN_ID``;
* ``open`` / ``any`` — the contact's deals (open ones only for ``open``), matched to a
  programme by the programme link field.

Either way the ledger only saves look-ups; a deal it does not know is still found
here, so a new, lost or switched store creates nothing twice. Each deal found comes
with the current values of the fields the job may fill, and the answer versions whose
summary it already carries (``[#answer:version]`` markers in its timeline comments or
its ``COMMENTS``), so a summary is never written twice.
"""
from __future__ import annotations

import re
from typing import Any, Iterable

from core.iterables import chunks
from sync.clients import rows
from sync.crm.reads import LIST_PAGE, ReadClient, _id, _skipped, _text, read_commands
from sync.mapping import FieldMapping
from sync.plan.models import CrmDeal

SUMMARY_MARKER = re.compile(r"\[#(\d+):([0-9a-f]{8})\]")


def summary_marker(answer_id: int, version: str) -> str:
    """The tag a summary carries, found again by ``SUMMARY_MARKER``."""
    return f"[#{answer_id}:{version[:8]}]"


def _deal_select(mapping: FieldMapping) -> list[str]:
    dm = mapping.deal
    names = ["ID", "CONTACT_ID", "ORIGINATOR_ID", "ORIGIN_ID", "STAGE_SEMANTIC_ID", "CATEGORY_ID"]
    if dm.programme_link_field:
        names.append(dm.programme_link_field)
    names += list(dm.fields) + list(dm.enumerations)
    if dm.summary.to == "comments":
        names.append("COMMENTS")
    return list(dict.fromkeys(names))


def _first(value: Any) -> Any:
    if isinstance(value, list):
        return value[0] if value else None
    if isinstance(value, dict):
        return next(iter(value.values()), None)
    return value


def _deal(row: dict, mapping: FieldMapping) -> CrmDeal | None:
    deal_id = _id(row.get("ID"))
    if deal_id is None:
        _skipped("crm.deal.list", row)
        return None
    dm = mapping.deal
    fields = {name: row.get(name) for name in list(dm.fields) + list(dm.enumerations) if name in row}
    if dm.summary.to == "comments":
        fields["COMMENTS"] = _text(row.get("COMMENTS"))
    link = _id(_first(row.get(dm.programme_link_field))) if dm.programme_link_field else None
    deal = CrmDeal(id=deal_id, contact_id=_id(row.get("CONTACT_ID")), originator_id=_text(row.get("ORIGINATOR_ID")),
                   origin_id=_text(row.get("ORIGIN_ID")), open=_text(row.get("STAGE_SEMANTIC_ID")) in ("P", ""),
                   programme_id=link, fields=fields)
    if dm.summary.to == "comments":
        deal.summaries |= {f"{a}:{v}" for a, v in SUMMARY_MARKER.findall(fields["COMMENTS"])}
    return deal


def deal_commands(mapping: FieldMapping, *, contact_ids: Iterable[int], origin_ids: Iterable[str],
                  source_name: str, deal_ids: Iterable[int] = ()) -> dict[str, tuple[str, dict]]:
    """The ``crm.deal.list`` commands that find the deals of these contacts / external keys / ids."""
    dm = mapping.deal
    select = _deal_select(mapping)
    commands: dict[str, tuple[str, dict]] = {}
    for i, group in enumerate(chunks(sorted(set(deal_ids)), LIST_PAGE)):
        commands[f"di_{i}"] = ("crm.deal.list", {"filter": {"@ID": list(group)}, "select": select,
                                                 "order": {"ID": "ASC"}})
    for i, group in enumerate(chunks(sorted(set(origin_ids)), LIST_PAGE)):
        commands[f"dk_{i}"] = ("crm.deal.list", {"filter": {"ORIGINATOR_ID": source_name, "@ORIGIN_ID": list(group)},
                                                 "select": select, "order": {"ID": "ASC"}})
    if dm.reuse != "never":
        for i, group in enumerate(chunks(sorted(set(contact_ids)), LIST_PAGE)):
            filt: dict[str, Any] = {"@CONTACT_ID": list(group)}
            if dm.reuse == "open":
                filt["STAGE_SEMANTIC_ID"] = "P"
            commands[f"dc_{i}"] = ("crm.deal.list", {"filter": filt, "select": select, "order": {"ID": "ASC"}})
    return commands


def read_deals(pages: dict[str, list[Any]], mapping: FieldMapping) -> dict[int, CrmDeal]:
    deals: dict[int, CrmDeal] = {}
    for name, result_pages in pages.items():
        if not name.startswith(("dk_", "dc_", "di_")):
            continue
        for page in result_pages:
            for row in rows("crm.deal.list", page):
                deal = _deal(row, mapping)
                if deal is not None:
                    deals[deal.id] = deal
    return deals


def fetch_summaries(client: ReadClient, mapping: FieldMapping, deals: dict[int, CrmDeal], *,
                    concurrency: int = 1) -> None:
    """Fill each deal's ``summaries`` from its timeline comments (one list command per deal)."""
    if mapping.deal.summary.to != "timeline" or not deals:
        return
    commands = {f"tl_{deal_id}": ("crm.timeline.comment.list",
                                  {"filter": {"ENTITY_ID": deal_id, "ENTITY_TYPE": "deal"},
                                   "select": ["ID", "COMMENT"], "order": {"ID": "ASC"}})
                for deal_id in sorted(deals)}
    for name, result_pages in read_commands(client, commands, concurrency=concurrency).items():
        deal = deals[int(name.split("_", 1)[1])]
        for page in result_pages:
            for row in rows("crm.timeline.comment.list", page):
                deal.summaries |= {f"{a}:{v}" for a, v in SUMMARY_MARKER.findall(_text(row.get("COMMENT")))}
