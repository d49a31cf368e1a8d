"""The intake's inbox as a survey source: what the portal pushed, read like the pull API.

``InboxSource`` has the interface the pull stage uses from ``SurveyClient``
(``SurveyReader`` in ``sync/source/pull.py``) and returns the same source-neutral
models, so staging, the ledger, watermarks and edits work unchanged:

* ``iter_polls(updated_since)`` — the newest version of each registered poll;
* ``iter_answers(poll_id, updated_since)`` — the newest version of each answer of a poll;
* ``get_answer(poll_id, answer_id)`` — one answer's newest version (``NotFoundError``);
* ``answer_poll_ids()`` — every poll id answers were pushed for, registered or not:
  the pull stage must list answers of these too, since ``iter_polls`` never invents a
  poll the portal did not register.

A version's ``updated_at`` is when the intake stored it (never behind an earlier one),
so ``updated_since = watermark − look-back`` finds every new version; pages are in
``(updated_at, version id)`` order. ``created_at`` of a poll is when its first version
was stored; of an answer, the portal's ``create_time``.
"""
from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from core.errors import NotFoundError
from sync.source.models import Answer, InvalidRecord, Page, Poll, utc
from storage.inbox import InboxStore

PAGE_SIZE = 500

# header_data keys that are mapped to their own fields (the rest goes to meta)
_HEADER_OWN = ("poll_id", "answer_id", "create_time", "analytics")
# analytics keys that are mapped to their own fields
_ANALYTICS_OWN = ("params", "cookies")


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    return "list" if isinstance(value, list) else "object" if isinstance(value, dict) else type(value).__name__


def answer_record(body: dict[str, Any], *, updated_at: datetime) -> dict[str, Any]:
    """A stored postAnswer packet → the dict ``Answer`` validates (ids as the intake checked them).

    ``answers``: each ``data`` key and value in order, values as they came; ``utm``: all of
    ``analytics.params``; ``cookies``: ``analytics.cookies`` under their own names; ``meta``:
    the rest of ``analytics`` and ``header_data`` (url, ip, date, timeZone,
    mailingListSubscription, form_kind, gid, and anything new). Parts of the wrong shape are
    listed in ``ignored`` for the planner to report.
    """
    header = body.get("header_data") if isinstance(body.get("header_data"), dict) else {}
    ignored: list[dict[str, str]] = []
    analytics = header.get("analytics")
    if analytics is None:
        analytics = {}
    elif not isinstance(analytics, dict):
        ignored.append({"part": "analytics", "got": _json_type(analytics)})
        analytics = {}
    data = body.get("data")
    if data is None:
        data = {}
    elif not isinstance(data, dict):
        ignored.append({"part": "data", "got": _json_type(data)})
        data = {}
    meta = {k: v for k, v in analytics.items() if k not in _ANALYTICS_OWN}
    meta.update({k: v for k, v in header.items() if k not in _HEADER_OWN and k not in meta})
    record: dict[str, Any] = {
        "answer_id": header.get("answer_id"),
        "poll_id": header.get("poll_id"),
        "created_at": header.get("create_time"),
        "updated_at": updated_at,
        "answers": [{"code": str(code), "value": value} for code, value in data.items()],
        "utm": analytics.get("params"),
        "cookies": analytics.get("cookies"),
        "meta": meta,
    }
    if ignored:
        record["ignored"] = ignored
    return record


def poll_record(body: dict[str, Any], *, poll_id: int, created_at: datetime, updated_at: datetime) -> dict[str, Any]:
    """A stored postPoll packet → the dict ``Poll`` validates; ``name`` fills in a missing ``poll_name``."""
    name = body.get("poll_name")
    if name is None:
        name = body.get("name")
    return {"poll_id": poll_id, "poll_name": name if name is not None else "",
            "poll_language": body.get("poll_language"), "employee_email": body.get("employee_email"),
            "status": "active", "created_at": created_at, "updated_at": updated_at}


class InboxSource:
    """Reads the intake's inbox like ``SurveyClient`` reads the pull API (see the module docstring)."""

    def __init__(self, engine: Any, *, page_size: int = PAGE_SIZE) -> None:
        self.store = InboxStore(engine)
        self.page_size = page_size

    def __enter__(self) -> InboxSource:
        return self

    def __exit__(self, *exc_info: object) -> None:
        return None

    def close(self) -> None:
        return None

    def iter_polls(self, updated_since: datetime | None = None) -> Iterator[Page]:
        """Pages of ``Poll``: the newest version of each poll stored at or after ``updated_since``."""
        since = utc(updated_since) if updated_since is not None else None
        after: tuple[datetime, int] | None = None
        while True:
            rows = self.store.newest_polls(since=since, after=after, limit=self.page_size)
            if not rows:
                return
            items, invalid = [], []
            for row in rows:
                raw = poll_record(row.body, poll_id=row.poll_id, created_at=row.first_stored_at,
                                  updated_at=row.stored_at)
                try:
                    items.append(Poll.model_validate(raw))
                except ValidationError as exc:
                    invalid.append(InvalidRecord(raw=row.body, error=_short(exc), record_id=row.poll_id))
            after = (rows[-1].stored_at, rows[-1].id)
            last = len(rows) < self.page_size
            yield Page(items=items, invalid=invalid, next_cursor=None if last else f"{after[1]}")
            if last:
                return

    def iter_answers(self, poll_id: int, updated_since: datetime | None = None) -> Iterator[Page]:
        """Pages of ``Answer`` of one poll id (registered or not): the newest version of each answer
        stored at or after ``updated_since``. An unknown poll id is simply empty, never ``NotFoundError``:
        the portal has no deletions to report."""
        since = utc(updated_since) if updated_since is not None else None
        after: tuple[datetime, int] | None = None
        while True:
            rows = self.store.newest_answers(poll_id=poll_id, since=since, after=after, limit=self.page_size)
            if not rows:
                return
            items, invalid = [], []
            for row in rows:
                answer, problem = _answer(row)
                if answer is not None:
                    items.append(answer)
                else:
                    invalid.append(problem)
            after = (rows[-1].stored_at, rows[-1].id)
            last = len(rows) < self.page_size
            yield Page(items=items, invalid=invalid, next_cursor=None if last else f"{after[1]}")
            if last:
                return

    def get_answer(self, poll_id: int, answer_id: int) -> Answer:
        """One answer's newest version; ``NotFoundError`` if the portal never pushed it for this poll."""
        row = self.store.newest_answer(answer_id=answer_id)
        if row is None or row.poll_id != poll_id:
            raise NotFoundError(f"answer {answer_id} of poll {poll_id} was never delivered to the intake "
                                f"→ ask the portal's operator to re-send it", system="intake", status=404)
        answer, problem = _answer(row)
        if answer is None:
            raise NotFoundError(f"answer {answer_id} in the inbox cannot be read: {problem.error}",
                                system="intake", status=404)
        return answer

    def answer_poll_ids(self) -> list[int]:
        """Every poll id answers were pushed for (ascending), including polls never registered."""
        return self.store.answer_poll_ids()


def _answer(row: Any) -> tuple[Answer | None, InvalidRecord | None]:
    record = answer_record(row.body, updated_at=row.stored_at)
    record["answer_id"], record["poll_id"] = row.answer_id, row.poll_id  # the columns the intake checked
    try:
        answer = Answer.model_validate(record)
    except ValidationError as exc:
        return None, InvalidRecord(raw=row.body, error=_short(exc), record_id=row.answer_id, poll_id=row.poll_id)
    return answer, None


def _short(exc: ValidationError) -> str:
    error = exc.errors()[0]
    return f"{'.'.join(str(p) for p in error['loc'])}: {error['msg']}"
