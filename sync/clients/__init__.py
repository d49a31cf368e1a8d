"""The two HTTP clients (survey platform, Bitrix24) and what they share.

``rows(method, result, key=None)`` is the one reader of list pages in PHP shapes
(see ``sync.clients.bitrix24_replies.rows``): callers outside the clients use it too,
so every list is read the same way and an unreadable page raises ``RowsShapeError``.
"""
from sync.clients.bitrix24_replies import RowsShapeError, rows

__all__ = ["RowsShapeError", "rows"]
