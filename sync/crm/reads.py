"""Reading Bitrix24 for the planner: batched read commands followed to their last page, and replies read for meaning.

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
from core.iterables import chunks

FINDBYCOMM_VALUES = 20   # crm.duplicate.findbycomm takes at most 20 values
LIST_PAGE = 50           # every *.list page holds 50 rows
READ_ROUNDS = 4          # a read command failing inside a batch is re-sent this many times


class ReadClient(Protocol):
    def batch(self, commands: dict[str, tuple[str, dict]], *, halt: bool = False, idempotent: bool) -> Any: ...
    def list_all(self, method: str, params: dict | None = None, **kwargs) -> Iterable[dict]: ...


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


