"""Packing commands into ``batch`` calls of at most 50, and resolving ``Ref`` values.

Commands arrive in dependency order (a new contact right before its deals). Batches
are filled to the cap in that order, so most contacts share a call with their deals
(``$result[...]`` reference); a group cut by a batch boundary continues in the next
call with the real id, which is only known, and only trusted, once its command succeeded.
"""
from __future__ import annotations

from typing import Any, Iterator, Sequence

from sync.plan_models import Command, Ref

MAX_BATCH = 50


def pack_batches(commands: Sequence[Command], size: int = MAX_BATCH) -> list[list[Command]]:
    """Split ``commands`` into consecutive batches of at most ``size``, keeping their order."""
    if not 1 <= size <= MAX_BATCH:
        raise ValueError(f"batch size must be 1..{MAX_BATCH}, got {size}")
    return [list(commands[i:i + size]) for i in range(0, len(commands), size)]


class UnresolvedReference(Exception):
    """Raised when a command depends on one that failed or whose outcome is unknown."""

    def __init__(self, command: str) -> None:
        super().__init__(command)
        self.command = command


def resolve_params(value: Any, *, same_batch: set[str], created: dict[str, int]) -> Any:
    """Replace each ``Ref`` by ``$result[name]`` (same batch) or the id created earlier."""
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
