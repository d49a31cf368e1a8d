"""Seeded fault injection shared by both emulators.

A fault is a named kind (``"http_500"``, ``"drop_after_write"`` ...) that an emulator
checks for at the point where it can happen. Two sources, in this order:

* a *script*: a queue of ``{"kind": ..., "method": optional, "times": n}`` entries that
  fire deterministically on the next matching requests (precise tests);
* *rates*: ``{kind: probability}`` drawn from a ``random.Random(seed)`` (chaos runs),
  so a failing run can be replayed with the same seed.
"""
from __future__ import annotations

import random
import threading
from collections import Counter
from typing import Iterable, Sequence


class FaultInjector:
    def __init__(self, *, seed: int = 0, rates: dict[str, float] | None = None) -> None:
        self._lock = threading.Lock()
        self._seed = seed
        self._rng = random.Random(seed)
        self._rates: dict[str, float] = dict(rates or {})
        self._script: list[dict] = []
        self.fired: Counter[str] = Counter()

    def configure(self, *, rates: dict[str, float] | None = None, script: list[dict] | None = None,
                  seed: int | None = None) -> None:
        """Replace the rates and/or the script; a new seed restarts the random sequence."""
        with self._lock:
            if seed is not None:
                self._seed = seed
                self._rng = random.Random(seed)
            if rates is not None:
                unknown = [k for k, v in rates.items() if not 0.0 <= float(v) <= 1.0]
                if unknown:
                    raise ValueError(f"fault rates must be between 0 and 1: {unknown}")
                self._rates = {k: float(v) for k, v in rates.items()}
            if script is not None:
                self._script = [dict(entry, times=int(entry.get("times", 1))) for entry in script]

    def clear(self) -> None:
        self.configure(rates={}, script=[])

    def draw(self, kinds: Iterable[str], *, method: str | None = None) -> str | None:
        """Return the fault to apply at this point, if any, among ``kinds``."""
        detail = self.draw_detail(kinds, method=method)
        return None if detail is None else detail["kind"]

    def draw_detail(self, kinds: Iterable[str], *, method: str | None = None) -> dict | None:
        """Like :meth:`draw`, but return the whole script entry (``{"kind": ..., **extras}``), so a
        script can carry parameters for the fault (``{"kind": "slow", "slow_s": 3}``)."""
        kinds = list(kinds)
        with self._lock:
            for entry in self._script:
                if entry["kind"] in kinds and entry["times"] > 0 and entry.get("method") in (None, method):
                    entry["times"] -= 1
                    self._script = [e for e in self._script if e["times"] > 0]
                    self.fired[entry["kind"]] += 1
                    return {k: v for k, v in entry.items() if k != "times"}
            for kind in kinds:
                rate = self._rates.get(kind, 0.0)
                if rate and self._rng.random() < rate:
                    self.fired[kind] += 1
                    return {"kind": kind}
        return None

    def choice(self, options: Sequence):
        """Pick one of ``options`` with the seeded generator (replayable like the draws)."""
        with self._lock:
            return self._rng.choice(list(options))

    def snapshot(self) -> dict:
        with self._lock:
            return {"seed": self._seed, "rates": dict(self._rates), "script": [dict(e) for e in self._script],
                    "fired": dict(self.fired)}
