"""Pieces both HTTP clients share: ``Retry-After``, loopback checks, body snippets, User-Agent.

How they retry is ``sync.clients.retry``; what they retry is each client's own table.
"""
from __future__ import annotations

import ipaddress
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any, Mapping

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
