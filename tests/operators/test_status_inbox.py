"""`status` and the metrics show what the intake received and refused (issue 12, item 8)."""
from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

from fastapi.testclient import TestClient

from sync.options import RunSummary
from sync.report.metrics import render_metrics
from tests.operators.test_status import restore_logging, status, store  # noqa: F401  (fixtures)

SAMPLES = Path(__file__).resolve().parents[2] / "sandbox" / "sample_data" / "real"


def _deliver(store_url: str) -> None:
    from intake.app import create_app
    from intake.cli import load_intake_settings
    from intake.server import make_intake_engine
    engine = make_intake_engine(store_url)
    try:
        with TestClient(create_app(load_intake_settings(database_url=store_url), engine)) as client:
            answers = json.loads((SAMPLES / "answers.json").read_text(encoding="utf-8"))["postAnswer"]
            for packet in answers[:3] + answers[:1]:   # the fourth is a redelivery
                assert client.post("/api/v1/integration/postAnswer", json=packet).json()["is_successful"]
            assert client.post("/api/v1/integration/postAnswer", content=b"[1, 2]").status_code == 400
    finally:
        engine.dispose()


def test_status_shows_what_the_intake_received_and_refused(store):
    _deliver(store["DATABASE_URL"])
    result = status(store)
    assert result.exit_code == 0, result.output
    assert "Входящие с портала: сегодня 3, всего 3 (ответов 3, опросов 0, повторных доставок 1)" in result.output
    assert "Отклонено пакетов: 1" in result.output
    data = json.loads(status(store, "--json").output)
    assert data["inbox"]["received_total"] == 3 and data["inbox"]["refused_total"] == 1


def test_status_of_a_store_without_an_intake_says_nothing_about_one(store):
    assert "Входящие" not in status(store).output


def test_metrics_carry_the_intakes_counters():
    summary = RunSummary(run_id="r", started_at=datetime(2026, 12, 6, tzinfo=timezone.utc),
                         inbox={"received_total": 12, "received_today": 5, "refused_total": 2})
    text = render_metrics(summary)
    assert "survey_sync_intake_packets_received 12" in text and "survey_sync_intake_packets_refused 2" in text
    assert "intake" not in render_metrics(RunSummary(run_id="r", started_at=datetime(2026, 12, 6,
                                                                                    tzinfo=timezone.utc)))
