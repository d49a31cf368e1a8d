"""The composition root: the one place that turns ``Settings`` into live objects.

``Context`` builds each object the first time it is asked for — the mapping, the
source, the Bitrix24 client, the store — so a command uses only what it needs
(``status`` never needs a webhook) and every command builds them the same way.
``execute()`` runs once under the store's lock; a dry-run runs the same path over a
throw-away copy of the store (``storage.snapshot``), taken under the lock (waiting up to
``RunOptions.lock_wait_s`` for a real run to finish) and planned without it.
"""
from __future__ import annotations

from datetime import timedelta
from functools import cached_property
from typing import Any, Callable

from loguru import logger

from sync.mapping import FieldMapping, load_mapping
from sync.options import RunOptions, RunSummary
from sync.settings import Settings


class Context:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @cached_property
    def mapping(self) -> FieldMapping:
        return load_mapping(self.settings.field_mapping)

    def reload_mapping(self) -> None:
        """Read the mapping file again (the scheduler does, so a fix applies at the next tick)."""
        self.__dict__["mapping"] = load_mapping(self.settings.field_mapping)

    @cached_property
    def survey(self) -> Any:
        """The source of polls and answers: the survey platform's API, or the intake's inbox."""
        if getattr(self.settings, "survey_source", "api") == "intake":
            from sync.source.inbox import InboxSource
            return InboxSource(self.engine)
        return self.survey_client()

    def survey_client(self, **overrides: Any) -> Any:
        """The survey API's client from the settings; ``overrides`` (the doctor's short timeout…) win."""
        from sync.clients.survey import SurveyClient
        s = self.settings
        kwargs = {"timeout": s.http_timeout_s, "max_attempts": s.max_attempts, **overrides}
        return SurveyClient(s.survey_api_url, s.survey_api_token, **kwargs)

    @cached_property
    def bitrix(self) -> Any:
        return self.bitrix_client()

    def bitrix_client(self, **overrides: Any) -> Any:
        """The Bitrix24 client from the settings; ``overrides`` (the doctor's short timeout…) win."""
        from core.errors import ConfigError
        from sync.clients.bitrix24 import Bitrix24Client
        s = self.settings
        if s.bitrix24_webhook_url is None:
            raise ConfigError("BITRIX24_WEBHOOK_URL is not set (the inbound webhook URL, "
                              "https://<portal>.bitrix24.ru/rest/<user_id>/<secret>/) → set it in the environment "
                              "or in .env; only commands that talk to Bitrix24 need it")
        # The portal sums operating time over a sliding ten minutes, so a method's time frees within
        # that: a wait budget shorter than the window (300 s) turned a 10,000-answer backfill's wait
        # for it into thousands of answers failed with "run again later".
        kwargs = {"timeout": s.bitrix24_timeout_s, "rate_per_s": s.rate_limit_per_s, "burst": s.rate_limit_burst,
                  "max_attempts": s.max_attempts, "operating_limit_s": s.operating_limit_s or None,
                  "operating_margin": s.operating_margin, "max_wait_s": 660.0 if s.operating_limit_s else 300.0,
                  **overrides}
        return Bitrix24Client(s.bitrix24_webhook_url, **kwargs)

    @cached_property
    def opened(self) -> Any:
        """The store, connected but not migrated (what the run lock of a Postgres store needs)."""
        from storage.db import make_engine
        return make_engine(self.settings.database_url)

    @cached_property
    def engine(self) -> Any:
        """The store, migrated: ready for the ledger."""
        from storage.db import migrate
        migrate(self.opened)
        return self.opened

    def run_lock(self, holder: str, *, wait_s: float = 0.0) -> Any:
        """The store's run lock, taken before the store is migrated or written.

        Two runs started at the same instant must not both open and migrate a SQLite store
        (one of them would fail "database is locked" instead of exiting 4): its file lock
        needs only the path. A Postgres advisory lock needs a connection, not a migrated schema.
        """
        from storage.db import normalise_url
        from storage.lock import run_lock
        url = self.settings.database_url
        target = url if normalise_url(url).get_backend_name() == "sqlite" else self.opened
        return run_lock(target, database_url=url, holder=holder, wait_s=wait_s)

    @cached_property
    def ledger(self) -> Any:
        from storage.ledger import Ledger
        return Ledger(self.engine)


def build_context(settings: Settings) -> Context:
    """A context whose mapping is read (a broken mapping fails here, at start); the store opens under the lock."""
    ctx = Context(settings)
    ctx.mapping
    return ctx


def options_from(settings: Settings, **kwargs) -> RunOptions:
    return RunOptions(lookback=timedelta(minutes=settings.lookback_minutes), chunk_size=settings.chunk_size,
                      batch_size=settings.batch_size, source_name=settings.source_name,
                      concurrency=settings.push_concurrency, **kwargs)


def execute(ctx: Context, options: RunOptions, *, progress: Callable[[str, int], None] | None = None) -> RunSummary:
    """Run once. A real run holds the store's lock; a dry-run runs over a private copy of the store."""
    from sync.run import run

    if options.dry_run:
        from contextlib import ExitStack

        from storage.ledger import Ledger
        from storage.snapshot import snapshot_of
        with ExitStack() as stack:
            # The lock only while the store is copied: a copy taken in the middle of a real run would
            # hold its in-flight answers, which the dry-run would then reconcile against the CRM and
            # report as if they were its own. After the copy the real run may go on (or start).
            with ctx.run_lock(f"{options.command} --dry-run", wait_s=options.lock_wait_s):
                copy = stack.enter_context(snapshot_of(ctx.engine))
            ledger = Ledger(copy)
            before = ledger.needing_attention_ids()
            summary = run(options, survey=ctx.survey, bitrix=ctx.bitrix, ledger=ledger, mapping=ctx.mapping,
                          progress=progress)
            # What the backlog would be after this run: the copy never records a push's outcome,
            # so the answers the plan leaves needing attention are added from the plan.
            planned = {a.answer_id for a in summary.plan.answers if a.needs_attention} if summary.plan else set()
            add_backlog(summary, ledger, before, also=planned)
            return summary
    from sync.report.metrics import write_metrics
    from sync.report.render import format_summary_line

    with ctx.run_lock(options.command):
        ctx.ledger.mark_stale_runs_interrupted()
        before = ctx.ledger.needing_attention_ids()
        started: list = []  # run() puts its summary here first, so an aborted run is reported too
        try:
            return run(options, survey=ctx.survey, bitrix=ctx.bitrix, ledger=ctx.ledger, mapping=ctx.mapping,
                       progress=progress, summary_out=started)
        finally:
            if started:
                summary = started[0]
                add_backlog(summary, ctx.ledger, before)
                if ctx.settings.survey_source == "intake":
                    from storage.inbox import inbox_stats
                    summary.inbox = inbox_stats(ctx.engine)
                logger.bind(run_id=summary.run_id[:8]).info("{}", format_summary_line(summary, language="en"))
                if ctx.settings.metrics_file is not None:
                    write_metrics(summary, ctx.settings.metrics_file)


def add_backlog(summary: RunSummary, ledger: Any, before: set[int], *, also: set[int] = frozenset()) -> None:
    """Put the store's attention backlog on ``summary``: the total, how many are new, the oldest.

    A run that adds nothing must still say what waits for a person, or the backlog
    vanishes from the summary line and the metrics after the run that created it.
    """
    try:
        after = ledger.needing_attention_ids() | also
        summary.attention_oldest_seen_at = ledger.oldest_needing_attention() if after else None
    except Exception as exc:  # the run's own outcome matters more than this count
        logger.warning("could not count the answers needing attention: {}", exc)
        return
    summary.attention_backlog = len(after)
    summary.attention_new = len(after - before)


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
