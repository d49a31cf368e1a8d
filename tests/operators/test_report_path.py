"""`--report` to a place that cannot be written (issue 13, item 4): refused before the run; never lose the summary."""
from __future__ import annotations

import pytest
from click.testing import CliRunner

from tests.conftest import ROOT


@pytest.fixture(autouse=True)
def restore_logging():
    yield
    import sys

    from loguru import logger
    logger.remove()
    logger.add(sys.stderr)


@pytest.fixture
def env(sandbox, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return {**{k: str(v) for k, v in sandbox.env().items()}, "DATABASE_URL": f"sqlite:///{tmp_path}/s.sqlite3",
            "FIELD_MAPPING": str(ROOT / "examples" / "field_mapping.smart-processes.json"), "REPORT_LANGUAGE": "ru"}


def test_an_unwritable_report_path_is_refused_before_anything_is_written(env, sandbox, tmp_path):
    from cli import cli
    (tmp_path / "taken").write_text("a file, not a directory")
    before = sandbox.bitrix.admin.counters()["requests"]
    done = CliRunner().invoke(cli, ["sync", "--report", str(tmp_path / "taken" / "plan.html")], env=env)
    assert done.exit_code == 2, done.output
    assert f"ошибка: --report {tmp_path / 'taken' / 'plan.html'}: {tmp_path / 'taken'} is a file, not a directory" \
        in done.stderr
    assert sandbox.bitrix.admin.counters()["requests"] == before


def test_a_report_directory_that_does_not_exist_yet_is_created(env, tmp_path):
    from cli import cli
    done = CliRunner().invoke(cli, ["sync", "--report", str(tmp_path / "new" / "dir" / "plan.md")], env=env)
    assert done.exit_code == 1, done.output
    assert (tmp_path / "new" / "dir" / "plan.md").exists()
    assert f"отчёт: {tmp_path / 'new' / 'dir' / 'plan.md'}" in done.stdout


def test_a_report_that_fails_after_the_run_keeps_the_summary_and_the_runs_exit_code(env, monkeypatch, tmp_path):
    import sync.report.render as render
    from cli import cli

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(render, "write_report", disk_full)
    done = CliRunner().invoke(cli, ["sync", "--report", str(tmp_path / "plan.html")], env=env)
    assert done.exit_code == 1, done.output  # the run's own code: 3 answers need attention
    assert done.stdout.startswith("sync: есть ответы, требующие внимания; ответов прочитано ")
    assert "отчёт:" not in done.stdout
    assert (f"отчёт не записан: {tmp_path / 'plan.html'}: No space left on device; сам запуск завершён, его итог ниже"
            in done.stderr)
