"""What `cli.py doctor` and cli.py's error lines say is in REPORT_LANGUAGE (issue 13, item 8).

Russian by default, English with REPORT_LANGUAGE=en; read from the environment or .env even
when the settings do not load. `doctor --json` keeps the same keys and English check ids in
both, and the exit codes do not depend on the language.
"""
from __future__ import annotations

import json
import string

import click
import pytest
from click.testing import CliRunner

from core import exit_codes
from core.errors import ConfigError, StoreError, UpstreamError
from tests.conftest import ROOT

SMART_MAPPING = ROOT / "examples" / "field_mapping.smart-processes.json"
# Unset for the invocation (CliRunner removes a variable given as None), so a developer's shell
# or a stray .env cannot decide what these tests see.
UNSET = {"SURVEY_API_URL": None, "SURVEY_API_TOKEN": None, "BITRIX24_WEBHOOK_URL": None, "REPORT_LANGUAGE": None}

WORDING = {
    # language: (a failing line's start, its fix, a passing line)
    "ru": ("✘ стадия сделки — deal.stage_id 'C4:NOPE': в воронке 4 нет такой стадии (crm.status.list DEAL_STAGE_4: ",
           " → укажите в deal.stage_id в ",
           "✔ источник сделки — deal.source_id WEBFORM — «CRM-форма»"),
    "en": ("✘ deal stage — deal.stage_id 'C4:NOPE' is not a stage of pipeline 4 (crm.status.list DEAL_STAGE_4: ",
           " → set deal.stage_id in ",
           "✔ deal source — deal.source_id WEBFORM is «CRM-форма»"),
}


@pytest.fixture(autouse=True)
def restore_logging():
    """The commands point loguru at CliRunner's stderr, which is closed after each invocation."""
    yield
    import sys

    from loguru import logger
    logger.remove()
    logger.add(sys.stderr)


@pytest.fixture
def env(sandbox, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no stray .env
    stage = json.loads(SMART_MAPPING.read_text(encoding="utf-8"))
    stage["deal"]["stage_id"] = "C4:NOPE"
    broken = tmp_path / "field_mapping.json"
    broken.write_text(json.dumps(stage, ensure_ascii=False), encoding="utf-8")
    return {**UNSET, **sandbox.env(), "DATABASE_URL": f"sqlite:///{tmp_path}/sync.sqlite3",
            "FIELD_MAPPING": str(broken)}


def doctor(env: dict, *args: str):
    from jobs.cli_ops import doctor as command
    return CliRunner().invoke(command, list(args), env=env)


@pytest.mark.parametrize("language", ["ru", "en"])
def test_doctor_prints_passing_and_failing_checks_in_report_language(env, language):
    failing, fix, passing = WORDING[language]
    result = doctor({**env, "REPORT_LANGUAGE": language})
    assert result.exit_code == exit_codes.USAGE_ERROR, result.output  # the broken stage, in either language
    lines = result.stdout.splitlines()
    stage = next(line for line in lines if line.startswith("✘ "))
    assert stage.startswith(failing) and fix in stage and "field_mapping.json" in stage
    assert passing in lines
    assert len(lines) == 14


def test_doctor_speaks_russian_when_report_language_is_not_set(env):
    result = doctor(env)  # REPORT_LANGUAGE unset, no .env
    failing, fix, passing = WORDING["ru"]
    assert result.exit_code == exit_codes.USAGE_ERROR
    assert passing in result.stdout.splitlines() and failing in result.stdout


def test_doctor_json_has_the_same_keys_and_check_ids_in_both_languages(env):
    ru, en = (doctor({**env, "REPORT_LANGUAGE": lang}, "--json") for lang in ("ru", "en"))
    assert ru.exit_code == en.exit_code == exit_codes.USAGE_ERROR
    ru_data, en_data = json.loads(ru.stdout), json.loads(en.stdout)
    assert set(ru_data) == set(en_data) == {"ok", "exit_code", "checks"}
    for ru_check, en_check in zip(ru_data["checks"], en_data["checks"], strict=True):
        assert set(ru_check) == set(en_check) == {"name", "ok", "detail", "fix", "kind", "skipped"}
        # The id, state and kind a script matches on are the same; only the sentences differ.
        assert {k: ru_check[k] for k in ("name", "ok", "kind", "skipped")} == \
            {k: en_check[k] for k in ("name", "ok", "kind", "skipped")}
    stage = {d["name"]: d for d in ru_data["checks"]}["deal stage"]
    assert "в воронке 4 нет такой стадии" in stage["detail"]


def test_doctor_reads_the_language_from_dotenv_when_the_settings_do_not_load(env, tmp_path):
    bare = {**UNSET, "DATABASE_URL": env["DATABASE_URL"]}
    ru = doctor(bare)
    assert ru.exit_code == exit_codes.USAGE_ERROR
    assert ru.stdout.splitlines()[0].startswith("✘ настройки — не задана настройка SURVEY_API_URL")
    assert "○ хранилище — пропущено: настройки заданы не полностью" in ru.stdout.splitlines()
    (tmp_path / ".env").write_text("REPORT_LANGUAGE=en\n", encoding="utf-8")  # the cwd is tmp_path
    en = doctor(bare)
    assert en.exit_code == exit_codes.USAGE_ERROR
    assert en.stdout.splitlines()[0].startswith("✘ configuration — SURVEY_API_URL is not set")
    assert "○ store — skipped: the configuration is incomplete" in en.stdout.splitlines()


def test_every_doctor_text_has_both_languages_with_the_same_placeholders():
    from sync.doctor.texts import TEXTS, TITLES, TYPE_WORDS
    assert set(TEXTS["ru"]) == set(TEXTS["en"])
    fields = lambda text: {f for _, f, _, _ in string.Formatter().parse(text) if f}  # noqa: E731
    mismatched = [k for k in TEXTS["en"] if fields(TEXTS["en"][k]) != fields(TEXTS["ru"][k])]
    assert not mismatched
    from tests.ops.test_doctor import ALL_CHECKS
    from tests.ops.test_doctor_lists import LIST_CHECKS
    assert set(TITLES["ru"]) == set(ALL_CHECKS) | set(LIST_CHECKS)
    assert set(TYPE_WORDS["ru"]) == set(TYPE_WORDS["en"])


ERROR_LINES = {
    "ru": {"config": "ошибка: configuration is incomplete or invalid:",
           "locked": ("заблокировано: ", "; ничего не записано"),
           "aborted": "прервано (bitrix24): portal down",
           "store": "прервано (store): database gone",
           "interrupted": "остановлено: следующий запуск завершит то, что начал этот"},
    "en": {"config": "error: configuration is incomplete or invalid:",
           "locked": ("locked: ", "; nothing was written"),
           "aborted": "aborted (bitrix24): portal down",
           "store": "aborted (store): database gone",
           "interrupted": "interrupted: the next run completes what this one started"},
}


def sync(env: dict):
    from cli import cli
    return CliRunner().invoke(cli, ["sync"], env=env)


@pytest.mark.parametrize("language", ["ru", "en"])
def test_a_configuration_error_is_framed_in_report_language_and_exits_2(language, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    # The settings do not load (nothing is set), so the language comes from the environment itself.
    result = sync({**UNSET, "REPORT_LANGUAGE": language, "DATABASE_URL": f"sqlite:///{tmp_path}/s.sqlite3"})
    assert result.exit_code == exit_codes.USAGE_ERROR
    assert result.stderr.startswith(ERROR_LINES[language]["config"])
    assert "SURVEY_API_URL is not set" in result.stderr  # the reason itself is the exception's text


def test_a_configuration_error_is_russian_by_default(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = sync({**UNSET, "DATABASE_URL": f"sqlite:///{tmp_path}/s.sqlite3"})
    assert result.exit_code == exit_codes.USAGE_ERROR
    assert result.stderr.startswith(ERROR_LINES["ru"]["config"])


@pytest.mark.parametrize("language", ["ru", "en"])
def test_a_held_lock_is_framed_in_report_language_and_exits_4(language, env):
    from storage.db import make_engine, migrate
    from storage.lock import run_lock
    engine = make_engine(env["DATABASE_URL"])
    migrate(engine)
    env = {**env, "REPORT_LANGUAGE": language, "FIELD_MAPPING": str(SMART_MAPPING)}
    try:
        with run_lock(engine, holder="sync"):
            result = sync(env)
    finally:
        engine.dispose()
    assert result.exit_code == exit_codes.LOCKED, result.output
    start, end = ERROR_LINES[language]["locked"]
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith(start) and line.endswith(end)


def _raising(exc: BaseException) -> click.Command:
    from jobs.cli_common import guarded

    def fail() -> None:
        raise exc
    return click.Command("fail", callback=lambda: guarded(fail)())


@pytest.mark.parametrize("language", ["ru", "en"])
@pytest.mark.parametrize("case, exc, code", [
    ("aborted", UpstreamError("portal down", system="bitrix24"), exit_codes.ABORTED),
    ("store", StoreError("database gone"), exit_codes.ABORTED),
    ("interrupted", KeyboardInterrupt(), exit_codes.ABORTED),
])
def test_aborted_and_interrupted_lines_are_in_report_language(language, case, exc, code, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(_raising(exc), [], env={"REPORT_LANGUAGE": language})
    assert result.exit_code == code
    assert result.stderr.strip() == ERROR_LINES[language][case]


def test_a_config_error_keeps_its_exit_code_in_both_languages(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for language in ("ru", "en"):
        result = CliRunner().invoke(_raising(ConfigError("bad")), [], env={"REPORT_LANGUAGE": language})
        assert result.exit_code == exit_codes.USAGE_ERROR
        assert result.stderr.strip() == {"ru": "ошибка: bad", "en": "error: bad"}[language]


def test_a_terminal_without_unicode_gets_the_words_of_its_language():
    from sync.doctor import Check, format_check
    ok = Check("deal source", True, "d")
    bad = Check("deal stage", False, "d", "f")
    assert format_check(bad, unicode=False, language="en") == "FAIL deal stage - d -> f"
    assert format_check(ok, unicode=False, language="en") == "OK   deal source - d"
    assert format_check(bad, unicode=False, language="ru") == "ОШИБКА  стадия сделки - d -> f"
    assert format_check(ok, unicode=False, language="ru") == "ОК      источник сделки - d"
