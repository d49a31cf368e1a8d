#!/usr/bin/env python3
"""Command line of the survey → Bitrix24 sync job. ``python cli.py --help`` lists the commands.

Data and reports go to stdout, logs and progress to stderr. Exit codes live in
``sync/exit_codes.py`` and are mapped to errors in one place, ``guarded``.
"""
from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path

import click

from jobs.cli_common import (DRY_RUN_LOCK_WAIT_S, Progress, check_report_path, check_retry_answers, cli_settings,
                             exit_for, guarded, parse_since, print_summary, requests_made, say_unmatched_polls,
                             stop_on_signals, write_report_or_say_why)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Pull survey answers and push them into Bitrix24 as contacts, deals and poll forms.

    \b
    Quick start (no configuration needed):
      python cli.py demo
    Real use:
      export SURVEY_API_URL=... SURVEY_API_TOKEN=... BITRIX24_WEBHOOK_URL=...
      python cli.py sync --dry-run --report plan.html
      python cli.py sync
    """


@cli.command()
@click.option("--since", callback=parse_since, help="Backfill from this date instead of the stored watermark "
                                                     "(the watermark never moves backwards).")
@click.option("--poll", "polls", type=int, multiple=True, help="Limit the run to this poll id (repeatable).")
@click.option("--dry-run", is_flag=True, help="Read and plan everything; write nothing to Bitrix24 or the store.")
@click.option("--report", "report_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the full plan/result: .md, .html, .json or .csv.")
@click.option("--show-personal-data", is_flag=True, help="Do not mask e-mails, names and phones in the report.")
@click.option("--metrics-file", type=click.Path(dir_okay=False, path_type=Path),
              help="Write Prometheus metrics of the run here (node_exporter textfile collector).")
@click.option("--bulk", is_flag=True, help="Backfills: create contacts and deals with crm.item.batchImport, "
                                           "1,000 a request. Imported records SKIP the CRM's automation rules.")
@click.option("--max-requests", type=click.IntRange(min=1), default=None,
              help="Stop sending after this many Bitrix24 requests (batches in flight finish); the next run goes on.")
@click.option("--max-duration", "max_duration", type=click.FloatRange(min=0, min_open=True), default=None,
              metavar="SECONDS", help="Stop sending after this many seconds (batches in flight finish); "
                                      "the next run goes on.")
@click.option("--lock-wait", "lock_wait", type=click.FloatRange(min=0), default=DRY_RUN_LOCK_WAIT_S,
              show_default=True, metavar="SECONDS",
              help="--dry-run only: wait this long for a running sync to finish before copying the store, "
                   "then skip with exit 4 (0: skip at once). A real run never waits: the next tick catches up.")
@guarded
def sync(since, polls, dry_run, report_path, show_personal_data, metrics_file, bulk, max_requests,
         max_duration, lock_wait) -> None:
    """Pull new and changed answers and push them to Bitrix24.

    \b
    Examples:
      python cli.py sync --dry-run --report plan.html
      python cli.py sync --since 2025-09-01 --poll 430131691
    """
    from sync.app import build_context, execute, options_from
    if report_path is not None:
        check_report_path(report_path)  # before the run: a report that cannot be written must not cost a run
    settings = cli_settings(metrics_file=metrics_file)
    ctx = build_context(settings)
    options = options_from(settings, command="sync", since=since, poll_ids=set(polls), dry_run=dry_run,
                           keep_plan=report_path is not None, stop=stop_on_signals(), bulk=bulk,
                           max_requests=max_requests, max_duration_s=max_duration, lock_wait_s=lock_wait)
    progress = Progress(settings.report_language)
    try:
        summary = execute(ctx, options, progress=progress)
    finally:
        progress.close()
    if polls:
        say_unmatched_polls(ctx, summary, set(polls), settings.report_language)
    written = write_report_or_say_why(summary, report_path, settings, show_personal_data=show_personal_data)
    print_summary(summary, written, settings.report_language)
    sys.exit(exit_for(summary, settings.report_language))


@cli.command()
@click.option("--answer", "answer_ids", type=int, multiple=True, help="Only this answer id (repeatable).")
@click.option("--report", "report_path", type=click.Path(dir_okay=False, path_type=Path), help="Write a report.")
@guarded
def retry(answer_ids, report_path) -> None:
    """Push again what needs attention or failed, after the mapping or the CRM was fixed.

    \b
    Example:
      python cli.py retry                 # everything needing attention or failed
      python cli.py retry --answer 814573990
    """
    from sync.app import build_context, execute, options_from
    if report_path is not None:
        check_report_path(report_path)
    settings = cli_settings()
    ctx = build_context(settings)
    check_retry_answers(ctx, set(answer_ids), settings.report_language)
    options = options_from(settings, command="retry", pull=False, include_attention=True, answer_ids=set(answer_ids),
                           keep_plan=report_path is not None)
    summary = execute(ctx, options)
    written = write_report_or_say_why(summary, report_path, settings)
    print_summary(summary, written, settings.report_language)
    sys.exit(exit_for(summary, settings.report_language))


@cli.command()
@click.option("--answer", "answer_id", type=int, required=True, help="The answer id to fetch and sync.")
@click.option("--poll", "poll_id", type=int, help="Its poll id (default: from the ledger).")
@guarded
def replay(answer_id, poll_id) -> None:
    """Fetch one answer afresh from the survey API and sync it.

    \b
    Example:
      python cli.py replay --answer 814573990
    """
    from sync.app import build_context, execute, options_from, stage_one
    settings = cli_settings()
    ctx = build_context(settings)
    before = requests_made(ctx.survey)
    stage_one(ctx, answer_id=answer_id, poll_id=poll_id)
    fetched = requests_made(ctx.survey) - before  # the run below counts only its own requests
    options = options_from(settings, command="replay", pull=False, force=True, answer_ids={answer_id})
    summary = execute(ctx, options)
    summary.survey_requests += fetched
    print_summary(summary, None, settings.report_language)
    sys.exit(exit_for(summary, settings.report_language))


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (every answer needing attention, "
                                                       "unless --limit is given).")
@click.option("--limit", type=click.IntRange(min=1), default=None,
              help="List at most N answers needing attention [default: 100; --json: all].")
@click.option("--all", "show_all", is_flag=True, help="List every answer needing attention.")
@click.option("--reason", metavar="CODE", help="Only answers with this problem code (e.g. unknown_programme; "
                                               "'failed' for failed pushes).")
@click.option("--poll", "polls", type=int, multiple=True, help="Only this poll's answers (repeatable).")
@guarded
def status(as_json, limit, show_all, reason, polls) -> None:
    """Show the watermarks, the last runs, answers by state and those needing attention.

    Reads only the store: no webhook or survey settings are needed.

    \b
    Examples:
      python cli.py status
      python cli.py status --reason unknown_programme --all
      python cli.py status --poll 430131691 --json
    """
    from jobs.status import DEFAULT_LIMIT, collect_status, status_lines
    from sync.app import Context
    if show_all and limit is not None:
        raise click.UsageError("--all and --limit are mutually exclusive: give one of them")
    settings = cli_settings(store_only=True)
    if show_all or (as_json and limit is None):
        limit = None
    elif limit is None:
        limit = DEFAULT_LIMIT
    ctx = Context(settings)
    data = collect_status(ctx.ledger, limit=limit, reason=reason, poll_ids=set(polls))
    from storage.inbox import inbox_stats
    data["inbox"] = inbox_stats(ctx.engine)
    if as_json:
        click.echo(json.dumps(data, ensure_ascii=False, indent=2))
        return
    for line in status_lines(data, settings.report_language):
        click.echo(line)


@cli.command()
@click.option("--answers", default=300, show_default=True, help="Generated answers besides the sample ones.")
@click.option("--report", "report_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Where to write the report (default: reports/demo-<time>.html).")
@guarded
def demo(answers, report_path) -> None:
    """Start the sandbox in-process and sync into it with a temporary SQLite store."""
    import tempfile

    from sandbox import Sandbox
    from sync.app import build_context, execute, options_from
    from sync.logs import setup_logging
    from sync.report.render import portal_url, write_report
    from sync.settings import load_settings

    setup_logging(fmt="text", level="INFO")
    # The office's real portal and its vocabulary, as the default field_mapping.json describes.
    with Sandbox(answers=answers, seed=1, portal="real") as box, \
            tempfile.TemporaryDirectory(prefix="sync-demo-") as tmp:
        settings = load_settings(**box.settings_kwargs(), database_url=f"sqlite:///{tmp}/demo.sqlite3",
                                 field_mapping=str(Path(__file__).with_name("field_mapping.json")))
        setup_logging(fmt=settings.log_format, level=settings.log_level)
        ctx = build_context(settings)
        summary = execute(ctx, options_from(settings, command="sync", keep_plan=True))
        report_path = report_path or Path("reports") / f"demo-{datetime.now():%Y%m%d-%H%M%S}.html"
        report_path.parent.mkdir(parents=True, exist_ok=True)
        write_report(summary, report_path, language=settings.report_language,
                     crm_url=portal_url(settings.bitrix24_webhook_url))
        crm = box.bitrix.admin.counters()
        print_summary(summary, report_path, settings.report_language)
        click.echo(f"sandbox Bitrix24 saw {crm['requests']} requests carrying {crm['batch_commands']} batch commands")
    # The sample data holds bad answers on purpose: the demo succeeded if the run completed.


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--survey-port", default=8081, show_default=True)
@click.option("--bitrix-port", default=8082, show_default=True)
@click.option("--answers", default=1000, show_default=True, help="Generated answers besides the sample ones.")
@click.option("--seed", default=0, show_default=True, help="Seed of the generated data and of the faults.")
@click.option("--faults", "faults_profile", type=click.Choice(["none", "flaky", "chaos"]), default="none",
              show_default=True, help="Fault injection profile.")
@click.option("--portal", type=click.Choice(["real", "smart"]), default="real", show_default=True,
              help="real: the office's portal (lists 17/18) and its answer codes; smart: sandbox/portal.json.")
@click.option("--profile", "bitrix_profile", type=click.Choice(["standard", "enterprise"]), default="standard",
              show_default=True, help="Bitrix24 plan: standard 2 requests/s, bucket 50; enterprise 5/s, 250.")
@click.option("--rate-limit", type=float, default=None,
              help="Bitrix24 requests per second (default: the profile's; 0: off).")
@click.option("--burst", type=int, default=None, help="Bitrix24 bucket size (default: the profile's).")
@click.option("--latency-ms", default=0.0, show_default=True, help="Added to every response.")
def sandbox(host, survey_port, bitrix_port, answers, seed, faults_profile, portal, bitrix_profile, rate_limit, burst,
            latency_ms) -> None:
    """Serve the survey-platform and Bitrix24 emulators until Ctrl-C.

    \b
    Example:
      python cli.py sandbox --answers 100000 --profile enterprise
      # then, in another shell, export the printed variables and run: python cli.py sync
      python cli.py sandbox --portal smart   # with examples/field_mapping.smart-processes.json
    """
    import time

    from sandbox import Sandbox
    from sandbox.httpbase import serve_until_stopped

    t0 = time.monotonic()
    # Only what the operator gave overrides the profile's limits.
    limits: dict = {}
    if rate_limit is not None:
        limits["rate_limit"] = rate_limit or None  # 0: no bucket at all
    if burst is not None:
        limits["burst"] = burst
    box = Sandbox(host=host, survey_port=survey_port, bitrix_port=bitrix_port, answers=answers, seed=seed,
                  faults=faults_profile, portal=portal, bitrix_profile=bitrix_profile, latency_ms=latency_ms, **limits)
    box.start()
    click.echo(f"sandbox ready in {time.monotonic() - t0:.1f}s; to point the job at it:", err=True)
    for key, value in box.env().items():
        click.echo(f"export {key}='{value}'")
    click.echo(f"# admin: {box.survey.admin_url} and {box.bitrix.base_url}/_admin/state", err=True)
    serve_until_stopped(box.stop)


from jobs.cli_ops import doctor, schedule  # noqa: E402

cli.add_command(schedule)
cli.add_command(doctor)
from jobs.explain_cli import explain  # noqa: E402
cli.add_command(explain)
from intake.cli import intake_command  # noqa: E402
cli.add_command(intake_command)

if __name__ == "__main__":
    cli()
