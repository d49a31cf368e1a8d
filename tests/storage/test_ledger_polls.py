"""Polls: staged like answers, plus deleted, and their poll form's CRM id."""
from __future__ import annotations

from storage.ledger import Ledger, StageCounts, content_hash
from tests.storage.conftest import T0, poll


def stage(ledger: Ledger, *polls: dict) -> StageCounts:
    return ledger.stage_polls(polls=list(polls), watermark=("polls", T0), run_id="r")


def test_new_poll_is_pending(ledger):
    assert stage(ledger, poll(1), poll(2)) == StageCounts(new=2)
    rows = ledger.polls_to_push()
    assert [(r.poll_id, r.status) for r in rows] == [(1, "pending"), (2, "pending")]
    assert rows[0].payload == poll(1) and rows[0].content_hash == content_hash(poll(1))
    assert ledger.get_watermark("polls") == T0


def test_same_poll_again_changes_nothing(ledger):
    stage(ledger, poll(1))
    assert stage(ledger, poll(1)) == StageCounts(unchanged=1)


def test_pushed_poll_then_edited_becomes_changed(ledger):
    stage(ledger, poll(1))
    ledger.mark_poll_pushed(
        poll_id=1, item_id=501, assigned_by_id=9, pushed_hash=content_hash(poll(1)), problems=[]
    )
    assert ledger.polls_to_push() == []
    row = ledger.poll_rows(poll_ids=[1])[0]
    assert (row.status, row.item_id, row.assigned_by_id) == ("pushed", 501, 9)

    assert stage(ledger, poll(1, name="Open day (autumn)")) == StageCounts(changed=1)
    row = ledger.polls_to_push()[0]
    assert (row.status, row.item_id) == ("changed", 501)


def test_failed_poll_is_offered_again(ledger):
    stage(ledger, poll(1))
    ledger.mark_poll_failed(poll_id=1, error="crm.item.add: 503")
    row = ledger.polls_to_push(poll_ids=[1])[0]
    assert (row.status, row.error) == ("failed", "crm.item.add: 503")
    assert ledger.polls_to_push(poll_ids=[2]) == []


def test_deleted_poll_that_reappears_becomes_changed(ledger):
    stage(ledger, poll(1))
    ledger.mark_poll_pushed(poll_id=1, item_id=501, assigned_by_id=None, pushed_hash=content_hash(poll(1)))
    assert ledger.mark_poll_deleted(poll_id=1) is True
    assert ledger.mark_poll_deleted(poll_id=99) is False
    assert ledger.polls_to_push() == []
    assert ledger.poll_rows()[0].status == "deleted"

    assert stage(ledger, poll(1)) == StageCounts(changed=1)
    assert ledger.poll_rows()[0].status == "changed"


def test_poll_edited_while_its_form_was_written_stays_changed(ledger):
    stage(ledger, poll(1))
    stage(ledger, poll(1, name="Renamed"))
    ledger.mark_poll_pushed(poll_id=1, item_id=5, assigned_by_id=None, pushed_hash=content_hash(poll(1)))
    row = ledger.poll_rows()[0]
    assert (row.status, row.item_id) == ("changed", 5)  # the rename still has to reach the CRM
    assert ledger.poll_counts_by_status()["changed"] == 1
