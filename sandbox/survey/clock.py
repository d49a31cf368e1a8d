"""Timestamps and the emulator's controllable clock.

The platform speaks RFC 3339 with an offset and every record keeps the offset it was
written with (``+03:00``, ``Z`` ...). Inside the emulator an instant is an integer
count of microseconds since the epoch, so ordering and visibility compare instants,
never strings.
"""
from __future__ import annotations

import re
import threading
from datetime import datetime, timedelta, timezone
from typing import Callable

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_US = timedelta(microseconds=1)

# RFC 3339 section 5.6 ("T" may be lower case or, per its note, a space). An offset is
# required: a naive timestamp names no instant.
_RFC3339 = re.compile(
    r"(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?([Zz]|[+-]\d{2}:\d{2})")


def parse_rfc3339(text: str) -> datetime:
    """Parse an RFC 3339 timestamp with an offset into an aware datetime.

    Raises ``ValueError`` for anything else, naive timestamps included.
    """
    match = _RFC3339.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f"not an RFC 3339 timestamp with an offset: {text!r}")
    date, time_, fraction, offset = match.groups()
    offset = "+00:00" if offset in ("Z", "z") else offset
    micro = f".{(fraction or '')[:6].ljust(6, '0')}" if fraction else ""
    hours, minutes = int(offset[1:3]), int(offset[4:6])
    if hours > 23 or minutes > 59:
        raise ValueError(f"offset out of range in {text!r}")
    return datetime.fromisoformat(f"{date}T{time_}{micro}{offset}")


def to_us(moment: datetime) -> int:
    """Microseconds since the epoch; a naive datetime is taken as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return (moment - EPOCH) // _US


def from_us(us: int) -> datetime:
    return EPOCH + timedelta(microseconds=us)


def offset_suffix(text: str) -> str:
    """The offset as written at the end of an RFC 3339 string (``Z``, ``+03:00``)."""
    match = _RFC3339.fullmatch(text)
    if match is None:
        raise ValueError(f"not an RFC 3339 timestamp with an offset: {text!r}")
    return "Z" if match.group(4) in ("Z", "z") else match.group(4)


def format_rfc3339(us: int, suffix: str = "Z") -> str:
    """Render an instant in the offset ``suffix`` (as written by :func:`offset_suffix`)."""
    if suffix in ("Z", "z"):
        tz, tail = timezone.utc, "Z"
    else:
        sign = -1 if suffix[0] == "-" else 1
        tz = timezone(sign * timedelta(hours=int(suffix[1:3]), minutes=int(suffix[4:6])))
        tail = suffix
    local = from_us(us).astimezone(tz)
    text = local.strftime("%Y-%m-%dT%H:%M:%S")
    if local.microsecond:
        text += f".{local.microsecond:06d}"
    return text + tail


def coerce_datetime(value: datetime | str) -> datetime:
    """Accept an aware datetime, a naive one (taken as UTC) or an RFC 3339 string."""
    if isinstance(value, str):
        return parse_rfc3339(value)
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


class Clock:
    """The emulator's notion of "now": a base clock, an offset, or a frozen instant.

    By default it follows ``base`` (real UTC time). ``advance`` moves it forward
    whatever the mode; ``set`` freezes it at an instant (it then moves only through
    ``advance``/``set``); ``set(None)`` goes back to following ``base``.
    """

    def __init__(self, base: Callable[[], datetime] | None = None) -> None:
        self._base = base or utc_now
        self._lock = threading.Lock()
        self._offset = timedelta(0)
        self._frozen: datetime | None = None

    @property
    def frozen(self) -> bool:
        return self._frozen is not None

    def now(self) -> datetime:
        with self._lock:
            if self._frozen is not None:
                return self._frozen
            return coerce_datetime(self._base()) + self._offset

    def now_us(self) -> int:
        return to_us(self.now())

    def advance(self, seconds: float) -> datetime:
        step = timedelta(seconds=seconds)
        with self._lock:
            if self._frozen is not None:
                self._frozen += step
            else:
                self._offset += step
        return self.now()

    def set(self, moment: datetime | str | None) -> datetime:
        with self._lock:
            self._frozen = None if moment is None else coerce_datetime(moment)
            if moment is None:
                self._offset = timedelta(0)
        return self.now()
