"""The store's one clock: every timestamp it writes comes from ``utc_now()``.

Kept in one place so tests can freeze it with freezegun.
"""
from __future__ import annotations

from datetime import datetime, timezone


def utc_now() -> datetime:
    """The current instant as an aware UTC datetime."""
    return datetime.now(timezone.utc)
