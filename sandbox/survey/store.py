"""The emulator's in-memory state: polls, answers, ordering and visibility.

Answers stay packed (``PackedAnswer``: ids, ``updated_at`` instant, JSON bytes) in a
dict by id, with one sorted index of ``(updated_us, answer_id)`` per poll; a page is a
bisect into that index plus a short scan, so listing 100,000 answers page by page
costs no more than the bytes it sends.

Late visibility: an answer is readable once ``now >= updated_at + lag``. The lag is
``visibility_lag_s`` for every answer ("fixed"), or a deterministic share of it per
answer ("spread": answers then become visible out of order, as replication makes
them in production), or a per-answer override set when the answer was added.
"""
from __future__ import annotations

import hashlib
import json
import threading
from bisect import bisect_left, bisect_right, insort
from typing import Iterable, NamedTuple

from sandbox.survey.clock import parse_rfc3339, to_us
from sandbox.survey.dataset import Dataset, PackedAnswer, dump_json, pack_answer, validate_poll

LAG_MODES = ("fixed", "spread")


class Page(NamedTuple):
    items: list[bytes]
    # Position (updated_us, id) of the last item when more items follow; None on the last page.
    last: tuple[int, int] | None


class _Poll:
    __slots__ = ("poll_id", "updated_us", "body", "deleted")

    def __init__(self, doc: dict) -> None:
        self.poll_id: int = doc["poll_id"]
        self.updated_us = to_us(parse_rfc3339(doc["updated_at"]))
        self.body = dump_json(doc)
        self.deleted = False


def _spread_share(seed: int, answer_id: int, updated_us: int) -> float:
    digest = hashlib.blake2b(f"{seed}:{answer_id}:{updated_us}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2 ** 64


class SurveyStore:
    """Thread-safe state behind the API; the HTTP layer and the admin handle share it."""

    def __init__(self, dataset: Dataset, *, visibility_lag_s: float = 0.0, visibility_lag_mode: str = "fixed",
                 seed: int = 0) -> None:
        self._lock = threading.RLock()
        self._polls: dict[int, _Poll] = {}
        self._answers: dict[int, PackedAnswer] = {}
        self._index: dict[int, list[tuple[int, int]]] = {}
        self._lag_overrides: dict[int, float] = {}
        self.seed = seed
        self.visibility_lag_s = 0.0
        self.visibility_lag_mode = "fixed"
        self.configure_visibility(lag_s=visibility_lag_s, mode=visibility_lag_mode)
        for poll in dataset.polls:
            self._polls[poll["poll_id"]] = _Poll(poll)
        index = self._index
        for packed in dataset.packed:
            self._answers[packed.answer_id] = packed
            index.setdefault(packed.poll_id, []).append((packed.updated_us, packed.answer_id))
        for keys in index.values():
            keys.sort()

    def configure_visibility(self, *, lag_s: float | None = None, mode: str | None = None) -> None:
        if lag_s is not None:
            if lag_s < 0:
                raise ValueError("visibility_lag_s must be >= 0")
            self.visibility_lag_s = float(lag_s)
        if mode is not None:
            if mode not in LAG_MODES:
                raise ValueError(f"visibility_lag_mode must be one of {LAG_MODES}, got {mode!r}")
            self.visibility_lag_mode = mode

    # Visibility -----------------------------------------------------------------------------
    def visible_at_us(self, packed: PackedAnswer) -> int:
        lag = self._lag_overrides.get(packed.answer_id)
        if lag is None:
            lag = self.visibility_lag_s
            if lag and self.visibility_lag_mode == "spread":
                lag *= _spread_share(self.seed, packed.answer_id, packed.updated_us)
        return packed.updated_us + int(lag * 1_000_000)

    def _sure_visible_until(self, now_us: int) -> int:
        """Every answer with ``updated_us`` up to this is visible at ``now_us``."""
        longest = max(self.visibility_lag_s, max(self._lag_overrides.values(), default=0.0))
        return now_us - int(longest * 1_000_000) - 1

    # Polls ----------------------------------------------------------------------------------
    def poll_exists(self, poll_id: int) -> bool:
        poll = self._polls.get(poll_id)
        return poll is not None and not poll.deleted

    def poll_doc(self, poll_id: int) -> dict | None:
        """A copy of the poll as stored (deleted polls too), or None."""
        with self._lock:
            poll = self._polls.get(poll_id)
            return None if poll is None else _decode(poll.body)

    def poll_docs(self, *, include_deleted: bool = False) -> list[dict]:
        with self._lock:
            polls = sorted((p for p in self._polls.values() if include_deleted or not p.deleted),
                           key=lambda p: (p.updated_us, p.poll_id))
            return [_decode(p.body) for p in polls]

    def put_poll(self, doc: dict, *, new: bool) -> dict:
        """Add (``new``) or replace a poll; returns a copy of what is stored."""
        validate_poll(doc)
        with self._lock:
            existing = self._polls.get(doc["poll_id"])
            if new and existing is not None:
                raise ValueError(f"poll {doc['poll_id']} already exists")
            if not new and (existing is None or existing.deleted):
                raise KeyError(f"no poll {doc['poll_id']}")
            poll = self._polls[doc["poll_id"]] = _Poll(doc)
        return _decode(poll.body)

    def delete_poll(self, poll_id: int) -> None:
        with self._lock:
            poll = self._polls.get(poll_id)
            if poll is None or poll.deleted:
                raise KeyError(f"no poll {poll_id}")
            poll.deleted = True

    def list_polls(self, *, after: tuple[int, int] | None, since_us: int | None, limit: int) -> Page:
        with self._lock:
            keys = sorted((p.updated_us, p.poll_id) for p in self._polls.values() if not p.deleted)
            start = _start(keys, after, since_us)
            chosen = keys[start:start + limit]
            more = start + limit < len(keys)
            return Page([self._polls[key[1]].body for key in chosen], chosen[-1] if more and chosen else None)

    # Answers --------------------------------------------------------------------------------
    def answer_doc(self, answer_id: int) -> dict | None:
        with self._lock:
            packed = self._answers.get(answer_id)
            return None if packed is None else packed.decode()

    def answer_docs(self, poll_id: int | None = None, *, visible_at_us: int | None = None,
                    include_deleted_polls: bool = False) -> list[dict]:
        """Answers ordered by (updated_at, answer_id); only those visible at ``visible_at_us`` if given."""
        with self._lock:
            poll_ids: Iterable[int] = [poll_id] if poll_id is not None else list(self._index)
            keys: list[tuple[int, int]] = []
            for pid in poll_ids:
                if include_deleted_polls or self.poll_exists(pid):
                    keys.extend(self._index.get(pid, ()))
            keys.sort()
            chosen = [self._answers[answer_id] for _, answer_id in keys]
            if visible_at_us is not None:
                chosen = [p for p in chosen if self.visible_at_us(p) <= visible_at_us]
            return [p.decode() for p in chosen]

    def count_answers(self) -> int:
        return len(self._answers)

    def next_answer_id(self) -> int:
        with self._lock:
            return max(self._answers, default=900_000_000) + 1

    def put_answer(self, doc: dict, *, new: bool, lag_s: float | None = None) -> dict:
        """Add (``new``) or replace an answer, re-indexing it by its ``updated_at``."""
        packed = pack_answer(doc)
        if lag_s is not None and lag_s < 0:
            raise ValueError("a visibility lag must be >= 0")
        with self._lock:
            if packed.poll_id not in self._polls:
                raise ValueError(f"answer {packed.answer_id} names unknown poll {packed.poll_id}")
            old = self._answers.get(packed.answer_id)
            if new and old is not None:
                raise ValueError(f"answer {packed.answer_id} already exists")
            if not new:
                if old is None:
                    raise KeyError(f"no answer {packed.answer_id}")
                if old.poll_id != packed.poll_id:
                    raise ValueError(f"answer {packed.answer_id} cannot move from poll {old.poll_id}")
                self._unindex(old)
            self._answers[packed.answer_id] = packed
            insort(self._index.setdefault(packed.poll_id, []), (packed.updated_us, packed.answer_id))
            if lag_s is not None:
                self._lag_overrides[packed.answer_id] = float(lag_s)
        return packed.decode()

    def delete_answer(self, answer_id: int) -> None:
        with self._lock:
            packed = self._answers.pop(answer_id, None)
            if packed is None:
                raise KeyError(f"no answer {answer_id}")
            self._unindex(packed)
            self._lag_overrides.pop(answer_id, None)

    def _unindex(self, packed: PackedAnswer) -> None:
        keys = self._index[packed.poll_id]
        position = bisect_left(keys, (packed.updated_us, packed.answer_id))
        del keys[position]

    def get_answer(self, poll_id: int, answer_id: int, *, now_us: int) -> bytes | None:
        with self._lock:
            packed = self._answers.get(answer_id)
            if packed is None or packed.poll_id != poll_id or not self.poll_exists(poll_id):
                return None
            return packed.body if self.visible_at_us(packed) <= now_us else None

    def list_answers(self, poll_id: int, *, after: tuple[int, int] | None, since_us: int | None, limit: int,
                     now_us: int) -> Page:
        with self._lock:
            keys = self._index.get(poll_id, [])
            answers = self._answers
            sure_until = self._sure_visible_until(now_us)
            items: list[bytes] = []
            last: tuple[int, int] | None = None
            for position in range(_start(keys, after, since_us), len(keys)):
                key = keys[position]
                if key[0] > now_us:
                    break  # visible_at >= updated_at: nothing further can be visible yet
                packed = answers[key[1]]
                if key[0] <= sure_until or self.visible_at_us(packed) <= now_us:
                    if len(items) == limit:
                        return Page(items, last)
                    items.append(packed.body)
                    last = key
            return Page(items, None)


def _start(keys: list[tuple[int, int]], after: tuple[int, int] | None, since_us: int | None) -> int:
    start = bisect_right(keys, after) if after is not None else 0
    if since_us is not None:
        start = max(start, bisect_left(keys, (since_us, -1)))
    return start


def _decode(body: bytes) -> dict:
    return json.loads(body)
