"""Packing commands into ``batch`` calls of at most 50, and resolving ``Ref`` values.

A *unit* is a new contact with the deals that reference it (or any command alone).
Units are packed whole, first-fit by size, so every batch is independent of the others
and batches can be in flight at the same time; inside a batch a deal reaches its new
contact through ``$result[...]``. Only a unit larger than a batch is cut: its later
parts go to a later *level* and get the real id, which is only known, and only
trusted, once the contact's command succeeded.

Bitrix24 substitutes ``$result[name]...`` (and ``$next``, ``$total``, ``$time``, ``$error``,
in any case) wherever it appears in a command's values, not only where we put it
(bitrix24-rest.md §4). Text that respondents typed is therefore defused on the way in:
such a ``$`` becomes the full-width ``＄`` (U+FF04), which reads the same, is one character
too (field lengths the planner kept still hold), and is not matched.
"""
from __future__ import annotations

import re
from typing import Any, Iterator, Sequence

from sync.clients.bitrix24 import MAX_BATCH
from sync.plan.models import Command, Ref

# What the batch would take for a reference: "$" + section + a "[...]" path somewhere in the same word.
_LOOKS_LIKE_REF = re.compile(r"\$(?=(?:result|next|total|time|error)\S*\[)", re.IGNORECASE)


def units(commands: Sequence[Command]) -> list[list[Command]]:
    """Group each command with the earlier command it references (a contact and its deals)."""
    groups: dict[str, list[Command]] = {}
    owner: dict[str, str] = {}
    for command in commands:
        refs = [r for r in refs_in(command.params) if r in owner]
        root = owner[refs[0]] if refs else command.name
        owner[command.name] = root
        groups.setdefault(root, []).append(command)
    return list(groups.values())


def pack_levels(commands: Sequence[Command], size: int = MAX_BATCH) -> list[list[list[Command]]]:
    """Batches by level: the batches of one level are independent; a level needs the ones before it."""
    if not 1 <= size <= MAX_BATCH:
        raise ValueError(f"batch size must be 1..{MAX_BATCH}, got {size}")
    levels: list[list[list[Command]]] = [[]]
    bins: list[list[Command]] = levels[0]
    for unit in sorted(units(commands), key=len, reverse=True):
        parts = [unit[i:i + size] for i in range(0, len(unit), size)]
        first = parts[0]
        target = next((b for b in bins if len(b) + len(first) <= size), None)
        if target is None:
            target = []
            bins.append(target)
        target.extend(first)
        for depth, part in enumerate(parts[1:], start=1):
            while len(levels) <= depth:
                levels.append([])
            levels[depth].append(list(part))
    # Keep the planner's order inside each batch: a contact before the deals that use it.
    order = {c.name: i for i, c in enumerate(commands)}
    return [[sorted(b, key=lambda c: order[c.name]) for b in level] for level in levels if level]


def pack_batches(commands: Sequence[Command], size: int = MAX_BATCH) -> list[list[Command]]:
    """All batches in an order that is safe to send one after the other."""
    return [batch for level in pack_levels(commands, size) for batch in level]


class UnresolvedReference(Exception):
    """Raised when a command depends on one that failed or whose outcome is unknown."""

    def __init__(self, command: str) -> None:
        super().__init__(command)
        self.command = command


def defuse(text: str) -> str:
    """``text`` with every would-be ``$result[...]``-style reference made inert (idempotent)."""
    return _LOOKS_LIKE_REF.sub("\uff04", text)


def resolve_params(value: Any, *, same_batch: set[str], created: dict[str, int]) -> Any:
    """Replace each ``Ref`` by ``$result[name]`` (same batch) or the id created earlier.

    Every other text is ``defuse``-d, so the only references in a batch are the ones made here.
    """
    if isinstance(value, str):
        return defuse(value)
    if isinstance(value, Ref):
        if value.command in same_batch:
            return f"$result[{value.command}]"
        if value.command in created:
            return created[value.command]
        raise UnresolvedReference(value.command)
    if isinstance(value, dict):
        return {k: resolve_params(v, same_batch=same_batch, created=created) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve_params(v, same_batch=same_batch, created=created) for v in value]
    return value


def refs_in(value: Any) -> Iterator[str]:
    """Names of the commands ``value`` refers to."""
    if isinstance(value, Ref):
        yield value.command
    elif isinstance(value, dict):
        for v in value.values():
            yield from refs_in(v)
    elif isinstance(value, list):
        for v in value:
            yield from refs_in(v)
