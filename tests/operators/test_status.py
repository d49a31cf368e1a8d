"""`cli.py status` as an operator uses it (issue 13, item 2): nothing cut silently, filters, no API settings."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from storage.db import make_engine, migrate
from storage.ledger import Ledger


@pytest.fixture(autouse=True)
def restore_logging():
    """The commands point loguru at CliRunner's stderr, which is closed after each invocation."""
    yield
    import sys

    from loguru import logger
    logger.remove()
    logger.add(sys.stderr)


def _problem(code: str) -> dict:
    return {"code": code, "severity": "attention", "params": {"given": "Квантовая алхимия"}}


@pytest.fixture
def store(tmp_path, monkeypatch):
    """A store with 130 answers needing attention: 120 of poll 7 (unknown programme), 10 of poll 8 (no e-mail)."""
    monkeypatch.chdir(tmp_path)  # no stray .env
    for name in ("SURVEY_API_URL", "SURVEY_API_TOKEN", "BITRIX24_WEBHOOK_URL", "SURVEY_SOURCE", "REPORT_LANGUAGE"):
        monkeypatch.delenv(name, raising=False)
    url = f"sqlite:///{tmp_path}/sync.sqlite3"
    engine = make_engine(url)
    migrate(engine)
    ledger = Ledger(engine)
    answers = [{"answer_id": 1000 + i, "poll_id": 7 if i < 120 else 8, "updated_at": "2026-11-20T10:00:00+00:00",
                "answers": {}} for i in range(130)]
    ledger.stage_polls(polls=[{"poll_id": 7, "poll_name": "A", "updated_at": "2026-11-20T10:00:00+00:00"},
                              {"poll_id": 8, "poll_name": "B", "updated_at": "2026-11-20T10:00:00+00:00"}],
                       watermark=None, run_id="t")
    ledger.stage_answers(answers=answers, watermark=None, run_id="t")
    for a in answers:
        code = "unknown_programme" if a["poll_id"] == 7 else "missing_email"
        ledger.mark_needs_attention(answer_id=a["answer_id"], problems=[_problem(code)])
    engine.dispose()
    return {"DATABASE_URL": url}


def status(env, *args):
    from cli import cli
    return CliRunner().invoke(cli, ["status", *args], env=env)


def test_status_needs_no_webhook_or_survey_settings_and_says_how_many_it_left_out(store):
    done = status(store)
    assert done.exit_code == 0, done.output
    lines = done.stdout.splitlines()
    assert "Требуют внимания: 130" in lines
    assert sum(line.startswith("  ответ ") for line in lines) == 100
    assert lines[-1] == "  …и ещё 30 (показать все: --all, или --limit N, или --json)"
    assert "Программы «Квантовая алхимия» нет в CRM" in done.stdout


def test_status_all_and_limit(store):
    every = status(store, "--all").stdout.splitlines()
    assert sum(line.startswith("  ответ ") for line in every) == 130 and "ещё" not in every[-1]
    five = status(store, "--limit", "5").stdout.splitlines()
    assert sum(line.startswith("  ответ ") for line in five) == 5 and five[-1].startswith("  …и ещё 125")


def test_status_json_is_complete(store):
    data = json.loads(status(store, "--json").stdout)
    assert data["needing_attention_total"] == 130 and len(data["needing_attention"]) == 130
    assert len(json.loads(status(store, "--json", "--limit", "3").stdout)["needing_attention"]) == 3


def test_status_filters_by_reason_and_poll(store):
    data = json.loads(status(store, "--json", "--reason", "missing_email").stdout)
    assert data["needing_attention_total"] == 10 and {r["poll_id"] for r in data["needing_attention"]} == {8}
    data = json.loads(status(store, "--json", "--poll", "7").stdout)
    assert data["needing_attention_total"] == 120
    data = json.loads(status(store, "--json", "--poll", "8", "--reason", "unknown_programme").stdout)
    assert data["needing_attention_total"] == 0


def test_status_says_when_a_filter_matches_nothing(store):
    done = status(store, "--poll", "1")
    assert done.exit_code == 0
    assert "Опроса 1 в хранилище нет: ни одного его ответа не прочитано." in done.stdout
    assert "Ни один ответ, требующий внимания, не подходит под отбор (--poll 1)." in done.stdout
    en = status({**store, "REPORT_LANGUAGE": "en"}, "--reason", "nope")
    assert "No answer needing attention matches the filter (--reason nope)." in en.stdout
