"""A dry-run is the real run over a throw-away copy of the store: what the ledger selects for
pushing reaches the preview and the run alike, because both go through the same lines."""
from __future__ import annotations

from storage.ledger import Ledger


def _skip_answer(monkeypatch, answer_id: int) -> None:
    """Change push selection the way a future rule might: this answer is not offered to push."""
    original = Ledger.answers_to_push

    def answers_to_push(self, **kwargs):
        for rows in original(self, **kwargs):
            yield [r for r in rows if r.answer_id != answer_id]

    monkeypatch.setattr(Ledger, "answers_to_push", answers_to_push)


def test_a_change_to_push_selection_reaches_dry_run_and_run_alike(job, monkeypatch):
    skipped = 814573981
    _skip_answer(monkeypatch, skipped)
    preview = job.run(dry_run=True, keep_plan=True)
    previewed = {a.answer_id for a in preview.plan.answers}
    assert previewed and skipped not in previewed
    real = job.run(keep_plan=True)
    assert {a.answer_id for a in real.plan.answers} == previewed
    assert preview.counts["planned"] == real.counts["planned"] == len(previewed)


def test_dry_run_counts_what_it_reads_as_new_like_a_run_does(job):
    preview = job.run(dry_run=True, keep_plan=True)
    real = job.run(keep_plan=True)
    assert preview.counts["new"] == real.counts["new"] > 0
    assert preview.counts["answers_seen"] == real.counts["answers_seen"]


def test_dry_run_leaves_the_real_store_untouched(job):
    job.run(dry_run=True)
    ledger = job.ledger()
    assert not any(ledger.counts_by_status().values()) and ledger.last_runs(5) == [] and ledger.watermarks() == {}
