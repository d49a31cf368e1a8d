"""Fakes shared by the client tests: a clock that only moves when slept on, top-of-range jitter,
a session that records the keyword arguments of every request, and a loguru capture."""
from __future__ import annotations

import json
import pathlib
import threading

import pytest
import requests
from loguru import logger

FIXTURES = pathlib.Path(__file__).parent / "fixtures"


def load_fixture(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


class FakeClock:
    """A monotonic clock that advances only through ``sleep``; records every requested sleep."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)
            self.now += seconds

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += seconds


class MaxJitter:
    """An rng whose ``uniform(a, b)`` is always ``b``: backoff waits become exactly base·2^(n-1)."""

    def uniform(self, a: float, b: float) -> float:
        return b


class SpySession(requests.Session):
    """A real Session (so ``responses`` intercepts it) that remembers each call's kwargs."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[dict] = []

    def request(self, method, url, **kwargs):  # type: ignore[override]
        self.sent.append({"method": method, "url": url, **kwargs})
        return super().request(method, url, **kwargs)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def spy_session() -> SpySession:
    return SpySession()


@pytest.fixture
def log_lines():
    """Every loguru message (fully formatted) logged during the test."""
    lines: list[str] = []
    sink_id = logger.add(lambda message: lines.append(str(message)), level="DEBUG", format="{message}")
    yield lines
    logger.remove(sink_id)
