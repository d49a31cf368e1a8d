"""Pull: list new and changed polls and answers from the survey API and stage them.

Each page is staged with its watermark in one transaction (``Ledger.stage_*``), so a
crash after any page loses nothing and repeats nothing. Listings start at the
watermark minus a look-back window, because answers become visible up to minutes
after their ``updated_at``. A dry-run does the same into a throw-away copy of the store.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterable, Protocol

from loguru import logger

from sync.crashpoints import crash_point
from core.errors import NotFoundError
from sync.source.models import Answer, InvalidRecord, Page, Poll

POLLS_WATERMARK = "polls"


def answers_watermark(poll_id: int) -> str:
    return f"answers:{poll_id}"


class SurveyReader(Protocol):
    def iter_polls(self, updated_since: datetime | None) -> Iterable[Page]: ...
    def iter_answers(self, poll_id: int, updated_since: datetime | None) -> Iterable[Page]: ...


@dataclass
class PullResult:
    polls_seen: int = 0
    answers_seen: int = 0
    new: int = 0
    changed: int = 0
    unchanged: int = 0
    invalid: list[InvalidRecord] = field(default_factory=list)
    deleted_polls: list[int] = field(default_factory=list)


def start_point(ledger, name: str, *, since: datetime | None, lookback: timedelta) -> datetime | None:
    if since is not None:
        return since
    mark = ledger.get_watermark(name)
    return mark - lookback if mark is not None else None


def _newest(records: list[dict[str, Any]]) -> datetime | None:
    times = [r["_updated"] for r in records]
    return max(times) if times else None


def _dump(item: Poll | Answer) -> dict[str, Any]:
    record = item.model_dump(mode="json")
    record["_updated"] = item.updated_at
    return record


def _strip(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k != "_updated"} for r in records]


def pull(survey: SurveyReader, ledger, *, since: datetime | None, poll_ids: set[int] | None, lookback: timedelta,
         run_id: str, on_page: Callable[[int], None] | None = None,
         stop: threading.Event | None = None, polls_staged: Callable[[], None] | None = None) -> PullResult:
    """Stage every poll and answer changed since the watermark (or ``since``).

    ``polls_staged`` is called once every poll this run knows is staged, before the
    answers are pulled (the poll forms' look-ups can be read meanwhile). A poll found
    deleted while its answers are pulled is marked so then.
    """
    result = PullResult()
    listed: dict[int, dict[str, Any]] = {}
    unreadable: set[int] = set()
    for page in survey.iter_polls(start_point(ledger, POLLS_WATERMARK, since=since, lookback=lookback)):
        records = [_dump(p) for p in page.items if not poll_ids or p.poll_id in poll_ids]
        result.invalid.extend(page.invalid)
        # A poll record we cannot read still has answers worth keeping: list them by its id.
        unreadable.update(r.record_id for r in page.invalid
                          if isinstance(r.record_id, int) and not isinstance(r.record_id, bool) and r.record_id > 0
                          and (not poll_ids or r.record_id in poll_ids))
        result.polls_seen += len(records)
        for record in records:
            listed[record["poll_id"]] = record
        newest = _newest([_dump(p) for p in page.items])
        if records or newest:
            ledger.stage_polls(polls=_strip(records), run_id=run_id,
                               watermark=(POLLS_WATERMARK, newest) if newest and not poll_ids else None)

    known = {row.poll_id for row in ledger.poll_rows(poll_ids=None) if row.status != "deleted"}
    everything = known | set(listed) | unreadable
    answered = getattr(survey, "answer_poll_ids", None)
    if answered is not None:  # a pushing source: answers may come for a poll it never registered
        answered_ids = set(answered())
        _stage_unregistered(ledger, sorted(answered_ids - known - set(listed)), only=poll_ids, run_id=run_id)
        everything |= answered_ids
    targets = sorted(everything & poll_ids if poll_ids else everything)
    if polls_staged is not None:
        polls_staged()
    for poll_id in targets:
        if stop is not None and stop.is_set():  # each staged page moved its own watermark: safe to stop
            break
        name = answers_watermark(poll_id)
        try:
            for page in survey.iter_answers(poll_id, start_point(ledger, name, since=since, lookback=lookback)):
                records = [_dump(a) for a in page.items]
                result.invalid.extend(page.invalid)
                result.answers_seen += len(records)
                if on_page is not None:
                    on_page(len(records))
                if not records:
                    continue
                counts = ledger.stage_answers(answers=_strip(records), watermark=(name, _newest(records)),
                                              run_id=run_id)
                crash_point("staged")
                result.new += counts.new
                result.changed += counts.changed
                result.unchanged += counts.unchanged
        except NotFoundError:
            logger.warning("poll {} is gone from the survey platform (404); its answers already staged are kept",
                           poll_id)
            result.deleted_polls.append(poll_id)
            ledger.mark_poll_deleted(poll_id=poll_id)
    return result


UNREGISTERED_AT = datetime(2000, 1, 1, tzinfo=timezone.utc)  # older than any registration, which then wins


def unregistered_poll(poll_id: int) -> dict[str, Any]:
    """What is known of a poll that answers name but nobody registered: its id."""
    stamp = UNREGISTERED_AT.isoformat()
    return {"poll_id": poll_id, "poll_name": f"Опросная форма #{poll_id}", "poll_language": "", "employee_email": "",
            "status": "unregistered", "created_at": stamp, "updated_at": stamp, "questions": []}


def _stage_unregistered(ledger, poll_ids: list[int], *, only: set[int] | None, run_id: str) -> None:
    wanted = [p for p in poll_ids if not only or p in only]
    if wanted:
        logger.warning("answers came for {} poll(s) never registered ({}); their poll forms are made from what "
                       "is known", len(wanted), ", ".join(map(str, wanted[:10])))
        ledger.stage_polls(polls=[unregistered_poll(p) for p in wanted], watermark=None, run_id=run_id)
