"""The answer stage of a run: plan and write the contacts and deals of every answer to push.

Chunks come from the ledger (what to push is decided there, once, for a run and a
dry-run alike). Each chunk goes through the same steps: read the records, look up
the CRM, plan, then write — the write is where a dry-run stops — and settle every
answer in the ledger as its batch returns. Answers whose outcome stayed unknown are
reconciled by their external keys before anything is sent again.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any, Callable, Iterable

from loguru import logger
from pydantic import ValidationError

from core.clock import utc_now
from storage.ledger import PushedResult, content_hash
from sync.crashpoints import crash_point
from sync.crm.bulk import push_bulk
from sync.crm.lookups import fetch_answer_lookups, fetch_programmes
from sync.crm.push import BatchSizer, OutcomeTracker, push_commands
from sync.mapping import FieldMapping
from sync.options import RunOptions
from sync.plan.build import AnswerInput, ProgrammeResolver, build_answer_plan, chosen_programmes, origin_id
from sync.plan.models import AnswerPlan, Problem, Programme
from sync.plan.normalize import normalize_email
from sync.polls_stage import PollForms
from sync.source.models import CHECKED_TEXT, Answer
from sync.tally import Tally

RECONCILE_ROUNDS = 3

# (payload, content hash, deal ids the ledger knows, ledger status)
Row = tuple[dict, str, dict, str]


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


class AnswerStage:
    def __init__(self, options: RunOptions, *, ledger, bitrix, mapping: FieldMapping, tally: Tally, run_id: str,
                 polls: PollForms, progress: Callable[[str, int], None]) -> None:
        self.o = options
        self.ledger = ledger
        self.bitrix = bitrix
        self.mapping = mapping
        self.tally = tally
        self.run_id = run_id
        self.polls = polls
        self.progress = progress
        self.source_name = options.source_name or mapping.source_name
        self._programmes: list[Programme] | None = polls.programmes
        # One for the run: a portal that got slow in one chunk is still slow in the next.
        self.sizer = BatchSizer(options.batch_size, options.concurrency)

    def programmes(self) -> list[Programme]:
        if self._programmes is None:
            self._programmes = fetch_programmes(self.bitrix, self.mapping)
        return self._programmes

    # --- selection -------------------------------------------------------------------------------
    def chunks(self) -> Iterable[list[Row]]:
        """Chunks of answers to plan and push, as the ledger selects them."""
        answer_ids = sorted(self.o.answer_ids) if self.o.answer_ids else None
        if self.o.force and answer_ids:
            # Replay: what the CRM holds decides, not what the ledger remembers (a deleted deal is made again).
            rows = self.ledger.answer_rows(answer_ids=answer_ids)
            yield [(r.payload, r.content_hash, {}, "changed") for r in rows]
            return
        for rows in self.ledger.answers_to_push(poll_ids=sorted(self.o.poll_ids) or None, answer_ids=answer_ids,
                                                include_attention=self.o.include_attention,
                                                chunk=self.o.chunk_size):
            yield [(r.payload, r.content_hash, dict(r.deal_ids or {}), r.status) for r in rows]

    def run(self) -> list[int]:
        """Push every chunk, then reconcile what stayed unknown; return the answers still unknown."""
        unknown: list[int] = []
        for chunk in self.chunks():
            if self.o.stopping:
                break
            unknown += self.push_chunk(chunk)
        for round_no in range(RECONCILE_ROUNDS):
            if not unknown or self.o.stopping:
                break
            logger.info("reconciling {} answers whose push outcome is unknown (round {})", len(unknown), round_no + 1)
            rows = self.ledger.answer_rows(answer_ids=unknown)
            unknown = self.push_chunk([(r.payload, r.content_hash, dict(r.deal_ids or {}), "in_flight")
                                       for r in rows])
        self.tally.count("unknown", len(unknown))
        return unknown

    # --- one chunk -------------------------------------------------------------------------------
    def inputs(self, chunk: list[Row]) -> tuple[list[AnswerInput], list[str]]:
        """Readable answers whose poll form exists, and the external keys of the deals they may have made."""
        inputs: list[AnswerInput] = []
        resolver = ProgrammeResolver(self.programmes(), self.mapping.programmes.aliases)
        keys: list[str] = []
        for payload, stored_hash, deal_ids, status in chunk:
            try:
                answer = Answer.model_validate(payload, context=CHECKED_TEXT)  # the store holds UTF-8 only
            except ValidationError as exc:
                self.invalid(payload, str(exc).splitlines()[0] if str(exc) else "invalid record")
                continue
            if answer.poll_id in self.polls.failed:
                self.ledger.mark_failed(answer_id=answer.answer_id, retryable=True,
                                        error=f"waiting for the poll form of poll {answer.poll_id}, which could "
                                              f"not be written: {self.polls.failed[answer.poll_id]}")
                self.tally.count("failed")
                continue
            inputs.append(AnswerInput(answer=answer, content_hash=stored_hash or content_hash(payload),
                                      known_deal_ids={k: int(v) for k, v in deal_ids.items()},
                                      edited=status == "changed"))
            # Every answer, not only those the ledger doubts: a new, lost or switched store
            # must not create again what the CRM already holds.
            keys += candidate_origin_ids(answer, resolver, self.mapping)
        return inputs, keys

    def push_chunk(self, chunk: list[Row]) -> list[int]:
        inputs, keys = self.inputs(chunk)
        if not inputs:
            return []
        # As typed: the portal folds only ASCII letters, so a contact stored as "Пётр@x.ru" is found by the
        # typed form; sync.crm.lookups asks for it and for the lower-cased one the job stores.
        typed = [i.answer.value_of(self.mapping.questions.email) for i in inputs]
        emails = [t for t in typed if normalize_email(t)[0]]
        known = [d for i in inputs for d in i.known_deal_ids.values()]
        lookups = fetch_answer_lookups(self.bitrix, self.mapping, emails=emails, origin_ids=keys,
                                       source_name=self.source_name, programmes=self.programmes(),
                                       concurrency=self.o.concurrency,
                                       deal_ids=known if self.mapping.deal.reuse != "never" else ())
        plan = build_answer_plan(inputs, polls=self.polls.context, lookups=lookups, mapping=self.mapping,
                                 source_name=self.source_name)
        self.tally.count("planned", len(plan.answers))
        for answer in plan.answers:
            self.tally.note(answer.problems)
        if self.tally.plan is not None:
            self.tally.plan.answers.extend(plan.answers)
            self.tally.plan.contacts.extend(plan.contacts)
        self.ledger.mark_all_needing_attention({answer.answer_id: [p.model_dump() for p in answer.problems]
                                                for answer in plan.answers if not answer.deals})
        if self.o.dry_run:  # the write is where a dry-run stops
            for command in plan.commands:
                self.tally.count(f"{command.kind}_planned")
            self.tally.count("needs_attention", sum(a.needs_attention for a in plan.answers))
            self.tally.count("ready", sum(not a.needs_attention for a in plan.answers))
            self.progress("plan", len(plan.answers))
            return []
        self.tally.count("needs_attention", sum(not a.deals for a in plan.answers))
        return self.write(plan)

    def write(self, plan) -> list[int]:
        """Send the plan's commands; settle each answer as its batches return. Returns the unknown ones."""
        by_answer = {a.answer_id: a for a in plan.answers}
        tracker = OutcomeTracker(plan)
        marked: set[int] = set()
        unknown: list[int] = []

        def mark_in_flight(sent) -> None:
            """Just before a batch leaves: its answers' outcome is unknown until it returns."""
            ids = {a for c in sent for a in c.answer_ids} - marked
            if ids:
                self.ledger.mark_in_flight(answer_ids=sorted(ids), run_id=self.run_id)
                marked.update(ids)
                crash_point("in_flight")

        def settle(results) -> None:
            pushed = []
            for outcome in tracker.add(results):
                answer = by_answer[outcome.answer_id]
                if self.tally.plan is not None:
                    answer.outcome, answer.outcome_error = outcome.state, outcome.error
                    answer.outcome_contact_id, answer.outcome_deal_ids = outcome.contact_id, dict(outcome.deal_ids)
                if outcome.state == "pushed":
                    pushed.append(_pushed(outcome, answer))
                    self.tally.count("needs_attention" if answer.needs_attention else "pushed")
                elif outcome.state == "failed":
                    self.ledger.mark_failed(answer_id=outcome.answer_id, error=outcome.error,
                                            retryable=outcome.retryable,
                                            problems=[p.model_dump() for p in answer.problems])
                    self.tally.count("failed" if outcome.retryable else "needs_attention")
                    logger.warning("answer {}: {}", outcome.answer_id, outcome.error)
                else:
                    unknown.append(outcome.answer_id)
            if pushed:
                self.ledger.mark_pushed(results=pushed)
                crash_point("ledger_updated")
            self.progress("push", len(pushed))

        if self.o.bulk:
            results = push_bulk(self.bitrix, plan.commands, batch_size=self.o.batch_size, on_batch=settle,
                                concurrency=self.o.concurrency, stop=self.o.stop, before_send=mark_in_flight)
        else:
            results = push_commands(self.bitrix, plan.commands, on_batch=settle, stop=self.o.stop,
                                    before_send=mark_in_flight, sizer=self.sizer)
        kind_of = {c.name: c.kind for c in plan.commands}
        for name, r in results.items():
            if r.state == "ok":
                self.tally.written(kind_of[name])
        return unknown

    # --- records that do not fit the contract ----------------------------------------------------
    def invalid(self, payload: Any, error: str, *, poll_id: int | None = None) -> None:
        record_invalid(payload, error, poll_id=poll_id, ledger=self.ledger, tally=self.tally, run_id=self.run_id)


def record_invalid(payload: Any, error: str, *, poll_id: int | None, ledger, tally: Tally, run_id: str) -> None:
    """A record that does not fit the contract: kept needing attention if it has a usable id."""
    tally.note([Problem(code="invalid_record", severity="attention")])
    tally.count("needs_attention")
    raw = payload if isinstance(payload, dict) else {}
    answer_id, poll_id = raw.get("answer_id"), raw.get("poll_id", poll_id)
    if not _usable_id(answer_id):
        logger.warning("unreadable record (no usable answer id) skipped: {}", error)
        return
    problems = [Problem(code="invalid_record", severity="attention", params={"error": error[:300]}).model_dump()]
    try:
        if ledger.get_answer(answer_id) is None and _usable_id(poll_id):
            updated = raw.get("updated_at")
            try:
                stamp = datetime.fromisoformat(updated) if isinstance(updated, str) else None
            except ValueError:
                stamp = None
            stamp = stamp if stamp is not None and stamp.tzinfo else utc_now()
            ledger.stage_answers(answers=[{**raw, "answer_id": answer_id, "poll_id": poll_id,
                                           "updated_at": stamp.isoformat()}],
                                 watermark=None, run_id=run_id)
        ledger.mark_needs_attention(answer_id=answer_id, problems=problems)
    except Exception as exc:  # bookkeeping of one bad record never stops the run
        logger.error("answer {}: could not record it as needing attention: {}", answer_id, exc)


def _usable_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value <= 2 ** 53


def _pushed(outcome, answer: AnswerPlan) -> PushedResult:
    return PushedResult(answer_id=outcome.answer_id, contact_id=outcome.contact_id, deal_ids=outcome.deal_ids,
                        pushed_hash=answer.content_hash, problems=[p.model_dump() for p in answer.problems])
