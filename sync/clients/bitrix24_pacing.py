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

Several batches are in flight at once, and a reply only tells what was used before it
returned. So the pacer also learns what one command of each method costs (the step of
``operating`` between a batch's commands of that method) and, when it admits a request,
reserves that cost for each of its commands until the reply is read: a request is held
back when what the portal reported, plus what is in flight, plus its own commands would
pass the budget. The margin is then only a reserve for estimates that were too low.
"""
from __future__ import annotations

import statistics
import threading
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Callable

# A request the portal has not finished in this many seconds is cut off (cloud).
SERVER_CUTOFF_S = 60.0
# operating_reset_at has one-second resolution: waiting a second longer avoids arriving
# the instant before the oldest minute is dropped.
RESET_SAFETY_S = 1.0
# Weight of a new sample in a method's cost per command (an exponential moving average).
COST_WEIGHT = 0.3


@dataclass(frozen=True)
class MethodUsage:
    """What the portal last said about one method: seconds used, and when the window frees.

    ``reset_in_s`` counts from ``seen_at`` (the client's monotonic clock at reading).
    """

    operating_s: float
    reset_in_s: float
    seen_at: float


@dataclass
class Admission:
    """What ``OperatingPacer.admit`` decided for one request.

    ``wait`` > 0: not admitted; wait that long for ``busiest``'s window (it has ``used``
    seconds reported and more in flight). ``wait`` == 0: admitted, and ``reserved`` (seconds
    per method) is held until ``settle``.
    """

    wait: float = 0.0
    busiest: str | None = None
    used: float = 0.0
    reserved: dict[str, float] = field(default_factory=dict)


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
    pace). ``margin``: the share of it a method may use, counting what is in flight, before
    a request waits for the window to free. 0.98 keeps ~10 s of 480 in reserve for costs
    that turn out higher than estimated; the batches in flight are reserved separately. A
    low margin costs a whole extra ten-minute window on a 10,000-answer backfill (1.54× the
    floor at 0.85). ``clock`` is monotonic; ``wall_clock`` (unix time) is only used for a
    block that carries no server time of its own.
    """

    def __init__(self, limit_s: float | None = 480.0, margin: float = 0.98, *,
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
        self._cost: dict[str, float] = {}        # method → estimated seconds per command
        self._in_flight: Counter[str] = Counter()  # method → seconds reserved by requests not read yet

    @property
    def budget_s(self) -> float | None:
        """Seconds a method may use in the window before the client starts waiting (``limit × margin``)."""
        return None if self.limit_s is None else self.limit_s * self.margin

    def _usage_in(self, block: Mapping[str, Any] | None) -> MethodUsage | None:
        """What a ``time`` block says of its method (None for a block without ``operating``)."""
        if not isinstance(block, Mapping):
            return None
        operating = _number(block.get("operating"))
        reset_at = _number(block.get("operating_reset_at"))
        if operating is None or reset_at is None:
            return None
        server_now = _number(block.get("finish"))
        if server_now is None:
            server_now = _number(block.get("start"))
        if server_now is None:
            server_now = self._wall_clock()
        return MethodUsage(operating_s=max(0.0, operating), reset_in_s=reset_at - server_now, seen_at=self._clock())

    def settle(self, admission: Admission | None, blocks: Iterable[tuple[str, Mapping[str, Any] | None]]) -> None:
        """A request came back (or failed): read its commands' ``time`` blocks, in command order, and
        release what ``admission`` reserved, in one step so its cost is never counted twice or not at all.

        Each method's cost per command is learnt from the steps of ``operating`` between its
        commands in the batch (the median step, so a concurrent request's commands landing in
        between do not decide it; a step down is a minute leaving the window, not a cost).
        """
        seen: dict[str, list[float]] = {}
        latest: dict[str, MethodUsage] = {}
        for method, block in blocks:
            usage = self._usage_in(block)
            if usage is None:
                continue
            name = method.lower()
            latest[name] = usage
            seen.setdefault(name, []).append(usage.operating_s)
        with self._lock:
            self._usage.update(latest)
            for name, values in seen.items():
                steps = [b - a for a, b in zip(values, values[1:]) if b > a]
                if steps:
                    sample = statistics.median(steps)
                    old = self._cost.get(name)
                    self._cost[name] = sample if old is None else old + COST_WEIGHT * (sample - old)
            if admission is not None:
                for name, seconds in admission.reserved.items():
                    left = self._in_flight[name] - seconds
                    if left > 1e-9:
                        self._in_flight[name] = left
                    else:
                        del self._in_flight[name]
                admission.reserved = {}

    def cost(self, method: str) -> float | None:
        """The estimated operating seconds of one command of ``method`` (None until a batch showed it)."""
        with self._lock:
            return self._cost.get(method.lower())

    def in_flight(self, method: str) -> float:
        """Operating seconds reserved for ``method`` by requests admitted and not read yet."""
        with self._lock:
            return self._in_flight.get(method.lower(), 0.0)

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

    def admit(self, methods: Iterable[str]) -> Admission:
        """Admit a request that runs ``methods`` (one entry per command), or say how long to wait.

        A method holds the request back while its window has not freed and what the portal
        reported, plus what is in flight, plus this request's commands at the estimated cost
        would pass ``budget_s`` (a method at the budget already waits even when its cost is
        not known yet). A window that has freed since the last reply counts as empty: the
        next reply tells the real figure. Admitted: the commands' cost is reserved until
        ``settle``.
        """
        budget = self.budget_s
        if budget is None:
            return Admission()
        counts = Counter(m.lower() for m in methods)
        wait, busiest, used = 0.0, None, 0.0
        with self._lock:
            for method, count in counts.items():
                usage = self._usage.get(method)
                if usage is None:
                    continue
                remaining = self._remaining(usage)
                if remaining <= 0:
                    continue
                ahead = usage.operating_s + self._in_flight.get(method, 0.0)
                if usage.operating_s < budget and ahead + count * self._cost.get(method, 0.0) <= budget:
                    continue
                if remaining + RESET_SAFETY_S > wait:
                    wait, busiest, used = remaining + RESET_SAFETY_S, method, usage.operating_s
            if wait > 0:
                return Admission(wait, busiest, used)
            reserved = {m: n * self._cost[m] for m, n in counts.items() if self._cost.get(m)}
            for method, seconds in reserved.items():
                self._in_flight[method] += seconds
        return Admission(reserved=reserved)

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
