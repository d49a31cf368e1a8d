"""One sync run: pull → stage → plan → push, returning a ``RunSummary``.

``cli.py`` and the scheduler are thin shells over ``run()``; this module builds
nothing from the environment: the clients, the ledger and the mapping come in.
"""
from __future__ import annotations

import gc
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterable

from loguru import logger
from pydantic import BaseModel, Field, ValidationError

from sync.crm.bulk import push_bulk
from sync.crashpoints import crash_point
from sync.crm.lookups import fetch_answer_lookups, fetch_poll_lookups, fetch_programmes
from sync.mapping import FieldMapping
from sync.source.models import Answer, Poll
from sync.plan.normalize import normalize_email
from sync.plan.build import (AnswerInput, ProgrammeResolver, build_answer_plan, build_poll_plan, chosen_programmes,
                       origin_id)
from sync.plan.models import AnswerPlan, Plan, PollContext, PollPlan, Problem, Programme
from sync.source.pull import pull
from sync.crm.push import OutcomeTracker, push_commands

RECONCILE_ROUNDS = 3


@dataclass
class RunOptions:
    command: str = "sync"
    since: datetime | None = None
    poll_ids: set[int] = field(default_factory=set)
    dry_run: bool = False
    pull: bool = True
    answer_ids: set[int] = field(default_factory=set)
    include_attention: bool = False
    force: bool = False          # push ``answer_ids`` whatever their state (replay)
    keep_plan: bool = False
    lookback: timedelta = timedelta(minutes=10)
    chunk_size: int = 2000
    batch_size: int = 50
    concurrency: int = 1
    bulk: bool = False           # create contacts and deals with crm.item.batchImport (skips CRM automation)
    stop: threading.Event | None = None   # set by SIGTERM: finish the batches in flight, send no more
    source_name: str | None = None


class RunSummary(BaseModel):
    run_id: str
    command: str = "sync"
    dry_run: bool = False
    started_at: datetime
    finished_at: datetime | None = None
    duration_s: float = 0.0
    outcome: str = "running"
    error: str | None = None
    counts: dict[str, int] = Field(default_factory=dict)
    problems_by_code: dict[str, int] = Field(default_factory=dict)
    bitrix_requests: int = 0
    bitrix_retries: int = 0
    survey_requests: int = 0
    plan: Plan | None = None

    @property
    def needs_attention(self) -> int:
        return self.counts.get("needs_attention", 0)


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def candidate_origin_ids(answer: Answer, resolver: ProgrammeResolver, mapping: FieldMapping) -> list[str]:
    """Every deal key an answer's push may already have created (for reconciliation).

    Reads the chosen programmes exactly as the planner does, so the keys looked up are
    the keys the planner gives deals.
    """
    keys = {"0"}
    for name in chosen_programmes(answer, mapping.questions.programmes, []):
        programme, _ = resolver.resolve(name)
        if programme is not None:
            keys.add(str(programme.id))
    return [origin_id(answer.answer_id, k) for k in sorted(keys)]


class _Run:
    def __init__(self, *, options: RunOptions, survey, bitrix, ledger, mapping: FieldMapping,
                 progress: Callable[[str, int], None] | None) -> None:
        self.o = options
        self.survey = survey
        self.bitrix = bitrix
        self.ledger = ledger
        self.mapping = mapping
        self.progress = progress or (lambda stage, n: None)
        self.source_name = options.source_name or mapping.source_name
        self.counts: Counter[str] = Counter()
        self.problems: Counter[str] = Counter()
        self.report = Plan() if (options.keep_plan or options.dry_run) else None
        self.run_id = ""
        self.poll_context: dict[int, PollContext] = {}
        self.failed_polls: dict[int, str] = {}
        self._programmes: list[Programme] | None = None

    # --- helpers --------------------------------------------------------------------------------
    @property
    def stopping(self) -> bool:
        return self.o.stop is not None and self.o.stop.is_set()

    def programmes(self) -> list[Programme]:
        if self._programmes is None:
            self._programmes = fetch_programmes(self.bitrix, self.mapping)
        return self._programmes

    def _note(self, problems: Iterable[Problem]) -> None:
        for p in problems:
            self.problems[p.code] += 1

    # --- polls ----------------------------------------------------------------------------------
    def sync_polls(self, run_id: str, dry_polls: dict[int, dict[str, Any]]) -> None:
        rows = {r.poll_id: r for r in self.ledger.poll_rows(poll_ids=self.o.poll_ids or None)}
        for row in rows.values():
            if row.item_id is not None:
                self.poll_context[row.poll_id] = self._context(row.payload, row.item_id, row.assigned_by_id)
        if self.o.dry_run:
            todo = [(Poll.model_validate(p), "", rows[pid].item_id if pid in rows else None)
                    for pid, p in dry_polls.items()
                    if pid not in rows or rows[pid].content_hash != _hash(p) or rows[pid].status != "pushed"]
            todo += [(Poll.model_validate(r.payload), r.content_hash, r.item_id) for r in rows.values()
                     if r.status in ("pending", "changed", "failed") and r.poll_id not in dry_polls]
        else:
            todo = [(Poll.model_validate(r.payload), r.content_hash, r.item_id)
                    for r in self.ledger.polls_to_push(poll_ids=self.o.poll_ids or None)]
        if not todo:
            return
        lookups = fetch_poll_lookups(self.bitrix, self.mapping, owner_emails=[p.employee_email for p, _, _ in todo],
                                     poll_ids=[p.poll_id for p, _, item in todo if item is None],
                                     with_programmes=self._programmes is None)
        if lookups.programmes is not None:
            self._programmes = lookups.programmes
        plan = build_poll_plan(todo, lookups, self.mapping)
        polls = {poll.poll_id: poll for poll, _, _ in todo}
        for poll_plan in plan.polls:
            self._note(poll_plan.problems)
            for p in poll_plan.problems:
                logger.warning("poll {}: {} ({})", poll_plan.poll_id, p.code, p.params)
            self.poll_context[poll_plan.poll_id] = self._context(polls[poll_plan.poll_id].model_dump(mode="json"),
                                                                 poll_plan.item_id, poll_plan.owner_id)
        if self.report is not None:
            self.report.polls.extend(plan.polls)
        if self.o.dry_run:
            self.counts["poll_forms_to_create"] += sum(p.action == "create" for p in plan.polls)
            self.counts["poll_forms_to_update"] += sum(p.action == "update" for p in plan.polls)
            return
        results = push_commands(self.bitrix, plan.commands, batch_size=self.o.batch_size,
                                concurrency=self.o.concurrency, stop=self.o.stop)
        for poll_plan in plan.polls:
            r = results.get(poll_plan.command or "")
            if r is None or r.state != "ok":
                error = f"{r.error} {r.description}".strip() if r else "not sent"
                logger.error("poll {}: poll form not written: {}", poll_plan.poll_id, error)
                self.ledger.mark_poll_failed(poll_id=poll_plan.poll_id, error=error)
                self.counts["poll_forms_failed"] += 1
                # Its answers wait: pushed now, their deals would never be linked to the form.
                self.poll_context.pop(poll_plan.poll_id, None)
                self.failed_polls[poll_plan.poll_id] = error
                continue
            item_id = r.created_id if poll_plan.action == "create" else poll_plan.item_id
            self.counts["poll_forms_created" if poll_plan.action == "create" else "poll_forms_updated"] += 1
            self.ledger.mark_poll_pushed(poll_id=poll_plan.poll_id, item_id=item_id, assigned_by_id=poll_plan.owner_id,
                                         pushed_hash=poll_plan.content_hash,
                                         problems=[p.model_dump() for p in poll_plan.problems])
            self.poll_context[poll_plan.poll_id].item_id = item_id

    @staticmethod
    def _context(payload: dict, item_id: int | None, owner_id: int | None) -> PollContext:
        return PollContext(poll_id=payload["poll_id"], poll_name=payload.get("poll_name", ""),
                           poll_language=payload.get("poll_language", ""), status=payload.get("status", ""),
                           employee_email=payload.get("employee_email", ""), item_id=item_id,
                           owner_id=owner_id or 0)

    # --- answers --------------------------------------------------------------------------------
    def answer_chunks(self, dry_answers: dict[int, dict[str, Any]]) -> Iterable[list[tuple[dict, str, dict, str]]]:
        """Chunks of ``(payload, content_hash, known deal ids, status)`` to plan and push."""
        answer_ids = sorted(self.o.answer_ids) if self.o.answer_ids else None
        seen: set[int] = set()
        if self.o.force and answer_ids:
            rows = self.ledger.answer_rows(answer_ids=answer_ids)
            yield [(r.payload, r.content_hash, dict(r.deal_ids or {}), "changed") for r in rows]
            return
        for rows in self.ledger.answers_to_push(poll_ids=sorted(self.o.poll_ids) or None, answer_ids=answer_ids,
                                                include_attention=self.o.include_attention,
                                                chunk=self.o.chunk_size):
            chunk = []
            for r in rows:
                payload = dry_answers.get(r.answer_id, r.payload) if self.o.dry_run else r.payload
                if self.o.dry_run:  # only a dry-run needs to know what the ledger already offered
                    seen.add(r.answer_id)
                chunk.append((payload, r.content_hash, dict(r.deal_ids or {}), r.status))
            yield chunk
        if self.o.dry_run and dry_answers:
            known = {r.answer_id: r for r in self.ledger.answer_rows(answer_ids=sorted(set(dry_answers) - seen))}
            extra = []
            for answer_id, payload in sorted(dry_answers.items()):
                if answer_id in seen:
                    continue
                row = known.get(answer_id)
                if row is not None and row.content_hash == _hash(payload) and row.status in ("pushed", "needs_attention"):
                    continue
                extra.append((payload, "", dict(row.deal_ids or {}) if row else {}, row.status if row else "pending"))
            for i in range(0, len(extra), self.o.chunk_size):
                yield extra[i:i + self.o.chunk_size]

    def sync_answers(self, run_id: str, dry_answers: dict[int, dict[str, Any]]) -> list[int]:
        unknown: list[int] = []
        for chunk in self.answer_chunks(dry_answers):
            if self.stopping:
                break
            unknown += self.push_chunk(run_id, chunk)
        for round_no in range(RECONCILE_ROUNDS):
            if not unknown or self.o.dry_run or self.stopping:
                break
            logger.info("reconciling {} answers whose push outcome is unknown (round {})", len(unknown), round_no + 1)
            rows = self.ledger.answer_rows(answer_ids=unknown)
            unknown = self.push_chunk(run_id, [(r.payload, r.content_hash, dict(r.deal_ids or {}), "in_flight")
                                               for r in rows])
        self.counts["unknown"] += len(unknown)
        return unknown

    def push_chunk(self, run_id: str, chunk: list[tuple[dict, str, dict, str]]) -> list[int]:
        inputs: list[AnswerInput] = []
        resolver = ProgrammeResolver(self.programmes(), self.mapping.programmes.aliases)
        reconcile: list[str] = []
        for payload, content_hash, deal_ids, status in chunk:
            try:
                answer = Answer.model_validate(payload)
            except ValidationError as exc:
                self._invalid(payload, str(exc).splitlines()[0] if str(exc) else "invalid record")
                continue
            if answer.poll_id in self.failed_polls:
                if not self.o.dry_run:
                    self.ledger.mark_failed(answer_id=answer.answer_id, retryable=True,
                                            error=f"waiting for the poll form of poll {answer.poll_id}, which could "
                                                  f"not be written: {self.failed_polls[answer.poll_id]}")
                self.counts["failed"] += 1
                continue
            inputs.append(AnswerInput(answer=answer, content_hash=content_hash or _hash(payload),
                                      known_deal_ids={k: int(v) for k, v in deal_ids.items()}))
            if status in ("in_flight", "failed", "changed"):
                reconcile += candidate_origin_ids(answer, resolver, self.mapping)
        if not inputs:
            return []
        emails = [e for e in (normalize_email(i.answer.value_of(self.mapping.questions.email))[0] for i in inputs) if e]
        lookups = fetch_answer_lookups(self.bitrix, self.mapping, emails=emails, origin_ids=reconcile,
                                       source_name=self.source_name, programmes=self.programmes(),
                                       concurrency=self.o.concurrency)
        plan = build_answer_plan(inputs, polls=self.poll_context, lookups=lookups, mapping=self.mapping,
                                 source_name=self.source_name)
        self.counts["planned"] += len(plan.answers)
        for answer in plan.answers:
            self._note(answer.problems)
        if self.report is not None:
            self.report.answers.extend(plan.answers)
            self.report.contacts.extend(plan.contacts)
        kinds = Counter(c.kind for c in plan.commands)
        if self.o.dry_run:
            for kind, n in kinds.items():
                self.counts[f"{kind}_planned"] += n
            self.counts["needs_attention"] += sum(a.needs_attention for a in plan.answers)
            self.counts["ready"] += sum(not a.needs_attention for a in plan.answers)
            self.progress("plan", len(plan.answers))
            return []
        by_answer = {a.answer_id: a for a in plan.answers}
        without = [a for a in plan.answers if not a.deals]
        for answer in without:
            self.ledger.mark_needs_attention(answer_id=answer.answer_id,
                                             problems=[p.model_dump() for p in answer.problems])
            self.counts["needs_attention"] += 1
        tracker = OutcomeTracker(plan)
        marked: set[int] = set()

        def mark_in_flight(sent) -> None:
            """Just before a batch leaves: its answers' outcome is unknown until it returns."""
            ids = {a for c in sent for a in c.answer_ids} - marked
            if ids:
                self.ledger.mark_in_flight(answer_ids=sorted(ids), run_id=run_id)
                marked.update(ids)
                crash_point("in_flight")

        unknown: list[int] = []

        def settle(results) -> None:
            pushed = []
            for outcome in tracker.add(results):
                answer = by_answer[outcome.answer_id]
                if self.report is not None:
                    answer.outcome, answer.outcome_error = outcome.state, outcome.error
                    answer.outcome_contact_id, answer.outcome_deal_ids = outcome.contact_id, dict(outcome.deal_ids)
                if outcome.state == "pushed":
                    pushed.append(_pushed(outcome, answer))
                    self.counts["needs_attention" if answer.needs_attention else "pushed"] += 1
                elif outcome.state == "failed":
                    self.ledger.mark_failed(answer_id=outcome.answer_id, error=outcome.error,
                                            retryable=outcome.retryable,
                                            problems=[p.model_dump() for p in answer.problems])
                    self.counts["failed" if outcome.retryable else "needs_attention"] += 1
                    logger.warning("answer {}: {}", outcome.answer_id, outcome.error)
                else:
                    unknown.append(outcome.answer_id)
            if pushed:
                self.ledger.mark_pushed(results=pushed)
                crash_point("ledger_updated")
            self.progress("push", len(pushed))

        push = push_bulk if self.o.bulk else push_commands
        results = push(self.bitrix, plan.commands, batch_size=self.o.batch_size, on_batch=settle,
                       concurrency=self.o.concurrency, stop=self.o.stop, before_send=mark_in_flight)
        kind_of = {c.name: c.kind for c in plan.commands}
        for name, r in results.items():
            if r.state == "ok":
                self.counts[kind_of[name].replace("_add", "s_created").replace("_update", "s_updated")] += 1
        return unknown

    def _invalid(self, payload: Any, error: str, *, poll_id: int | None = None) -> None:
        """A record that does not fit the contract: kept needing attention if it has a usable id."""
        self.problems["invalid_record"] += 1
        self.counts["needs_attention"] += 1
        raw = payload if isinstance(payload, dict) else {}
        answer_id, poll_id = raw.get("answer_id"), raw.get("poll_id", poll_id)
        if self.o.dry_run or not _usable_id(answer_id):
            logger.warning("unreadable record (no usable answer id) skipped: {}", error)
            return
        problems = [Problem(code="invalid_record", severity="attention", params={"error": error[:300]}).model_dump()]
        try:
            if self.ledger.get_answer(answer_id) is None and _usable_id(poll_id):
                updated = raw.get("updated_at")
                try:
                    stamp = datetime.fromisoformat(updated) if isinstance(updated, str) else None
                except ValueError:
                    stamp = None
                stamp = stamp if stamp is not None and stamp.tzinfo else utc_now()
                self.ledger.stage_answers(answers=[{**raw, "answer_id": answer_id, "poll_id": poll_id,
                                                    "updated_at": stamp.isoformat()}],
                                          watermark=None, run_id=self.run_id)
            self.ledger.mark_needs_attention(answer_id=answer_id, problems=problems)
        except Exception as exc:  # bookkeeping of one bad record never stops the run
            logger.error("answer {}: could not record it as needing attention: {}", answer_id, exc)


def _usable_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value <= 2 ** 53


def _stats(bitrix, survey) -> tuple[int, int, int]:
    b, s = getattr(bitrix, "stats", None), getattr(survey, "stats", None)
    return getattr(b, "requests", 0), getattr(b, "retries", 0), getattr(s, "requests", 0)


def _hash(payload: dict) -> str:
    from storage.ledger import content_hash
    return content_hash(payload)


def _pushed(outcome, answer: AnswerPlan):
    from storage.ledger import PushedResult
    return PushedResult(answer_id=outcome.answer_id, contact_id=outcome.contact_id, deal_ids=outcome.deal_ids,
                        pushed_hash=answer.content_hash, problems=[p.model_dump() for p in answer.problems])


def run(options: RunOptions, *, survey, bitrix, ledger, mapping: FieldMapping,
        progress: Callable[[str, int], None] | None = None, summary_out: list | None = None) -> RunSummary:
    """Do one sync run and return its summary; upstream failures propagate after the run is recorded."""
    started = utc_now()
    t0 = time.monotonic()
    job = _Run(options=options, survey=survey, bitrix=bitrix, ledger=ledger, mapping=mapping, progress=progress)
    # The clients live as long as the process (the scheduler reuses them): count this run's share.
    job.stats_before = _stats(bitrix, survey)
    if options.dry_run:
        run_id = f"dry-{uuid.uuid4()}"
    else:
        run_id = ledger.start_run(command=options.command, dry_run=False, since=options.since,
                                  poll_filter=sorted(options.poll_ids))
    job.run_id = run_id
    # A run allocates millions of short-lived objects (rows, models, JSON); the default
    # collector thresholds spent a fifth of the CPU on collections that free nothing.
    thresholds = gc.get_threshold()
    gc.set_threshold(100_000, 50, 100)
    try:
        return _run_with_summary(job, options, run_id, started, t0, summary_out, survey=survey, bitrix=bitrix,
                                 ledger=ledger)
    finally:
        gc.set_threshold(*thresholds)


def _run_with_summary(job: _Run, options: RunOptions, run_id: str, started: datetime, t0: float,
                      summary_out: list | None, *, survey, bitrix, ledger) -> RunSummary:
    summary = RunSummary(run_id=run_id, command=options.command, dry_run=options.dry_run, started_at=started)
    if summary_out is not None:  # lets the caller report a run that ended in an exception
        summary_out.append(summary)
    with logger.contextualize(run_id=run_id[:8]):
        return _run_body(job, options, summary, run_id, t0, survey=survey, bitrix=bitrix, ledger=ledger)


def _run_body(job: _Run, options: RunOptions, summary: RunSummary, run_id: str, t0: float, *, survey, bitrix,
              ledger) -> RunSummary:
    try:
        pulled = None
        if options.pull:
            pulled = pull(survey, ledger, since=options.since, poll_ids=options.poll_ids or None,
                          lookback=options.lookback, run_id=run_id, dry_run=options.dry_run,
                          on_page=lambda n: job.progress("pull", n), stop=options.stop)
            job.counts.update(polls_seen=pulled.polls_seen, answers_seen=pulled.answers_seen, new=pulled.new,
                              changed=pulled.changed, unchanged=pulled.unchanged)
            for record in pulled.invalid:
                job._invalid(record.raw, record.error, poll_id=record.poll_id)
        job.sync_polls(run_id, pulled.polls if pulled else {})
        job.sync_answers(run_id, pulled.answers if pulled else {})
        if _stats(bitrix, survey)[0] == job.stats_before[0] and hasattr(bitrix, "call"):
            # An idle run still proves the webhook works, so a revoked one is noticed before data waits on it.
            bitrix.call("profile")
        attention = job.counts["needs_attention"] + job.counts["failed"] + job.counts["unknown"]
        summary.outcome = "needs_attention" if attention else "ok"
        if job.stopping:
            summary.outcome = "interrupted"
            summary.error = "stopped on request (SIGTERM/SIGINT) after the batches in flight; the next run goes on"
    except BaseException as exc:
        summary.outcome = "interrupted" if isinstance(exc, KeyboardInterrupt) else "aborted"
        summary.error = str(exc) or type(exc).__name__
        raise
    finally:
        summary.finished_at = utc_now()
        summary.duration_s = round(time.monotonic() - t0, 3)
        summary.counts = dict(job.counts)
        summary.problems_by_code = dict(job.problems)
        now = _stats(bitrix, survey)
        summary.bitrix_requests, summary.bitrix_retries, summary.survey_requests = (
            a - b for a, b in zip(now, job.stats_before))
        summary.plan = job.report
        if not options.dry_run:
            try:
                ledger.finish_run(run_id=run_id, outcome=summary.outcome, counts=summary.counts,
                                  requests=summary.bitrix_requests, retries=summary.bitrix_retries,
                                  error=summary.error)
            except Exception as exc:  # the original error matters more than the bookkeeping
                logger.error("could not record the end of run {}: {}", run_id, exc)
    return summary
