"""The `schedule` and `doctor` commands as an operator runs them: output, exit codes, option errors."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from jobs.cli_ops import ScheduledRun, doctor, schedule
from core import exit_codes
from sync.settings import load_settings
from tests.ops.conftest import FIELD_MAPPING


@pytest.fixture(autouse=True)
def restore_logging():
    """The commands point loguru at CliRunner's stderr, which is closed after each invocation."""
    yield
    import sys

    from loguru import logger
    logger.remove()
    logger.add(sys.stderr)


@pytest.fixture
def env(survey_api, portal, migrated_store, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # no stray .env
    return {"SURVEY_API_URL": survey_api.base_url, "SURVEY_API_TOKEN": survey_api.token,
            "BITRIX24_WEBHOOK_URL": portal.webhook_url, "DATABASE_URL": migrated_store,
            "FIELD_MAPPING": str(FIELD_MAPPING)}


def test_doctor_prints_a_tick_per_passing_check_and_exits_0(env):
    result = CliRunner().invoke(doctor, [], env=env)
    assert result.exit_code == exit_codes.OK, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 14 and all(line.startswith("✔ ") for line in lines)
    assert "✔ стадия сделки — deal.stage_id C4:NEW — «Новая» (DEAL_STAGE_4)" in lines


def test_doctor_names_the_broken_entry_and_exits_2(env, write_mapping):
    env["FIELD_MAPPING"] = str(write_mapping(lambda m: m["deal"].update(stage_id="C4:NOPE")))
    result = CliRunner().invoke(doctor, [], env=env)
    assert result.exit_code == exit_codes.USAGE_ERROR
    line = next(line for line in result.stdout.splitlines() if line.startswith("✘ "))
    assert line.startswith("✘ стадия сделки — deal.stage_id 'C4:NOPE': в воронке 4 нет такой стадии")
    assert " → укажите в deal.stage_id в " in line


def test_doctor_exits_3_when_a_system_refuses_the_credentials(env):
    env["SURVEY_API_TOKEN"] = "not-the-token"
    result = CliRunner().invoke(doctor, [], env=env)
    assert result.exit_code == exit_codes.ABORTED
    assert "✘ API опросов — " in result.stdout and "not-the-token" not in result.output


def test_doctor_json_is_machine_readable(env):
    result = CliRunner().invoke(doctor, ["--json"], env=env)
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert data["ok"] is True and data["exit_code"] == 0 and len(data["checks"]) == 14
    assert set(data["checks"][0]) == {"name", "ok", "detail", "fix", "kind", "skipped"}


def test_schedule_every_and_cron_are_mutually_exclusive():
    result = CliRunner().invoke(schedule, ["--every", "600", "--cron", "*/5 * * * *"])
    assert result.exit_code == exit_codes.USAGE_ERROR
    assert "--every and --cron are mutually exclusive" in result.output


def test_schedule_refuses_a_too_short_interval():
    result = CliRunner().invoke(schedule, ["--every", "5"])
    assert result.exit_code == exit_codes.USAGE_ERROR and "--every" in result.output


def test_schedule_with_a_bad_cron_exits_2_naming_the_option(env):
    result = CliRunner().invoke(schedule, ["--cron", "*/5 * * *"], env=env)
    assert result.exit_code == exit_codes.USAGE_ERROR
    assert "ошибка: --cron / SCHEDULE_CRON '*/5 * * *' is not a usable crontab expression" in result.stderr


def test_schedule_help_has_an_example():
    result = CliRunner().invoke(schedule, ["--help"])
    assert result.exit_code == 0 and 'python cli.py schedule --cron "*/10 7-22 * * 1-5"' in result.stdout


def test_a_scheduled_run_syncs_records_itself_as_schedule_and_rereads_the_mapping(env, tmp_path, write_mapping):
    mapping = write_mapping()
    settings = load_settings(survey_api_url=env["SURVEY_API_URL"], survey_api_token=env["SURVEY_API_TOKEN"],
                             bitrix24_webhook_url=env["BITRIX24_WEBHOOK_URL"], field_mapping=str(mapping),
                             database_url=f"sqlite:///{tmp_path}/data/sync.sqlite3")
    run_once = ScheduledRun(settings)
    first = run_once()
    assert first.outcome in ("ok", "needs_attention") and first.bitrix_requests > 0
    mapping.write_text("{}", encoding="utf-8")  # broken between ticks: the next tick says so
    from core.errors import ConfigError
    with pytest.raises(ConfigError, match="is invalid"):
        run_once()
    write_mapping()
    second = run_once()
    assert second.outcome == "ok" and second.counts.get("new", 0) == 0
    assert second.bitrix_requests < first.bitrix_requests  # per run, not cumulative
    commands = [r.command for r in run_once.ctx.ledger.last_runs(5)]
    assert commands == ["schedule", "schedule"]
