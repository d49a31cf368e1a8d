"""One sync run: pull → stage → poll forms → answers (plan, write), returning a ``RunSummary``.

``cli.py`` and the scheduler are thin shells over ``run()``; this module builds
nothing from the environment: the source, the CRM client, the ledger and the
mapping come in. A dry-run goes down exactly the same path over a throw-away copy
of the store (``storage.snapshot``) and stops where the CRM would be written.
"""
from __future__ import annotations

import contextvars
import dataclasses
import gc
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

from loguru import logger

from core.clock import utc_now
from sync.answers_stage import AnswerStage, candidate_origin_ids, record_invalid
from sync.mapping import FieldMapping
from sync.options import RunBudget, RunOptions, RunSummary
from sync.polls_stage import poll_questions, read_poll_lookups, sync_polls
from sync.source.pull import pull
from sync.tally import Tally

__all__ = ["RunOptions", "RunSummary", "candidate_origin_ids", "run"]


def _stats(bitrix, survey) -> tuple[int, int, int]:
    b, s = getattr(bitrix, "stats", None), getattr(survey, "stats", None)
    return getattr(b, "requests", 0), getattr(b, "retries", 0), getattr(s, "requests", 0)


def run(options: RunOptions, *, survey, bitrix, ledger, mapping: FieldMapping,
        progress: Callable[[str, int], None] | None = None, summary_out: list | None = None) -> RunSummary:
    """Do one sync run and return its summary; upstream failures propagate after the run is recorded.

    ``summary_out`` receives the summary as soon as it exists, so a caller can report a
    run that ended in an exception.
    """
    started = utc_now()
    t0 = time.monotonic()
    # The clients live as long as the process (the scheduler reuses them): count this run's share.
    before = _stats(bitrix, survey)
    if options.max_requests is not None or options.max_duration_s is not None:
        # The budget stops the run where SIGTERM would: asked before each batch, chunk and page.
        options = dataclasses.replace(options, stop=RunBudget(
            options.stop, max_requests=options.max_requests, max_duration_s=options.max_duration_s,
            requests=lambda: _stats(bitrix, survey)[0] - before[0]))
    run_id = ledger.start_run(command=options.command, dry_run=options.dry_run, since=options.since,
                              poll_filter=sorted(options.poll_ids))
    summary = RunSummary(run_id=run_id if not options.dry_run else f"dry-{uuid.uuid4()}", command=options.command,
                         dry_run=options.dry_run, started_at=started)
    if summary_out is not None:
        summary_out.append(summary)
    tally = Tally(keep_plan=options.keep_plan or options.dry_run)
    # A run allocates millions of short-lived objects (rows, models, JSON); the default
    # collector thresholds spent a fifth of the CPU on collections that free nothing.
    thresholds = gc.get_threshold()
    gc.set_threshold(100_000, 50, 100)
    try:
        with logger.contextualize(run_id=summary.run_id[:8]):
            _stages(options, summary, tally, run_id, survey=survey, bitrix=bitrix, ledger=ledger, mapping=mapping,
                    progress=progress or (lambda stage, n: None))
    except BaseException as exc:
        summary.outcome = "interrupted" if isinstance(exc, KeyboardInterrupt) else "aborted"
        summary.error = str(exc) or type(exc).__name__
        raise
    finally:
        gc.set_threshold(*thresholds)
        summary.finished_at = utc_now()
        summary.duration_s = round(time.monotonic() - t0, 3)
        summary.counts = dict(tally.counts)
        summary.problems_by_code = dict(tally.problems)
        summary.bitrix_requests, summary.bitrix_retries, summary.survey_requests = (
            a - b for a, b in zip(_stats(bitrix, survey), before))
        summary.plan = tally.plan
        try:
            ledger.finish_run(run_id=run_id, outcome=summary.outcome, counts=summary.counts,
                              requests=summary.bitrix_requests, retries=summary.bitrix_retries, error=summary.error)
        except Exception as exc:  # the original error matters more than the bookkeeping
            logger.error("could not record the end of run {}: {}", run_id, exc)
    return summary


def _stages(options: RunOptions, summary: RunSummary, tally: Tally, run_id: str, *, survey, bitrix, ledger,
            mapping: FieldMapping, progress: Callable[[str, int], None]) -> None:
    requests_before = _stats(bitrix, survey)[0]
    read_ahead = None
    if options.pull:
        # The poll stage's look-ups need only the polls: they are read while the answers are
        # pulled, so the portal's bucket drains them while it would otherwise sit idle. Only
        # reads: the forms are written after the pull, which may find a poll deleted.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="poll-lookups") as background:
            ahead: list = []

            def read_poll_lookups_ahead() -> None:
                questions = poll_questions(options, ledger=ledger, mapping=mapping, with_programmes=True)
                if questions is not None:
                    ahead.append((questions, background.submit(contextvars.copy_context().run, read_poll_lookups,
                                                               bitrix, mapping, questions)))

            pulled = pull(survey, ledger, since=options.since, poll_ids=options.poll_ids or None,
                          lookback=options.lookback, run_id=run_id, on_page=lambda n: progress("pull", n),
                          stop=options.stop, polls_staged=read_poll_lookups_ahead)
            if ahead:
                read_ahead = (ahead[0][0], ahead[0][1].result())
        tally.counts.update(polls_seen=pulled.polls_seen, answers_seen=pulled.answers_seen, new=pulled.new,
                            changed=pulled.changed, unchanged=pulled.unchanged)
        for record in pulled.invalid:
            record_invalid(record.raw, record.error, poll_id=record.poll_id, ledger=ledger, tally=tally,
                           run_id=run_id)
    polls = sync_polls(options, ledger=ledger, bitrix=bitrix, mapping=mapping, tally=tally, with_programmes=True,
                       read_ahead=read_ahead)
    AnswerStage(options, ledger=ledger, bitrix=bitrix, mapping=mapping, tally=tally, run_id=run_id, polls=polls,
                progress=progress).run()
    if _stats(bitrix, survey)[0] == requests_before and hasattr(bitrix, "call"):
        # An idle run still proves the webhook works, so a revoked one is noticed before data waits on it.
        bitrix.call("profile")
    summary.outcome = "needs_attention" if tally.attention else "ok"
    stopped = _why_stopped(options.stop)
    if stopped:
        summary.outcome = "interrupted"
        summary.error = stopped


def _why_stopped(stop) -> str:
    """Why the run stopped early, or "" when it did not (a budget that ran out only after the last batch did not)."""
    budget = stop if isinstance(stop, RunBudget) else None
    if budget is not None and budget.reason:
        return budget.reason
    signal = budget.stop if budget is not None else stop
    if signal is not None and signal.is_set():
        return "stopped on request (SIGTERM/SIGINT) after the batches in flight; the next run goes on"
    return ""
