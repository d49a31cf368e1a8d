"""A client-side copy of the Bitrix24 portal's leaky bucket.

The portal counts every HTTP request (a ``batch`` of 50 commands is one) in a
bucket of ``burst`` that drains ``rate_per_s`` per second; a request that would
overflow it is refused with 503 ``QUERY_LIMIT_EXCEEDED`` (bitrix24-rest.md §3).
Waiting locally before each request costs the same time as the server would make
us wait, without the failed round trip.

Thread-safe by reservation: ``acquire()`` books its slot under the lock (the level
may go above ``burst`` while callers wait) and sleeps outside it, so concurrent
callers are served in booking order and never both take the last slot.

``safety_s``: a request that had to wait sleeps this much longer than its slot. With
the bucket exactly full, a request whose network latency is a few milliseconds
shorter than the previous one's reaches the portal "early" and is refused (seen
against the emulator). The extra sleep is not booked, so the next caller's wait
shrinks by as much: it delays the schedule once, it does not lower the rate.
"""
from __future__ import annotations

import threading
import time
from typing import Callable


class LeakyBucket:
    """Capacity ``burst``, drains ``rate_per_s`` per second; the first ``burst`` requests pass at once.

    ``clock`` and ``sleep`` are injectable so tests assert the exact waits requested.
    """

    def __init__(self, rate_per_s: float, burst: int, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep, safety_s: float = 0.1) -> None:
        if rate_per_s <= 0:
            raise ValueError(f"rate_per_s must be > 0, got {rate_per_s}")
        if burst < 1:
            raise ValueError(f"burst must be >= 1, got {burst}")
        if safety_s < 0:
            raise ValueError(f"safety_s must be >= 0, got {safety_s}")
        self.safety_s = float(safety_s)
        self.rate_per_s = float(rate_per_s)
        self.burst = int(burst)
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._level = 0.0
        self._last = clock()
        self.rejected = 0

    def _drain(self, now: float) -> None:
        elapsed = max(0.0, now - self._last)
        self._level = max(0.0, self._level - elapsed * self.rate_per_s)
        self._last = now

    @property
    def level(self) -> float:
        """The current (drained) level; above ``burst`` while booked callers wait."""
        with self._lock:
            self._drain(self._clock())
            return self._level

    def acquire(self) -> float:
        """Block (through the injected ``sleep``) until one request fits; return the seconds waited."""
        with self._lock:
            self._drain(self._clock())
            self._level += 1.0
            wait = (self._level - self.burst) / self.rate_per_s + self.safety_s if self._level > self.burst else 0.0
        if wait > 0:
            self._sleep(wait)
        return wait

    def penalize(self) -> None:
        """Treat the bucket as full: the server just refused a request with QUERY_LIMIT_EXCEEDED.

        Our copy drifted from the portal's (another client on the same portal and IP,
        a restart that forgot the level): trust the server and start waiting.
        """
        with self._lock:
            self._drain(self._clock())
            self._level = max(self._level, float(self.burst))
            self.rejected += 1

    note_rejected = penalize

    def __repr__(self) -> str:
        return f"LeakyBucket(rate_per_s={self.rate_per_s}, burst={self.burst})"
