"""The two Bitrix24 cloud throttles (bitrix24-rest.md §3), with an injectable clock.

* :class:`LeakyBucket` -- request intensity per portal: every HTTP request (a ``batch``
  is one) adds 1; the level drains by ``rate`` per second; a request that finds the
  level at ``burst`` is rejected (503 ``QUERY_LIMIT_EXCEEDED``) and adds nothing.
* :class:`OperatingLimiter` -- resource intensity per method: execution seconds are
  summed in one-minute buckets over the last ten minutes; once the sum is over the
  limit the *next* call of that method is blocked (429 ``OPERATION_TIME_LIMIT``) until
  old buckets drop out. The call that crosses the limit completes.

Both take ``clock`` (unix seconds, default ``time.time``) so tests move time by hand.
"""
from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Callable

Clock = Callable[[], float]


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
        minute = int(self._clock() // self.BUCKET_S)
        buckets = self._buckets.setdefault(method, OrderedDict())
        while buckets and next(iter(buckets)) <= minute - self.BUCKETS:
            buckets.popitem(last=False)
        return buckets

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
            first = next(iter(buckets.values()))[1]
            return int(first) + self.BUCKET_S * self.BUCKETS

    def blocked(self, method: str) -> bool:
        """True when the accumulated time is over the limit: this call must be refused."""
        if not self.limit_s:
            return False
        return self.used(method) > self.limit_s

    def record(self, method: str, seconds: float) -> None:
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
