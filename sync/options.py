"""What a run is asked to do (``RunOptions``) and what it did (``RunSummary``).

Apart from the orchestrator so that the report, the metrics and the CLI can read a
summary without importing the pipeline.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta

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
    stop: threading.Event | None = None   # set by SIGTERM: finish the batches in flight, send no more
    source_name: str | None = None
    # A dry-run waits this long for a real run to finish before copying the store (0: skip at once).
    lock_wait_s: float = 0.0

    @property
    def stopping(self) -> bool:
        return self.stop is not None and self.stop.is_set()


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
    # The store's backlog after the run, whatever this run did: a run that adds nothing still
    # reports what is waiting for a person (None: not measured, e.g. the store failed).
    attention_backlog: int | None = None
    attention_new: int | None = None              # of the backlog, answers that entered it during this run
    attention_oldest_seen_at: datetime | None = None  # first seen of the longest-waiting answer in it

    @property
    def needs_attention(self) -> int:
        return self.counts.get("needs_attention", 0)
