"""Named points where a test can make the process die, to prove recovery from each.

``SYNC_CRASH_AT=batch_sent`` (or ``batch_sent:3`` for the third time the point is
reached) makes the process kill itself with SIGKILL there: no cleanup, no finally
blocks, exactly like the OOM killer or a pulled plug. Unset, a point costs one dict
lookup.
"""
from __future__ import annotations

import os
import signal

POINTS = ("staged", "in_flight", "batch_sent", "ledger_updated")
_hits: dict[str, int] = {}


def crash_point(name: str) -> None:
    spec = os.environ.get("SYNC_CRASH_AT")
    if not spec:
        return
    point, _, nth = spec.partition(":")
    if point != name:
        return
    _hits[name] = _hits.get(name, 0) + 1
    if _hits[name] >= int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)
