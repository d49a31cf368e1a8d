"""The operations commands of ``cli.py``: ``schedule`` (the container's default) and ``doctor``.

Standalone ``click.Command`` objects; ``cli.py`` registers them::

    from jobs.cli_ops import doctor, schedule
    cli.add_command(schedule)
    cli.add_command(doctor)

Errors map to exit codes through ``jobs.cli_common.guarded``, as in ``cli.py``.
"""
from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import Any

import click

from jobs.cli_common import cli_settings, guarded


class ScheduledRun:
    """``run_once`` for the scheduler: one ``execute()`` of the command ``schedule``.

    The context (clients, store) is built once and kept, so the rate-limit bucket and
    the store's connections live across ticks; if the store is not up at start, the
    next tick builds it. The mapping file is re-read before every run, so a fixed
    mapping takes effect at the next tick without a restart.
    """

    def __init__(self, settings: Any, *, stop: Any = None) -> None:
        self.settings = settings
        self.stop = stop  # the scheduler's stop event: a run in progress ends after its batches in flight
        self.ctx: Any = None

    def prepare(self) -> None:
        """Build the context now: a ConfigError surfaces at start, not at every tick."""
        from sync.app import build_context
        self.ctx = build_context(self.settings)
        self.ctx.bitrix  # a missing or malformed webhook is a ConfigError now, not at every tick

    def __call__(self) -> Any:
        from sync.app import execute, options_from
        if self.ctx is None:
            self.prepare()
        else:
            self.ctx.reload_mapping()
        for client in (self.ctx.survey, self.ctx.bitrix):
            reset = getattr(client, "reset_stats", None)  # per-run request counts in the summary
            if callable(reset):
                reset()
        return execute(self.ctx, options_from(self.settings, command="schedule", stop=self.stop))


@click.command("schedule")
@click.option("--every", "every_s", type=click.IntRange(min=10), metavar="SECONDS",
              help="Run every SECONDS (default: SCHEDULE_EVERY_S, 300).")
@click.option("--cron", metavar='"EXPR"',
              help="Run on a crontab schedule instead, e.g. \"*/10 7-22 * * *\" (default: SCHEDULE_CRON). "
                   "Weekday 0 and 7 are Sunday, as in crontab; times are the machine's time zone (TZ).")
@click.option("--health-file", type=click.Path(dir_okay=False, path_type=Path), envvar="HEALTH_FILE",
              help="Heartbeat file for `python -m jobs.health` [env HEALTH_FILE; default ./data/heartbeat.json].")
@click.option("--with-intake", is_flag=True,
              help="Also receive the university portal's pushes in this process (as `cli.py intake`; "
                   "INTAKE_HOST, INTAKE_PORT, INTAKE_TOKEN…); the runs then read them (SURVEY_SOURCE=intake).")
def schedule(every_s: int | None, cron: str | None, health_file: Path | None, with_intake: bool) -> None:
    """Sync now, then on a schedule, until SIGTERM or Ctrl-C (the container's default command).

    A tick that comes while a run is still going is skipped; a failed run is logged and
    the next tick tries again. On SIGTERM the run in flight finishes, then the command
    exits 0 (a second signal exits at once).

    \b
    Examples:
      python cli.py schedule                      # every SCHEDULE_EVERY_S seconds (300)
      python cli.py schedule --every 600
      python cli.py schedule --cron "*/10 7-22 * * 1-5"
    """
    if every_s is not None and cron is not None:
        raise click.UsageError("--every and --cron are mutually exclusive: give one of them")
    guarded(_schedule)(every_s, cron, health_file, with_intake)


def _schedule(every_s: int | None, cron: str | None, health_file: Path | None, with_intake: bool = False) -> None:
    from loguru import logger

    from jobs.scheduler import make_trigger, run_schedule
    from core.errors import StoreError, UpstreamError

    if cron is not None:
        make_trigger(cron=cron)  # a typo fails before the settings are even read
    settings = cli_settings(**({"survey_source": "intake"} if with_intake else {}))
    intake = _start_intake(settings) if with_intake else None
    stop = threading.Event()
    run_once = ScheduledRun(settings, stop=stop)
    try:
        try:
            run_once.prepare()
        except (StoreError, UpstreamError) as exc:  # not up yet (a container starting with its database)
            logger.warning("cannot prepare the first run yet: {}; every tick tries again", exc)
        code = run_schedule(settings, every_s=every_s, cron=cron, run_once=run_once, health_file=health_file,
                            stop_event=stop)
    finally:
        if intake is not None:
            intake.stop()  # after the run in flight: deliveries still arriving were stored meanwhile
    sys.exit(code)


def _start_intake(settings: Any) -> Any:
    """The intake in a thread of this process: stores what the portal pushes, the schedule syncs it."""
    from intake.app import create_app
    from intake.server import BackgroundIntake, bind, make_intake_engine

    engine = make_intake_engine(settings.database_url)
    try:
        sock = bind(settings.intake_host, settings.intake_port)
    except OSError as exc:
        from core.errors import ConfigError
        raise ConfigError(f"cannot listen on {settings.intake_host}:{settings.intake_port}: {exc.strerror} "
                          f"→ pick another INTAKE_PORT, or stop what is using it") from None
    return BackgroundIntake(create_app(settings, engine), sock, base_path=settings.intake_base_path)


@click.command("doctor")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def doctor(as_json: bool) -> None:
    """Check the settings, both APIs, the mapping against the live portal and the store.

    One line per check; each failure names the setting or mapping entry and how to fix
    it. Nothing is written anywhere.

    \b
    Exit codes: 0 all good; 2 a setting or the mapping needs fixing;
                3 a system is unreachable, refused the credentials or the store is not ready.
    Example:
      python cli.py doctor
    """
    guarded(_doctor)(as_json)


def _doctor(as_json: bool) -> None:
    from sync.doctor import as_json as checks_json
    from sync.doctor import exit_code_for, format_check, run_checks
    from sync.doctor.texts import language_from_env
    from sync.logs import setup_logging

    setup_logging(fmt="text", level="WARNING")
    # From the environment and .env, not the settings: the doctor is what runs when they do not load.
    language = language_from_env()
    checks = run_checks(None, language=language)
    if as_json:
        click.echo(checks_json(checks))
    else:
        encoding = (getattr(sys.stdout, "encoding", None) or "").lower().replace("-", "")
        unicode = encoding == "utf8"
        for check in checks:
            line = format_check(check, unicode=unicode, language=language)
            if not unicode and encoding:
                try:
                    line = line.encode(encoding, "replace").decode(encoding)
                except LookupError:
                    pass
            click.echo(line)
    sys.exit(exit_code_for(checks))
