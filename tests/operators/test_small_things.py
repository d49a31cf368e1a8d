"""The smaller operator complaints of issue 13, item 10: each says what happened instead of a silent "ok"."""
from __future__ import annotations

import sys

import pytest
from click.testing import CliRunner

from tests.conftest import ROOT


@pytest.fixture(autouse=True)
def restore_logging():
    yield
    from loguru import logger
    logger.remove()
    logger.add(sys.stderr)


@pytest.fixture
def env(sandbox, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return {**{k: str(v) for k, v in sandbox.env().items()}, "DATABASE_URL": f"sqlite:///{tmp_path}/s.sqlite3",
            "FIELD_MAPPING": str(ROOT / "examples" / "field_mapping.smart-processes.json"), "REPORT_LANGUAGE": "ru"}


def invoke(env, *args):
    from cli import cli
    return CliRunner().invoke(cli, list(args), env=env)


def test_sync_of_a_poll_that_does_not_exist_says_nothing_matched(env):
    done = invoke(env, "sync", "--poll", "1")
    assert done.exit_code == 0, done.output
    assert ("опрос 1: такого опроса нет ни на платформе опросов, ни в хранилище — ничего не прочитано"
            in done.stdout)


def test_retry_of_an_unknown_answer_exits_2_saying_so(env):
    assert invoke(env, "sync").exit_code == 1
    done = invoke(env, "retry", "--answer", "999")
    assert done.exit_code == 2
    assert "answer 999 is not in the store, so there is nothing to retry" in done.stderr


def test_retry_of_a_synced_answer_says_there_is_nothing_to_retry(env):
    assert invoke(env, "sync").exit_code == 1
    done = invoke(env, "retry", "--answer", "814573981")
    assert done.exit_code == 0, done.output
    assert "ответ 814573981 уже синхронизирован, повторять нечего" in done.stdout


def test_replay_counts_the_survey_request_it_made(env):
    assert invoke(env, "sync").exit_code == 1
    done = invoke(env, "replay", "--answer", "814573982")
    assert done.exit_code == 0, done.output
    assert "к платформе опросов 1;" in done.stdout  # the answer it fetched (it said 0)


def test_the_progress_line_ends_before_a_log_line(monkeypatch, capsys):
    from loguru import logger

    from jobs.cli_common import Progress
    from sync.logs import setup_logging
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    setup_logging(fmt="text", level="INFO")
    progress = Progress("en")
    progress("pull", 5)
    logger.warning("poll 1: inactive_owner")
    progress("plan", 5)
    progress.close()
    err = capsys.readouterr().err
    assert "\r  read 5 answers · planned 0 · pushed 0   \n" in err
    warning = next(line for line in err.split("\n") if "inactive_owner" in line)
    assert "read 5 answers" not in warning  # it had the progress text in front of it
