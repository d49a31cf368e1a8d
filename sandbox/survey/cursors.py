"""Opaque, signed listing cursors.

A cursor names a position in one listing, ``(updated_at, id)`` of the last item
served, so that a page boundary inside a tie of timestamps continues exactly, and
carries its issue time so that it can expire. It is signed: a client cannot forge or
edit one, only pass it back.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from typing import NamedTuple

# Fixed, so that cursors survive a restart of the emulator (as a real server's do).
_KEY = b"survey-sandbox-cursor-v1"
_MAC_BYTES = 12


class CursorError(ValueError):
    """Raised when a cursor is malformed, forged or belongs to another listing."""


class Cursor(NamedTuple):
    scope: str  # "polls" or "answers:<poll_id>"
    updated_us: int
    item_id: int
    issued_us: int

    @property
    def position(self) -> tuple[int, int]:
        return self.updated_us, self.item_id


def encode_cursor(cursor: Cursor) -> str:
    payload = f"{cursor.scope}|{cursor.updated_us}|{cursor.item_id}|{cursor.issued_us}".encode()
    mac = hmac.new(_KEY, payload, hashlib.sha256).digest()[:_MAC_BYTES]
    return base64.urlsafe_b64encode(mac + payload).rstrip(b"=").decode("ascii")


def decode_cursor(text: str, *, scope: str) -> Cursor:
    """The cursor in ``text``, checked against ``scope``; ``CursorError`` otherwise."""
    try:
        raw = base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        raise CursorError("cursor is not one this server issued (not base64url)") from None
    mac, payload = raw[:_MAC_BYTES], raw[_MAC_BYTES:]
    if len(mac) < _MAC_BYTES or not hmac.compare_digest(
            mac, hmac.new(_KEY, payload, hashlib.sha256).digest()[:_MAC_BYTES]):
        raise CursorError("cursor is not one this server issued (bad signature)")
    try:
        cursor_scope, updated_us, item_id, issued_us = payload.decode("ascii").split("|")
        cursor = Cursor(cursor_scope, int(updated_us), int(item_id), int(issued_us))
    except ValueError:
        raise CursorError("cursor is not one this server issued (bad payload)") from None
    if cursor.scope != scope:
        raise CursorError(f"cursor belongs to another listing ({cursor.scope}), not {scope}")
    return cursor
