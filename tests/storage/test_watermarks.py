"""Watermarks: moved with the rows in one transaction, and only ever forward."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import event

from storage.ledger import Ledger
from core.errors import StoreError
from tests.storage.conftest import T0, answer, poll


def test_watermark_moves_with_staged_rows(ledger: Ledger):
    ledger.stage_answers(answers=[answer(1)], watermark=("answers:poll:1", T0), run_id="r")
    assert ledger.get_watermark("answers:poll:1") == T0
    assert ledger.get_watermark("answers:poll:2") is None


def test_watermark_moves_in_same_transaction_as_rows(ledger: Ledger, engine):
    ledger.stage_answers(answers=[answer(1)], watermark=("answers", T0), run_id="r")

    def fail_on_watermark(conn, cursor, statement, *args):
        if "watermarks" in statement and not statement.lstrip().upper().startswith("SELECT"):
            raise RuntimeError("disk pulled out mid-transaction")

    event.listen(engine, "before_cursor_execute", fail_on_watermark)
    try:
        with pytest.raises(RuntimeError, match="disk pulled out"):
            ledger.stage_answers(
                answers=[answer(1, email="edited@example.com"), answer(2)],
                watermark=("answers", T0 + timedelta(hours=1)),
                run_id="r2",
            )
    finally:
        event.remove(engine, "before_cursor_execute", fail_on_watermark)

    # neither the rows nor the watermark moved
    assert ledger.get_answer(2) is None
    assert ledger.get_answer(1).payload == answer(1)
    assert ledger.get_watermark("answers") == T0


def test_rows_failing_leave_the_watermark_where_it_was(ledger: Ledger, engine):
    def fail_on_insert(conn, cursor, statement, *args):
        if statement.lstrip().upper().startswith("INSERT INTO ANSWERS"):
            raise RuntimeError("insert failed")

    ledger.stage_polls(polls=[poll(1)], watermark=("polls", T0), run_id="r")
    event.listen(engine, "before_cursor_execute", fail_on_insert)
    try:
        with pytest.raises(RuntimeError):
            ledger.stage_answers(answers=[answer(1)], watermark=("answers", T0), run_id="r")
    finally:
        event.remove(engine, "before_cursor_execute", fail_on_insert)
    assert ledger.get_watermark("polls") == T0
    assert ledger.get_watermark("answers") is None


def test_watermark_never_moves_backwards(ledger: Ledger):
    later = T0 + timedelta(minutes=30)
    ledger.stage_answers(answers=[answer(1)], watermark=("answers", later), run_id="r")
    # a look-back window re-reads older rows: the watermark stays
    ledger.stage_answers(answers=[answer(2)], watermark=("answers", T0), run_id="r")
    assert ledger.get_watermark("answers") == later
    assert ledger.set_watermark("answers", T0) == later
    assert ledger.get_watermark("answers") == later

    assert ledger.set_watermark("answers", later + timedelta(seconds=1)) == later + timedelta(seconds=1)


def test_watermark_can_be_moved_back_on_purpose(ledger: Ledger):
    ledger.set_watermark("answers", T0 + timedelta(days=1))
    assert ledger.set_watermark("answers", T0, allow_backwards=True) == T0
    assert ledger.get_watermark("answers") == T0


def test_watermarks_compare_instants_not_offsets(ledger: Ledger):
    ledger.set_watermark("answers", T0)
    same_instant_in_moscow = T0.astimezone(timezone(timedelta(hours=3)))
    assert ledger.set_watermark("answers", same_instant_in_moscow - timedelta(seconds=1)) == T0
    assert ledger.watermarks() == {"answers": T0}


def test_naive_watermark_is_refused(ledger: Ledger):
    with pytest.raises(ValueError, match="aware datetime"):
        ledger.set_watermark("answers", datetime(2025, 9, 1, 10, 0))
    with pytest.raises(ValueError, match="aware datetime"):
        ledger.stage_answers(answers=[answer(1)], watermark=("answers", datetime(2025, 9, 1)), run_id="r")
    assert ledger.get_answer(1) is None


def test_unmigrated_store_is_a_store_error(store_url):
    from storage.db import make_engine

    engine = make_engine(store_url)
    try:
        with pytest.raises(StoreError, match="not migrated"):
            Ledger(engine).get_watermark("answers")
    finally:
        engine.dispose()
