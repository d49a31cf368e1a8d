"""The two Bitrix24 cloud throttles (bitrix24-rest.md §3), with an injectable clock.

* :class:`LeakyBucket` -- request intensity per portal: every HTTP request (a ``batch``
  is one) adds 1; the level drains by ``rate`` per second; a request that finds the
  level at ``burst`` is rejected (503 ``QUERY_LIMIT_EXCEEDED``) and adds nothing.
* :class:`OperatingLimiter` -- resource intensity per method: execution seconds are
  summed in one-minute buckets over the last ten minutes; once the sum is over the
  limit the *next* call of that method is blocked (429 ``OPERATION_TIME_LIMIT``) until
  old buckets drop out. The call that crosses the limit completes.
* :class:`OperatingCosts` -- what one call adds to its method's operating time: a fixed
  cost per method (:data:`DEFAULT_OPERATING_COSTS`), else a default cost, else the
  measured duration; times a scale (time dilation, to reach the limit in short runs).
* :data:`PROFILES` -- the plans' numbers (rate, bucket, operating limit) under one name.

The limiters take ``clock`` (unix seconds, default ``time.time``) so tests move time by hand.
"""
from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, Mapping

Clock = Callable[[], float]


@dataclass(frozen=True)
class PlanProfile:
    """A Bitrix24 cloud plan's throttles: leaky-bucket drain and size, operating limit."""
    name: str
    rate: float
    burst: int
    operating_limit_s: float


# bitrix24-rest.md §3: Enterprise drains 5/s from a bucket of 250, every other plan 2/s from 50.
# The operating limit is not documented per plan: both keep the docs' 480 s per 10 minutes.
PROFILES: dict[str, PlanProfile] = {
    "standard": PlanProfile("standard", 2.0, 50, 480.0),
    "enterprise": PlanProfile("enterprise", 5.0, 250, 480.0),
}


def profile(name: str) -> PlanProfile:
    """The named plan; ``ValueError`` listing the known names otherwise."""
    try:
        return PROFILES[name.lower()]
    except (KeyError, AttributeError):
        raise ValueError(f"unknown Bitrix24 profile {name!r}; one of {sorted(PROFILES)}") from None


# Seconds of operating time per call, as a busy real portal charges them: writes that run CRM
# automation and list writes cost most, reads and lookups less. Estimates for benchmarks, not
# measurements of a particular portal: pass your own table to match one.
DEFAULT_OPERATING_COSTS: dict[str, float] = {
    "crm.contact.add": 0.1,
    "crm.contact.update": 0.1,
    "crm.deal.add": 0.1,
    "crm.deal.update": 0.1,
    "crm.item.add": 0.1,
    "crm.item.update": 0.1,
    "crm.item.batchimport": 0.5,
    "lists.element.add": 0.15,
    "lists.element.update": 0.15,
    "lists.element.get": 0.05,
    "crm.timeline.comment.add": 0.05,
    "crm.timeline.comment.list": 0.05,
    "crm.deal.list": 0.05,
    "crm.contact.list": 0.05,
    "crm.item.list": 0.05,
    "crm.duplicate.findbycomm": 0.05,
    "crm.deal.get": 0.02,
    "crm.contact.get": 0.02,
    "crm.item.get": 0.02,
}


class OperatingCosts:
    """What one call of a method adds to that method's operating time.

    ``table`` maps method names (any case) to seconds; a method not in it costs ``default_s``,
    or, when that is ``None``, its measured duration. Every charge is multiplied by ``scale``.
    """

    def __init__(self, table: Mapping[str, float] | None = None, *, default_s: float | None = None,
                 scale: float = 1.0) -> None:
        self.table = {str(k).lower(): float(v) for k, v in (table or {}).items()}
        self.default_s = None if default_s is None else float(default_s)
        self.scale = float(scale)

    @classmethod
    def from_option(cls, option: Mapping[str, float] | bool | None, *, default_s: float | None = None,
                    scale: float = 1.0) -> "OperatingCosts":
        """``True``: :data:`DEFAULT_OPERATING_COSTS`; a mapping: exactly that table; ``None``/``False``: none."""
        table = DEFAULT_OPERATING_COSTS if option is True else option or None
        return cls(table, default_s=default_s, scale=scale)

    def charge(self, method: str, measured_s: float) -> float:
        base = self.table.get(method.lower(), self.default_s)
        return (measured_s if base is None else base) * self.scale

    def snapshot(self) -> dict:
        return {"costs": dict(self.table), "default_cost_s": self.default_s, "scale": self.scale}


class LeakyBucket:
    def __init__(self, rate: float | None = 2.0, burst: int = 50, *, clock: Clock = time.time) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self.configure(rate, burst)

    def configure(self, rate: float | None, burst: int) -> None:
        """Set the drain rate (``None``/0 turns the bucket off) and the capacity; empties it."""
        with self._lock:
            self.rate = float(rate) if rate else 0.0
            self.burst = int(burst)
            self._level = 0.0
            self._last = self._clock()

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def _drain(self) -> None:
        now = self._clock()
        self._level = max(0.0, self._level - (now - self._last) * self.rate)
        self._last = now

    def try_acquire(self) -> bool:
        """Count one request; ``False`` when the bucket is full (the request is rejected)."""
        if not self.enabled:
            return True
        with self._lock:
            self._drain()
            if self._level + 1 > self.burst:
                return False
            self._level += 1
            return True

    def level(self) -> float:
        with self._lock:
            if self.enabled:
                self._drain()
            return self._level


class OperatingLimiter:
    BUCKET_S = 60
    BUCKETS = 10

    def __init__(self, limit_s: float | None = 480.0, *, clock: Clock = time.time) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self.limit_s = limit_s
        # method -> OrderedDict(minute -> [seconds, first call unix time])
        self._buckets: dict[str, OrderedDict[int, list[float]]] = {}

    def _window(self, method: str) -> OrderedDict[int, list[float]]:
        # A bucket drops out exactly at the operating_reset_at it announced (its first call +
        # 10 minutes), not at a minute boundary before it: a client pacing by that figure
        # must find the time freed then, and not earlier than the portal said.
        now = self._clock()
        buckets = self._buckets.setdefault(method, OrderedDict())
        while buckets and self._expires(next(iter(buckets.values()))) <= now:
            buckets.popitem(last=False)
        return buckets

    def _expires(self, bucket: list[float]) -> int:
        # Whole seconds, as operating_reset_at is sent: at that second the time is free.
        return int(bucket[1]) + self.BUCKET_S * self.BUCKETS

    def used(self, method: str) -> float:
        """Seconds of ``method`` counted in the current ten-minute window."""
        with self._lock:
            return sum(b[0] for b in self._window(method).values())

    def reset_at(self, method: str) -> int:
        """When the oldest bucket drops out: first call of that minute + 10 minutes."""
        with self._lock:
            buckets = self._window(method)
            if not buckets:
                return int(self._clock()) + self.BUCKET_S * self.BUCKETS
            return self._expires(next(iter(buckets.values())))

    def blocked(self, method: str) -> bool:
        """True when the accumulated time is over the limit: this call must be refused.

        Strictly over (§3: "once sum > limit"), checked before the call, so the call that
        crosses the limit has already completed and only the *next* one is refused."""
        if not self.limit_s:
            return False
        return self.used(method) > self.limit_s

    def record(self, method: str, seconds: float) -> None:
        """Add ``seconds`` to ``method`` in the current minute's bucket."""
        with self._lock:
            now = self._clock()
            buckets = self._window(method)
            minute = int(now // self.BUCKET_S)
            bucket = buckets.get(minute)
            if bucket is None:
                buckets[minute] = [seconds, now]
            else:
                bucket[0] += seconds

    def clear(self) -> None:
        with self._lock:
            self._buckets.clear()

    def usage(self) -> dict[str, float]:
        """Seconds counted in the current window, per method that has any."""
        with self._lock:
            methods = list(self._buckets)
        used = {m: self.used(m) for m in methods}
        return {m: round(s, 6) for m, s in sorted(used.items()) if s}
