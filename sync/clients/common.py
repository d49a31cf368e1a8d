"""Pieces both HTTP clients share: retry pacing, ``Retry-After``, loopback checks, User-Agent.

The clients differ in *what* they retry (each classifies its own API's failures in
one function); they agree on *how*: exponential backoff with full jitter, capped by
attempts and by total time, the server's ``Retry-After`` winning when present.
"""
from __future__ import annotations

import ipaddress
import random
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any, Mapping, Protocol

import requests

from core.redact import redact


def _version() -> str:
    try:
        from importlib.metadata import PackageNotFoundError, version
        try:
            return version("survey-bitrix24-sync")
        except PackageNotFoundError:
            pass
    except ImportError:  # pragma: no cover
        pass
    import sync
    return str(getattr(sync, "__version__", "0.1.0"))


USER_AGENT = f"survey-bitrix24-sync/{_version()} python-requests/{requests.__version__}"


class _Uniform(Protocol):
    def uniform(self, a: float, b: float) -> float: ...


@dataclass
class RetryPolicy:
    """How long to wait before attempt ``n + 1``, and when to stop.

    ``backoff(n)`` is full jitter: uniform in ``[0, min(cap_s, base_s * 2**(n-1))]``
    (AWS's "full jitter", stamina's default shape). ``rng`` only needs ``uniform``.
    """

    max_attempts: int = 6
    max_wait_s: float = 300.0
    base_s: float = 1.0
    cap_s: float = 60.0
    rng: _Uniform = field(default_factory=random.Random)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {self.max_attempts}")
        if self.max_wait_s < 0:
            raise ValueError(f"max_wait_s must be >= 0, got {self.max_wait_s}")

    def backoff(self, attempt: int) -> float:
        ceiling = min(self.cap_s, self.base_s * (2 ** max(0, attempt - 1)))
        return max(0.0, float(self.rng.uniform(0.0, ceiling)))

    def next_wait(self, attempt: int, retry_after: float | None) -> float:
        """The wait after failed attempt ``attempt``; the server's hint wins."""
        if retry_after is not None:
            return max(0.0, float(retry_after))
        return self.backoff(attempt)

    def give_up_reason(self, attempt: int, elapsed: float, wait: float) -> str | None:
        """Why not to try again after ``attempt`` failed (None: go on)."""
        if attempt >= self.max_attempts:
            return f"gave up after {attempt} attempts"
        if elapsed + wait > self.max_wait_s:
            return (f"gave up after {attempt} attempts: waiting {wait:.1f}s more would exceed "
                    f"the {self.max_wait_s:.0f}s retry budget")
        return None


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or HTTP-date), or None."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        seconds = (when - (now or datetime.now(timezone.utc))).total_seconds()
    if seconds != seconds:  # NaN
        return None
    return max(0.0, seconds)


def is_loopback_host(host: str | None) -> bool:
    """True for ``localhost``, 127.0.0.0/8 and ::1 (where plain http never leaves the machine)."""
    if not host:
        return False
    host = host.strip("[]").lower().rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


NOT_JSON = object()


def decode_json(response: requests.Response) -> Any:
    """The JSON body of ``response``, or ``NOT_JSON`` (an HTML error page, a cut-off body)."""
    try:
        return response.json()
    except ValueError:
        return NOT_JSON


def body_snippet(response: requests.Response, limit: int = 120) -> str:
    """The start of a non-JSON body, one line, redacted (for messages)."""
    try:
        text = response.text or ""
    except Exception:  # a body that cannot even be decoded
        return "<undecodable body>"
    text = " ".join(text.split())
    if len(text) > limit:
        text = text[:limit] + "…"
    return redact(text)


def describe_exception(exc: BaseException) -> str:
    """``ExceptionType: message`` with secrets removed (requests puts URLs in messages)."""
    message = " ".join(str(exc).split())
    if len(message) > 300:
        message = message[:300] + "…"
    return redact(f"{type(exc).__name__}: {message}" if message else type(exc).__name__)


def walk_causes(exc: BaseException) -> list[BaseException]:
    """``exc`` and everything nested in it (args, ``reason``, ``__cause__``, ``__context__``)."""
    seen: list[BaseException] = []
    stack: list[Any] = [exc]
    while stack:
        item = stack.pop()
        if not isinstance(item, BaseException) or any(item is s for s in seen):
            continue
        seen.append(item)
        stack.extend(a for a in getattr(item, "args", ()) if isinstance(a, BaseException))
        for attr in ("reason", "__cause__", "__context__"):
            nested = getattr(item, attr, None)
            if isinstance(nested, BaseException):
                stack.append(nested)
    return seen


def header(headers: Mapping[str, str] | None, name: str) -> str | None:
    """A header value, case-insensitively, from any mapping."""
    if not headers:
        return None
    getter = getattr(headers, "get", None)
    value = getter(name) if getter else None
    if value is not None:
        return value
    lowered = name.lower()
    for key, val in headers.items():
        if key.lower() == lowered:
            return val
    return None


class ClientPlumbing:
    """Session ownership and thread-safe counters, the same for both HTTP clients.

    A subclass sets ``_session``, ``_owns_session``, ``_lock`` and ``_stats`` (an instance
    of ``_stats_type``) in its constructor.
    """

    _stats_type: type

    def __enter__(self):
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the HTTP session if this client created it."""
        if self._owns_session:
            self._session.close()

    @property
    def stats(self):
        """A consistent snapshot of the counters."""
        with self._lock:
            return self._stats.model_copy(deep=True)

    def reset_stats(self) -> None:
        with self._lock:
            self._stats = self._stats_type()
