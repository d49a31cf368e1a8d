"""``--bulk``: new contacts and deals created with ``crm.item.batchImport``, 20 to a command.

A ``batch`` of 50 import commands carries 1,000 records in one request instead of 50,
which is what a backfill of months of answers wants. The catch, and why it is never the
default: records imported this way skip the CRM's automation rules and business
processes (bitrix24-rest.md §6.6, crm.item.batchImport), so robots that greet a new deal
do not run. Everything else (updates, poll forms) goes through the usual path.

Contacts are imported first; their deals then carry the real contact ids, so no
``$result`` reference ever points into an import's item list.
"""
from __future__ import annotations

import re
from typing import Any, Callable, Sequence

from loguru import logger

from sync.crm.batching import UnresolvedReference, resolve_params
from sync.crashpoints import crash_point
from core.errors import AmbiguousWriteError, RetriableError
from sync.plan.models import Command
from sync.crm.push import CommandResult, push_commands

IMPORT_MAX = 20          # crm.item.batchImport takes at most 20 items
CONTACT_ENTITY_TYPE = 3
DEAL_ENTITY_TYPE = 2
_PARENT = re.compile(r"^PARENT_ID_(\d+)$")


def item_field_name(name: str) -> str:
    """Legacy field code → crm.item name (``ASSIGNED_BY_ID`` → ``assignedById``); UF codes stay."""
    if name.startswith("UF_"):
        return name  # sent with useOriginalUfNames=Y
    parent = _PARENT.match(name)
    if parent:
        return f"parentId{parent.group(1)}"
    if name == "CONTACT_ID":
        return "contactIds"
    head, *rest = name.lower().split("_")
    return head + "".join(part.capitalize() for part in rest)


def item_fields(fields: dict[str, Any]) -> dict[str, Any]:
    """Fields of a legacy command as ``crm.item.batchImport`` takes them.

    Multi-fields go as documented, ``EMAIL``/``PHONE`` lists of ``{VALUE, VALUE_TYPE}``:
    the ``fm`` form is not confirmed, and a contact imported without its e-mail would be
    duplicated by every later answer (nobody could find it by e-mail).
    """
    out: dict[str, Any] = {}
    for name, value in fields.items():
        if name in ("EMAIL", "PHONE"):
            out[name] = [{"VALUE": v["VALUE"], "VALUE_TYPE": v.get("VALUE_TYPE", "WORK")} for v in value]
        elif name == "CONTACT_ID":
            out["contactIds"] = [value]
        else:
            out[item_field_name(name)] = value
    return out


def push_bulk(client, commands: Sequence[Command], *, batch_size: int = 50,
              on_batch: Callable[[dict[str, CommandResult]], None] | None = None, concurrency: int = 1,
              stop=None, before_send: Callable[[list[Command]], None] | None = None) -> dict[str, CommandResult]:
    """Like ``push_commands``, with contact and deal creations imported 20 to a command."""
    results: dict[str, CommandResult] = {}

    def settle(batch_results: dict[str, CommandResult]) -> None:
        results.update(batch_results)
        if on_batch is not None:
            on_batch(batch_results)

    contacts = [c for c in commands if c.kind == "contact_add"]
    deals = [c for c in commands if c.kind == "deal_add"]
    rest = [c for c in commands if c.kind not in ("contact_add", "deal_add")]
    _import(client, contacts, CONTACT_ENTITY_TYPE, batch_size, settle, before_send, stop)
    created = {name: r.created_id for name, r in results.items() if r.state == "ok" and r.created_id}
    ready: list[tuple[Command, dict]] = []
    skipped: dict[str, CommandResult] = {}
    for deal in deals:
        try:
            ready.append((deal, resolve_params(deal.params, same_batch=set(), created=created)))
        except UnresolvedReference as exc:
            prerequisite = results.get(exc.command)
            unknown = prerequisite is None or prerequisite.state == "unknown"
            skipped[deal.name] = CommandResult(deal.name, "skipped",
                                               error="PREREQUISITE_UNKNOWN" if unknown else "PREREQUISITE_FAILED",
                                               description=f"not sent: {exc.command} did not succeed",
                                               retryable=unknown or prerequisite.retryable)
    if skipped:
        settle(skipped)
    _import(client, ready, DEAL_ENTITY_TYPE, batch_size, settle, before_send, stop)
    results.update(push_commands(client, rest, batch_size=batch_size, on_batch=on_batch, concurrency=concurrency,
                                 stop=stop, before_send=before_send))
    return results


def _import(client, commands, entity_type_id: int, batch_size: int, settle, before_send, stop) -> None:
    pairs = [(c, c.params) if isinstance(c, Command) else c for c in commands]
    groups = [pairs[i:i + IMPORT_MAX] for i in range(0, len(pairs), IMPORT_MAX)]
    for start in range(0, len(groups), batch_size):
        if stop is not None and stop.is_set():
            return
        batch = groups[start:start + batch_size]
        names = {f"imp{entity_type_id}_{start + i}": group for i, group in enumerate(batch)}
        sent = [c for group in batch for c, _ in group]
        if before_send is not None:
            before_send(sent)
        request = {name: ("crm.item.batchImport", {"entityTypeId": entity_type_id, "useOriginalUfNames": "Y",
                                                   "data": [item_fields(p["fields"]) for _, p in group]})
                   for name, group in names.items()}
        try:
            reply = client.batch(request, halt=False, idempotent=False)
        except AmbiguousWriteError as exc:
            logger.warning("bulk import of {} records: outcome unknown ({}); will reconcile by keys", len(sent), exc)
            settle({c.name: CommandResult(c.name, "unknown", error=exc.code or "AMBIGUOUS", description=str(exc),
                                          retryable=True) for c in sent})
            continue
        except RetriableError as exc:
            settle({c.name: CommandResult(c.name, "failed", error=exc.code or "RETRIABLE", description=str(exc),
                                          retryable=True) for c in sent})
            continue
        crash_point("batch_sent")
        outcomes = getattr(reply, "outcomes", reply)
        out: dict[str, CommandResult] = {}
        for name, group in names.items():
            outcome = outcomes.get(name)
            if outcome is None or not outcome.ok:
                disposition = getattr(outcome, "disposition", "ambiguous") if outcome is not None else "ambiguous"
                state = "unknown" if disposition == "ambiguous" else "failed"
                for command, _ in group:
                    out[command.name] = CommandResult(command.name, state, error=getattr(outcome, "error", "") or "",
                                                      description=getattr(outcome, "error_description", "") or "",
                                                      retryable=disposition != "invalid")
                continue
            items = (outcome.result or {}).get("items", []) if isinstance(outcome.result, dict) else []
            for index, (command, _) in enumerate(group):
                item = items[index] if index < len(items) else None
                item_id = (item.get("item") or {}).get("id") if isinstance(item, dict) else None
                if item_id is not None:
                    out[command.name] = CommandResult(command.name, "ok", created_id=int(item_id))
                elif isinstance(item, dict) and item.get("error"):
                    out[command.name] = CommandResult(command.name, "failed", error=str(item["error"]),
                                                      description=str(item.get("error_description") or ""),
                                                      retryable=False)
                else:
                    out[command.name] = CommandResult(command.name, "unknown", error="UNEXPECTED_RESULT",
                                                      description="no item in the import reply", retryable=True)
        settle(out)
