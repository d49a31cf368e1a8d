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

    @property
    def needs_attention(self) -> int:
        return self.counts.get("needs_attention", 0)
