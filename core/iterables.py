"""Small helpers over sequences shared by the store and the CRM lookups."""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TypeVar

T = TypeVar("T")

__all__ = ["chunks"]


def chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    """Consecutive slices of ``items``, each at most ``size`` long (a list gives lists).

    Slicing rather than re-collecting keeps the caller's sequence type, so an
    ``IN (...)`` list or a 50-command batch is built without copying item by item.
    """
    if size < 1:
        raise ValueError(f"chunk size must be at least 1, got {size}")
    for start in range(0, len(items), size):
        yield items[start : start + size]
