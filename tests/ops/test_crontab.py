"""The shipped crontab: every line is valid cron, runs a real command of cli.py, and cron cannot mangle it."""
from __future__ import annotations

import re
import shlex

import pytest
from croniter import croniter

from tests.ops.conftest import ROOT

CRONTAB = ROOT / "crontab"
PREFIX = "cd /opt/survey-sync && .venv/bin/python cli.py "
ENV_LINE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\s*=")


def entries() -> list[tuple[str, str]]:
    """``(schedule, command)`` of every job line (comments, blank lines and VAR=value lines skipped)."""
    out = []
    for line in CRONTAB.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#") or ENV_LINE.match(line):
            continue
        fields = line.split(None, 5)
        assert len(fields) == 6, f"not five time fields and a command: {line!r}"
        out.append((" ".join(fields[:5]), fields[5]))
    return out


def cli_commands() -> dict:
    """The commands ``python cli.py`` really has: the group as cli.py builds it, nothing patched in."""
    import cli
    return dict(cli.cli.commands)


def test_every_line_is_five_valid_fields_and_a_command():
    jobs = entries()
    assert len(jobs) >= 2
    for schedule, command in jobs:
        assert croniter.is_valid(schedule), schedule
        assert command.strip()


def test_it_is_a_user_crontab_without_a_user_column():
    for _, command in entries():
        assert command.startswith("cd "), f"the sixth field should start the command, not name a user: {command!r}"
    assert "no user column" in CRONTAB.read_text(encoding="utf-8").lower()


def test_no_unescaped_percent_sign_cuts_a_command_short():
    for _, command in entries():
        assert not re.search(r"(?<!\\)%", command), f"cron turns an unescaped % into a newline: {command!r}"


def test_no_flock_the_job_locks_itself():
    for _, command in entries():
        assert "flock" not in command


def test_every_5_minutes_sync_appends_to_the_log():
    assert ("*/5 * * * *", PREFIX + "sync >> /var/log/survey-sync.log 2>&1") in entries()


def test_a_nightly_dry_run_writes_a_dated_report():
    nightly = [c for s, c in entries() if "--dry-run" in c]
    assert nightly and "--report" in nightly[0] and "$(date +\\%F)" in nightly[0]


@pytest.mark.parametrize("command", [c for _, c in entries()])
def test_each_command_and_its_options_exist(command):
    assert command.startswith(PREFIX), command
    args_text = command[len(PREFIX):].split(">>")[0]
    args_text = re.sub(r"\$\([^)]*\)", "DATE", args_text).replace("\\%", "%")
    name, *args = shlex.split(args_text)
    commands = cli_commands()
    assert name in commands, f"cli.py has no command {name!r}"
    commands[name].make_context(name, list(args))  # raises on an unknown option


def test_the_nightly_dry_run_does_not_start_with_the_5_minute_sync():
    """Both at 02:30 collided every night (issue 13, item 7): the dry run is off the 5-minute marks."""
    from datetime import datetime
    every_5 = next(s for s, c in entries() if s.startswith("*/5 "))
    nightly, command = next((s, c) for s, c in entries() if "--dry-run" in c)
    start = datetime(2026, 11, 27, 0, 0)
    ticks = croniter(every_5, start)
    sync_times = {ticks.get_next(datetime) for _ in range(24 * 12)}
    assert croniter(nightly, start).get_next(datetime) not in sync_times
    assert "--lock-wait" in command  # and it waits, bounded, for a sync still running
