"""Datetimes go in aware (any offset) and come back aware-UTC, on both backends."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import text
from sqlalchemy.exc import StatementError

from core.clock import utc_now
from storage.tables import WatermarkRow
from tests.storage.conftest import answer

MSK = timezone(timedelta(hours=3))


def test_datetimes_round_trip_aware_utc(ledger):
    moment = datetime(2025, 9, 1, 13, 30, 15, 123456, tzinfo=MSK)
    ledger.set_watermark("w", moment)
    back = ledger.get_watermark("w")
    assert back == moment
    assert back.tzinfo == timezone.utc and back.utcoffset() == timedelta(0)
    assert back.isoformat() == "2025-09-01T10:30:15.123456+00:00"

    a = answer(1)
    a["updated_at"] = "2025-09-01T13:30:15+03:00"
    ledger.stage_answers(answers=[a], watermark=None, run_id="r")
    row = ledger.get_answer(1)
    for value in (row.updated_at, row.first_seen_at):
        assert value.tzinfo == timezone.utc
    assert row.updated_at == datetime(2025, 9, 1, 10, 30, 15, tzinfo=timezone.utc)

    run_id = ledger.start_run(command="sync", dry_run=False, since=moment, poll_filter=None)
    assert ledger.get_run(run_id).since.tzinfo == timezone.utc


def test_datetimes_are_stored_as_utc(ledger, engine):
    ledger.set_watermark("w", datetime(2025, 9, 1, 13, 0, tzinfo=MSK))
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            stored = conn.execute(text("SELECT value FROM watermarks")).scalar()
            assert stored.startswith("2025-09-01 10:00:00")
        else:
            conn.execute(text("SET TIME ZONE 'UTC'"))
            stored = conn.execute(text("SELECT value::text FROM watermarks")).scalar()
            assert stored == "2025-09-01 10:00:00+00"


def test_naive_datetime_is_refused_by_the_column_type(engine):
    from sqlalchemy import insert

    with pytest.raises(StatementError, match="naive datetime"):
        with engine.begin() as conn:
            conn.execute(
                insert(WatermarkRow.__table__).values(name="w", value=datetime(2025, 9, 1), updated_at=utc_now())
            )


def test_utc_now_is_aware():
    assert utc_now().tzinfo == timezone.utc
