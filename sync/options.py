"""What a run is asked to do (``RunOptions``) and what it did (``RunSummary``).

Apart from the orchestrator so that the report, the metrics and the CLI can read a
summary without importing the pipeline.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Callable, Protocol

from pydantic import BaseModel, Field

from sync.plan.models import Plan


@dataclass
class RunOptions:
    command: str = "sync"
    since: datetime | None = None
    poll_ids: set[int] = field(default_factory=set)
    dry_run: bool = False
    pull: bool = True
    answer_ids: set[int] = field(default_factory=set)
    include_attention: bool = False
    force: bool = False          # push ``answer_ids`` whatever their state (replay)
    keep_plan: bool = False
    lookback: timedelta = timedelta(minutes=10)
    chunk_size: int = 2000
    batch_size: int = 50
    concurrency: int = 1
    bulk: bool = False           # create contacts and deals with crm.item.batchImport (skips CRM automation)
    stop: StopSignal | None = None        # set by SIGTERM: finish the batches in flight, send no more
    source_name: str | None = None
    # A budget for one run (``--max-requests``, ``--max-duration``): once spent, the run stops
    # as on SIGTERM and the next run goes on from there. Requests are Bitrix24 requests.
    max_requests: int | None = None
    max_duration_s: float | None = None
    # A dry-run waits this long for a real run to finish before copying the store (0: skip at once).
    lock_wait_s: float = 0.0

    @property
    def stopping(self) -> bool:
        return self.stop is not None and self.stop.is_set()


class StopSignal(Protocol):
    def is_set(self) -> bool: ...


class RunBudget:
    """A stop signal that is also set once a run has spent its budget; asked before each batch.

    ``is_set()`` is true when ``stop`` (SIGTERM) is set, or once ``requests()`` (the
    Bitrix24 requests this run made) reached ``max_requests`` or ``max_duration_s`` have
    passed since the budget was made. Asked where the run decides to send the next batch
    (and before each chunk, poll-form write and pulled page), so batches already in flight
    finish: a run can end a few requests past ``max_requests`` (the batches in flight,
    at most the push concurrency less one, and their retries). ``reason`` says which
    budget ran out, for the run's record.
    """

    def __init__(self, stop: StopSignal | None, *, max_requests: int | None, max_duration_s: float | None,
                 requests: Callable[[], int], clock: Callable[[], float] = time.monotonic) -> None:
        if max_requests is not None and max_requests < 1:
            raise ValueError(f"max_requests must be at least 1, got {max_requests}")
        if max_duration_s is not None and max_duration_s <= 0:
            raise ValueError(f"max_duration_s must be positive, got {max_duration_s}")
        self.stop = stop
        self.max_requests = max_requests
        self.max_duration_s = max_duration_s
        self._requests = requests
        self._clock = clock
        self._started = clock()
        self.reason = ""

    def is_set(self) -> bool:
        if self.reason:
            return True
        if self.stop is not None and self.stop.is_set():
            return True
        if self.max_requests is not None:
            made = self._requests()
            if made >= self.max_requests:
                self.reason = (f"run budget reached: {made} Bitrix24 requests of --max-requests "
                               f"{self.max_requests}; the batches in flight finished, the rest waits for the next "
                               f"run")
                return True
        if self.max_duration_s is not None:
            elapsed = self._clock() - self._started
            if elapsed >= self.max_duration_s:
                self.reason = (f"run budget reached: {elapsed:.0f}s of --max-duration {self.max_duration_s:g}s; "
                               f"the batches in flight finished, the rest waits for the next run")
                return True
        return False

    def set(self) -> None:  # the stop-event interface: stopping a budgeted run by hand stops it
        if self.stop is not None and hasattr(self.stop, "set"):
            self.stop.set()
        else:
            self.reason = self.reason or "stopped on request"


class RunSummary(BaseModel):
    run_id: str
    command: str = "sync"
    dry_run: bool = False
    started_at: datetime
    finished_at: datetime | None = None
    duration_s: float = 0.0
    outcome: str = "running"
    error: str | None = None
    counts: dict[str, int] = Field(default_factory=dict)
    problems_by_code: dict[str, int] = Field(default_factory=dict)
    bitrix_requests: int = 0
    bitrix_retries: int = 0
    survey_requests: int = 0
    plan: Plan | None = None
    inbox: dict[str, Any] | None = None   # what the intake received and refused (source "intake")
    # The store's backlog after the run, whatever this run did: a run that adds nothing still
    # reports what is waiting for a person (None: not measured, e.g. the store failed).
    attention_backlog: int | None = None
    attention_new: int | None = None              # of the backlog, answers that entered it during this run
    attention_oldest_seen_at: datetime | None = None  # first seen of the longest-waiting answer in it

    @property
    def needs_attention(self) -> int:
        return self.counts.get("needs_attention", 0)
