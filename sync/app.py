"""Wiring: build the clients, the store and the mapping from settings, then run under the lock.

The only place that turns ``Settings`` into live objects; ``cli.py`` and the scheduler
both call ``execute()``.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Callable

from loguru import logger

from sync.clients.bitrix24 import Bitrix24Client
from sync.clients.survey import SurveyClient
from sync.mapping import FieldMapping, load_mapping
from sync.run import RunOptions, RunSummary, run
from sync.settings import Settings


@dataclass
class Context:
    settings: Settings
    mapping: FieldMapping
    survey: SurveyClient
    bitrix: Bitrix24Client
    ledger: object
    engine: object


def build_context(settings: Settings) -> Context:
    from storage.db import make_engine, migrate
    from storage.ledger import Ledger

    mapping = load_mapping(settings.field_mapping)
    survey = SurveyClient(settings.survey_api_url, settings.survey_api_token, timeout=settings.http_timeout_s,
                          max_attempts=max(settings.max_attempts, 3))
    bitrix = Bitrix24Client(settings.bitrix24_webhook_url, timeout=settings.http_timeout_s,
                            rate_per_s=settings.rate_limit_per_s, burst=settings.rate_limit_burst,
                            max_attempts=settings.max_attempts)
    engine = make_engine(settings.database_url)
    migrate(engine)
    return Context(settings=settings, mapping=mapping, survey=survey, bitrix=bitrix, ledger=Ledger(engine),
                   engine=engine)


def options_from(settings: Settings, **kwargs) -> RunOptions:
    return RunOptions(lookback=timedelta(minutes=settings.lookback_minutes), chunk_size=settings.chunk_size,
                      batch_size=settings.batch_size, source_name=settings.source_name,
                      concurrency=settings.push_concurrency, **kwargs)


def execute(ctx: Context, options: RunOptions, *, progress: Callable[[str, int], None] | None = None) -> RunSummary:
    """Run once; writing runs hold the store's lock (a dry-run writes nothing and needs none)."""
    if options.dry_run:
        return run(options, survey=ctx.survey, bitrix=ctx.bitrix, ledger=ctx.ledger, mapping=ctx.mapping,
                   progress=progress)
    from storage.lock import run_lock

    from sync.report.metrics import write_metrics
    from sync.report.render import format_summary_line

    with run_lock(ctx.engine, database_url=ctx.settings.database_url, holder=options.command):
        ctx.ledger.mark_stale_runs_interrupted()
        started: list = []  # run() puts its summary here first, so an aborted run is reported too
        try:
            return run(options, survey=ctx.survey, bitrix=ctx.bitrix, ledger=ctx.ledger, mapping=ctx.mapping,
                       progress=progress, summary_out=started)
        finally:
            if started:
                summary = started[0]
                logger.bind(run_id=summary.run_id[:8]).info("{}", format_summary_line(summary, language="en"))
                if ctx.settings.metrics_file is not None:
                    write_metrics(summary, ctx.settings.metrics_file)


def stage_one(ctx: Context, *, answer_id: int, poll_id: int | None) -> None:
    """Fetch one answer (and its poll) afresh and stage it, so the next push includes it."""
    from core.errors import ConfigError, NotFoundError

    if poll_id is None:
        row = ctx.ledger.get_answer(answer_id)
        if row is None:
            raise ConfigError(f"answer {answer_id} is not in the ledger: give its poll with --poll")
        poll_id = row.poll_id
    try:
        answer = ctx.survey.get_answer(poll_id, answer_id)
    except NotFoundError:
        raise ConfigError(f"answer {answer_id} of poll {poll_id} does not exist on the survey platform") from None
    if not ctx.ledger.poll_rows(poll_ids=[poll_id]):
        for page in ctx.survey.iter_polls(None):
            polls = [p.model_dump(mode="json") for p in page.items if p.poll_id == poll_id]
            if polls:
                ctx.ledger.stage_polls(polls=polls, watermark=None, run_id="replay")
    ctx.ledger.stage_answers(answers=[answer.model_dump(mode="json")], watermark=None, run_id="replay")
