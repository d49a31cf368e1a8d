"""What every command of ``cli.py`` shares: settings, the exit-code mapping, summaries, signals, progress.

Both ``cli.py`` and ``jobs/cli_ops.py`` import from here, so neither imports the other.
"""
from __future__ import annotations

import functools
import sys
from datetime import datetime, timezone
from pathlib import Path

import click

from core import exit_codes
from core.errors import ConfigError, LockHeldError, StoreError, UpstreamError


# The 5-minute sync usually takes seconds; a backfill can take much longer, and a nightly
# dry-run would rather skip (with a line saying so) than sit behind it all night.
DRY_RUN_LOCK_WAIT_S = 240.0


# The framing of ``guarded``'s one line, in REPORT_LANGUAGE; the reason after it is the
# exception's own text, as the code wrote it.
GUARD_TEXTS = {
    "en": {"error": "error: {reason}",
           "locked": "locked: {reason}; nothing was written",
           "aborted": "aborted: {reason}",
           "aborted_in": "aborted ({system}): {reason}",
           "interrupted": "interrupted: the next run completes what this one started"},
    "ru": {"error": "ошибка: {reason}",
           "locked": "заблокировано: {reason}; ничего не записано",
           "aborted": "прервано: {reason}",
           "aborted_in": "прервано ({system}): {reason}",
           "interrupted": "остановлено: следующий запуск завершит то, что начал этот"},
}


def guard_text(key: str, **values) -> str:
    """One of ``GUARD_TEXTS`` in REPORT_LANGUAGE, read from the environment and .env rather than the
    settings: the error being framed may be that the settings do not load."""
    from sync.doctor.texts import language_from_env
    return GUARD_TEXTS[language_from_env()][key].format(**values)


def guarded(func):
    """Map the error tree to exit codes with a one-line reason on stderr, no traceback."""
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        from core.redact import redact
        try:
            return func(*args, **kwargs)
        except ConfigError as exc:
            click.echo(guard_text("error", reason=redact(str(exc))), err=True)
            sys.exit(exit_codes.USAGE_ERROR)
        except LockHeldError as exc:
            click.echo(guard_text("locked", reason=redact(str(exc))), err=True)
            sys.exit(exit_codes.LOCKED)
        except (UpstreamError, StoreError) as exc:
            system = getattr(exc, "system", "") or ("store" if isinstance(exc, StoreError) else "")
            reason = redact(str(exc))
            click.echo(guard_text("aborted_in", system=system, reason=reason) if system
                       else guard_text("aborted", reason=reason), err=True)
            sys.exit(exit_codes.ABORTED)
        except KeyboardInterrupt:
            click.echo(guard_text("interrupted"), err=True)
            sys.exit(exit_codes.ABORTED)
    return wrapper


def parse_since(ctx, param, value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a date; use YYYY-MM-DD or an ISO timestamp "
                                 f"(e.g. 2025-09-01 or 2025-09-01T00:00:00+03:00)") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def cli_settings(*, store_only: bool = False, **overrides):
    """The settings of a command, with logging set up from them.

    ``store_only``: the command reads only the store (``status``), so the survey
    platform's settings must not be required; the source is never built from these.
    """
    from sync.logs import setup_logging
    from sync.settings import load_settings
    if store_only:
        # The pull API's URL and token are required only for SURVEY_SOURCE=api; this
        # command never builds the source, so the setting is moot here.
        overrides["survey_source"] = "intake"
    settings = load_settings(**overrides)
    setup_logging(fmt=settings.log_format, level=settings.log_level)
    return settings


def print_summary(summary, report_path: Path | None, language: str) -> None:
    from sync.report.labels import LABELS
    from sync.report.render import format_summary_line
    click.echo(format_summary_line(summary, language=language))
    if report_path is not None:
        click.echo(LABELS[language]["report_written"].format(path=report_path))


def check_report_path(path: Path) -> None:
    """Refuse a report path that cannot be written, before the run writes anything to the CRM.

    The directory must exist and be writable, or be creatable (its nearest existing
    ancestor a writable directory); an existing file must be writable.
    """
    import os

    from sync.report.render import format_for_path
    try:
        format_for_path(path)
    except ValueError as exc:
        raise ConfigError(f"--report {path}: {exc}") from None
    target = Path(os.path.abspath(path))
    if target.is_dir():
        raise ConfigError(f"--report {path}: is a directory → give a file name, e.g. {Path(path) / 'report.html'}")
    ancestor = target.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise ConfigError(f"--report {path}: {ancestor} is a file, not a directory → choose another place")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise ConfigError(f"--report {path}: this user cannot write in {ancestor} → choose a writable directory "
                          f"or fix its permissions")
    if target.exists() and not os.access(target, os.W_OK):
        raise ConfigError(f"--report {path}: the existing file is not writable → remove it or choose another name")


def write_report_or_say_why(summary, path: Path | None, settings, *, show_personal_data: bool = False) -> Path | None:
    """Write the report; if that fails after the run, say why on stderr and return None (the run is not lost).

    Contacts and deals link to their cards on the portal of BITRIX24_WEBHOOK_URL (its host only).
    """
    if path is None:
        return None
    from sync.report.render import portal_url, write_report
    language = settings.report_language
    try:
        return write_report(summary, path, language=language, show_personal_data=show_personal_data,
                            crm_url=portal_url(settings.bitrix24_webhook_url))
    except OSError as exc:
        from sync.report.labels import LABELS
        click.echo(LABELS[language]["report_not_written"].format(path=path, reason=exc.strerror or exc), err=True)
        return None


def exit_for(summary, language: str = "en") -> int:
    if summary.outcome == "interrupted":
        from sync.report.labels import LABELS
        from sync.report.texts import error_text
        click.echo(LABELS[language]["interrupted"].format(error=error_text(summary.error, masked=True,
                                                                             language=language)), err=True)
        return exit_codes.ABORTED
    return exit_codes.OK if summary.outcome == "ok" else exit_codes.NEEDS_ATTENTION


def stop_on_signals():
    """SIGTERM/SIGINT: finish the batches in flight, record the run, stop; a second signal stops at once."""
    import signal
    import threading

    stop = threading.Event()

    def handler(signum, frame):
        if stop.is_set():
            raise KeyboardInterrupt
        click.echo(f"{signal.Signals(signum).name}: finishing the batches in flight, then stopping "
                   f"(send it again to stop at once)", err=True)
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    return stop


class Progress:
    """A one-line progress display on stderr, only when it is a terminal."""

    def __init__(self, language: str = "en") -> None:
        self.enabled = sys.stderr.isatty()
        self.counts = {"pull": 0, "plan": 0, "push": 0}
        self.language = language
        self.open = False  # the cursor is at the end of a progress line
        if self.enabled:
            # A log line must start on a line of its own, not after the progress text: end
            # the progress line first. A patcher runs before any sink writes; sync.logs's
            # own patcher (the redaction) still runs after ours.
            from loguru import logger

            from sync.logs import _patch
            logger.configure(patcher=lambda record: (self.end_line(), _patch(record)))

    def __call__(self, stage: str, n: int) -> None:
        if not self.enabled:
            return
        from sync.report.labels import LABELS
        self.counts[stage] = self.counts.get(stage, 0) + n
        c = self.counts
        sys.stderr.write("\r" + LABELS[self.language]["progress"].format(read=c["pull"], planned=c["plan"],
                                                                         pushed=c["push"]) + "   ")
        sys.stderr.flush()
        self.open = True

    def end_line(self) -> None:
        if self.open:
            sys.stderr.write("\n")
            sys.stderr.flush()
            self.open = False

    def close(self) -> None:
        self.end_line()
        if self.enabled:
            from loguru import logger

            from sync.logs import _patch
            logger.configure(patcher=_patch)




def requests_made(client) -> int:
    """Requests a client has made so far (0 for a source that counts none, like the intake's inbox)."""
    return int(getattr(getattr(client, "stats", None), "requests", 0) or 0)


def say_unmatched_polls(ctx, summary, poll_ids: set[int], language: str) -> None:
    """``sync --poll`` with an id the platform never listed: say nothing matched, rather than "ok" alone."""
    from sync.report.labels import LABELS
    if summary.counts.get("polls_seen", 0):
        return
    known = {p.poll_id for p in ctx.ledger.poll_rows(poll_ids=sorted(poll_ids))}
    for poll_id in sorted(poll_ids - known):
        click.echo(LABELS[language]["poll_unmatched"].format(poll_id=poll_id))


def check_retry_answers(ctx, answer_ids: set[int], language: str) -> None:
    """``retry --answer``: an id the store does not hold is a usage error (exit 2); one already synced is said."""
    if not answer_ids:
        return
    from sync.report.labels import LABELS
    rows = {r.answer_id: r for r in ctx.ledger.answer_rows(answer_ids=answer_ids)}
    missing = sorted(answer_ids - set(rows))
    if missing:
        ids = ", ".join(str(a) for a in missing)
        raise ConfigError(f"answer {ids} is not in the store, so there is nothing to retry → check the id "
                          f"(`cli.py status` lists the answers needing attention), or fetch it with "
                          f"`cli.py replay --answer {missing[0]} --poll <poll id>`")
    for answer_id, row in sorted(rows.items()):
        if row.status == "pushed":
            click.echo(LABELS[language]["retry_already_synced"].format(answer_id=answer_id))
