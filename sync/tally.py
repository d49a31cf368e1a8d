"""What a run counts as it goes: the counters of the summary, problems by code, the plan kept for a report."""
from __future__ import annotations

from collections import Counter
from typing import Iterable

from sync.plan.models import Plan, Problem

# The summary counter for a command of each kind that the CRM accepted.
WRITTEN_COUNTER = {
    "poll_form_add": "poll_forms_created",
    "poll_form_update": "poll_forms_updated",
    "contact_add": "contacts_created",
    "contact_update": "contacts_updated",
    "deal_add": "deals_created",
    "deal_update": "deals_updated",
    "summary_add": "summaries_added",
}


class Tally:
    def __init__(self, *, keep_plan: bool) -> None:
        self.counts: Counter[str] = Counter()
        self.problems: Counter[str] = Counter()
        self.plan: Plan | None = Plan() if keep_plan else None

    def count(self, name: str, n: int = 1) -> None:
        self.counts[name] += n

    def note(self, problems: Iterable[Problem]) -> None:
        for p in problems:
            self.problems[p.code] += 1

    def written(self, kind: str) -> None:
        self.counts[WRITTEN_COUNTER[kind]] += 1

    @property
    def attention(self) -> int:
        return self.counts["needs_attention"] + self.counts["failed"] + self.counts["unknown"]
