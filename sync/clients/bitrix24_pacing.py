"""Pacing by the operating time the Bitrix24 portal reports (bitrix24-rest.md §3, §10).

The portal sums each method's execution time over a sliding ten minutes; once the
sum passes its limit (480 s in the docs' example) every further call of that method
gets 429 ``OPERATION_TIME_LIMIT`` until the oldest minute drops out. Every reply's
``time`` block says where the method stands: ``operating`` (seconds used in the
window) and ``operating_reset_at`` (unix time the oldest minute drops out); inside a
``batch`` each command has its own block in ``result_time``.

``OperatingPacer`` keeps the newest of those per method and, once a method has used
``margin`` of the limit, makes its next call wait until ``operating_reset_at``
instead of running into the wall. The wait is measured against the server's own
clock (the block's ``finish``), then counted down on the client's monotonic clock,
so a skewed local wall clock does not shorten or stretch it.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Callable

# A request the portal has not finished in this many seconds is cut off (cloud).
SERVER_CUTOFF_S = 60.0
# operating_reset_at has one-second resolution: waiting a second longer avoids arriving
# the instant before the oldest minute is dropped.
RESET_SAFETY_S = 1.0


@dataclass(frozen=True)
class MethodUsage:
    """What the portal last said about one method: seconds used, and when the window frees.

    ``reset_in_s`` counts from ``seen_at`` (the client's monotonic clock at reading).
    """

    operating_s: float
    reset_in_s: float
    seen_at: float


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number == number else None  # NaN is not a number worth pacing by


class OperatingPacer:
    """Per-method operating-time bookkeeping from reply ``time`` blocks; thread-safe.

    ``limit_s``: the portal's per-method limit per ten minutes (``None`` or 0: do not
    pace). ``margin``: the share of it a method may use before its next call waits
    for the window to free. 0.95 keeps 24 s of 480 in reserve: more than the batches that
    may be in flight when the wait starts (3 × 50 writes at ~0.1 s), while a lower margin
    cost a whole extra ten-minute window on a 10,000-answer backfill (1.54× the floor at 0.85). ``clock`` is monotonic; ``wall_clock`` (unix time) is
    only used for a block that carries no server time of its own.
    """

    def __init__(self, limit_s: float | None = 480.0, margin: float = 0.95, *,
                 clock: Callable[[], float] = time.monotonic, wall_clock: Callable[[], float] = time.time) -> None:
        if limit_s is not None and limit_s < 0:
            raise ValueError(f"operating_limit_s must be >= 0 (0 or None: no pacing), got {limit_s}")
        if not 0 < margin <= 1:
            raise ValueError(f"operating_margin must be in (0, 1], got {margin}")
        self.limit_s = float(limit_s) if limit_s else None
        self.margin = float(margin)
        self._clock = clock
        self._wall_clock = wall_clock
        self._lock = threading.Lock()
        self._usage: dict[str, MethodUsage] = {}

    @property
    def budget_s(self) -> float | None:
        """Seconds a method may use in the window before the client starts waiting (``limit × margin``)."""
        return None if self.limit_s is None else self.limit_s * self.margin

    def observe(self, method: str, block: Mapping[str, Any] | None) -> None:
        """Remember what a reply's ``time`` block says about ``method`` (blocks without ``operating`` are ignored)."""
        if not isinstance(block, Mapping):
            return
        operating = _number(block.get("operating"))
        reset_at = _number(block.get("operating_reset_at"))
        if operating is None or reset_at is None:
            return
        server_now = _number(block.get("finish"))
        if server_now is None:
            server_now = _number(block.get("start"))
        if server_now is None:
            server_now = self._wall_clock()
        usage = MethodUsage(operating_s=max(0.0, operating), reset_in_s=reset_at - server_now, seen_at=self._clock())
        with self._lock:
            self._usage[method.lower()] = usage

    def note_blocked(self, method: str) -> None:
        """The portal refused ``method`` with OPERATION_TIME_LIMIT: treat it as used up until its known reset."""
        if self.limit_s is None:
            return
        with self._lock:
            usage = self._usage.get(method.lower())
            if usage is not None and self._remaining(usage) > 0:
                self._usage[method.lower()] = MethodUsage(max(usage.operating_s, self.limit_s), usage.reset_in_s,
                                                          usage.seen_at)

    def _remaining(self, usage: MethodUsage) -> float:
        return usage.reset_in_s - (self._clock() - usage.seen_at)

    def reset_wait(self, method: str) -> float | None:
        """Seconds until ``method``'s window frees, from the last reply that said; None when unknown or past."""
        with self._lock:
            usage = self._usage.get(method.lower())
            remaining = self._remaining(usage) if usage is not None else 0.0
        return remaining + RESET_SAFETY_S if remaining > 0 else None

    def wait_before(self, methods: Iterable[str]) -> tuple[float, str | None, float]:
        """How long to wait before a request that runs ``methods``: ``(seconds, busiest method, its operating)``.

        Zero unless one of them has used at least ``budget_s`` and its window has not freed yet.
        """
        budget = self.budget_s
        if budget is None:
            return 0.0, None, 0.0
        wait, busiest, used = 0.0, None, 0.0
        with self._lock:
            for method in {m.lower() for m in methods}:
                usage = self._usage.get(method)
                if usage is None or usage.operating_s < budget:
                    continue
                remaining = self._remaining(usage)
                if remaining > 0 and remaining + RESET_SAFETY_S > wait:
                    wait, busiest, used = remaining + RESET_SAFETY_S, method, usage.operating_s
        return wait, busiest, used

    def headroom(self, method: str) -> float:
        """Seconds of operating time ``method`` has left before its calls start waiting (``inf`` when not pacing).

        ``budget_s`` minus the last reported ``operating``, never below 0; the whole
        budget for a method not seen yet or whose window has freed since (the next
        reply will tell the real figure).
        """
        budget = self.budget_s
        if budget is None:
            return float("inf")
        with self._lock:
            usage = self._usage.get(method.lower())
            if usage is None or self._remaining(usage) <= 0:
                return budget
            return max(0.0, budget - usage.operating_s)

    def usage(self) -> dict[str, MethodUsage]:
        """A copy of what is known per method (lower-cased names, as the portal counts them)."""
        with self._lock:
            return dict(self._usage)
