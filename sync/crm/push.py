"""Push: send a plan's commands in ``batch`` calls and turn each reply into per-answer outcomes.

Every command's own result is read; a batch never fails as a whole except when the
request itself failed, and then what it did is either known not to have happened
(retry later) or unknown (the answers stay ``in_flight`` and are reconciled by their
external keys before anything is sent again).
"""
from __future__ import annotations

import threading
from collections import deque
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Protocol, Sequence

from loguru import logger

from sync.crashpoints import crash_point
from sync.crm.batching import UnresolvedReference, pack_levels, refs_in, resolve_params
from core.errors import AmbiguousWriteError, RetriableError
from sync.plan.models import Command, Plan

State = Literal["ok", "failed", "unknown", "skipped"]

# Legacy CRM methods report server trouble with an empty code and these words; the
# client classifies by code, so these few texts are the only second look.
TRANSIENT_TEXTS = ("general error", "sql query error", "timeout", "temporarily")


@dataclass
class CommandResult:
    name: str
    state: State
    created_id: int | None = None
    error: str = ""
    description: str = ""
    retryable: bool = False


class BatchClient(Protocol):
    def batch(self, commands: dict[str, tuple[str, dict]], *, halt: bool = False, idempotent: bool) -> Any: ...


def created_id(command: Command, result: Any) -> int | None:
    """The id an add command created, from the method's own result shape."""
    if command.kind.endswith("_add"):
        if isinstance(result, dict):  # crm.item.add → {"item": {"id": 7, ...}}
            item = result.get("item", result)
            value = item.get("id", item.get("ID")) if isinstance(item, dict) else None
        else:
            value = result
        try:
            number = int(value) if value is not None and not isinstance(value, bool) else None
        except (TypeError, ValueError):
            return None
        return number if number is not None and number > 0 else None  # 0 or less is no record id
    return None


# A batch the portal took longer than this is getting close to its ~60 s cut-off
# (bitrix24-rest.md §10): well under it, because the next batch may be slower still
# (automation, a busy portal) and one cut off is an unknown outcome to reconcile.
SLOW_BATCH_S = 20.0
# Shrinking aims the next batches at this duration, so they do not hover at the threshold.
TARGET_BATCH_S = 10.0
# Batches this fast, this many in a row, earn a step back towards the configured size.
FAST_BATCH_S = 5.0
FAST_STREAK = 3
MIN_BATCH = 5


class BatchSizer:
    """How many commands a batch carries and how many batches are in flight, adapted to the portal's pace.

    The portal's own duration of each batch (``BatchResult.duration_s``) is the signal: one
    over ``slow_s`` shrinks the batches to what should take ``target_s`` at the same pace per
    command and halves the concurrency; a batch cut off or lost (outcome unknown) halves
    both. ``streak`` batches in a row under ``fast_s`` grow the size by half and the
    concurrency by one, never past the configured ``batch_size`` and ``concurrency``.
    Decrease fast, increase slowly: a portal that slows down does so for a while.
    Thread-safe; one sizer lives through a run, so later chunks start where earlier ones ended.
    """

    def __init__(self, batch_size: int = 50, concurrency: int = 1, *, slow_s: float = SLOW_BATCH_S,
                 target_s: float = TARGET_BATCH_S, fast_s: float = FAST_BATCH_S, streak: int = FAST_STREAK,
                 min_size: int = MIN_BATCH) -> None:
        if not 0 < fast_s <= target_s < slow_s:
            raise ValueError(f"need 0 < fast_s <= target_s < slow_s, got {fast_s}, {target_s}, {slow_s}")
        self.max_size = batch_size
        self.max_concurrency = max(1, concurrency)
        self.min_size = min(min_size, batch_size)
        self.size = batch_size
        self.concurrency = self.max_concurrency
        self.slow_s, self.target_s, self.fast_s, self.streak = slow_s, target_s, fast_s, streak
        self._fast = 0
        self._lock = threading.Lock()
        self.changes: list[tuple[int, int, str]] = []   # (size, concurrency, why) after each change

    def observe(self, duration_s: float | None, commands: int, *, lost: bool = False) -> None:
        """Take one returned batch into account: its portal duration, or ``lost`` when cut off / unknown."""
        with self._lock:
            size, concurrency = self.size, self.concurrency
            if lost:
                self._fast = 0
                self.size = max(self.min_size, size // 2)
                self.concurrency = max(1, concurrency // 2)
                why = "a batch was cut off or lost"
            elif duration_s is None:
                return
            elif duration_s > self.slow_s:
                self._fast = 0
                per_command = duration_s / max(1, commands)
                self.size = max(self.min_size, min(size, int(self.target_s / per_command)))
                self.concurrency = max(1, concurrency // 2)
                why = f"a batch of {commands} took {duration_s:.1f}s on the portal"
            elif commands * 2 >= size and duration_s / max(1, commands) * size < self.fast_s:
                # A batch at least half full whose pace would fill a whole one quickly; a short
                # tail batch says little (packing whole units leaves most batches a little short).
                self._fast += 1
                if self._fast < self.streak or (size, concurrency) == (self.max_size, self.max_concurrency):
                    return
                self._fast = 0
                self.size = min(self.max_size, max(size + 1, size * 3 // 2))
                self.concurrency = min(self.max_concurrency, concurrency + 1)
                why = f"{self.streak} batches in a row took under {self.fast_s:.0f}s"
            else:
                self._fast = 0
                return
            if (self.size, self.concurrency) != (size, concurrency):
                self.changes.append((self.size, self.concurrency, why))
                logger.info("{}: batches of {} → {}, {} → {} at once", why, size, self.size, concurrency,
                            self.concurrency)


def push_commands(client: BatchClient, commands: Sequence[Command], *, batch_size: int = 50,
                  on_batch: Callable[[dict[str, CommandResult]], None] | None = None,
                  concurrency: int = 1, stop: threading.Event | None = None,
                  before_send: Callable[[list[Command]], None] | None = None,
                  sizer: BatchSizer | None = None) -> dict[str, CommandResult]:
    """Send ``commands``; return one result per command name.

    Batches of one level are independent (see ``sync.crm.batching``), so up to
    ``concurrency`` of them are in flight at once: the client's leaky bucket keeps the
    pace, and the burst is used instead of idling through each round trip. Results are
    handled (``on_batch``) in this thread, as each batch returns. ``before_send`` is
    called, also in this thread, just before a batch goes out (the ledger marks its
    answers in flight then, so a stop leaves unsent answers as they were).

    ``sizer`` (default: a fresh ``BatchSizer(batch_size, concurrency)``) adapts both to
    how long the portal takes per batch; when the size changes, the unsent batches of the
    level are packed again at the new size. ``stop`` (anything with ``is_set()``) is
    asked before each batch: once set, the batches in flight finish and no more are sent.
    """
    sizer = sizer if sizer is not None else BatchSizer(batch_size, concurrency)
    results: dict[str, CommandResult] = {}
    created: dict[str, int] = {}

    def stopped() -> bool:
        return stop is not None and stop.is_set()

    def handle(batch_results: dict[str, CommandResult], sent: list[Command]) -> None:
        for command in sent:
            outcome = batch_results[command.name]
            if outcome.state == "ok" and outcome.created_id is not None:
                created[command.name] = outcome.created_id
        _distrust_chained(sent, batch_results)
        results.update(batch_results)
        if on_batch is not None:
            on_batch(batch_results)

    def returned(sent: list[Command], batch_results: dict[str, CommandResult], duration: float | None) -> None:
        lost = bool(sent) and all(batch_results[c.name].state == "unknown" for c in sent)
        sizer.observe(duration, len(sent), lost=lost)
        handle(batch_results, sent)

    levels = deque(pack_levels(list(commands), sizer.size))
    pool = (ThreadPoolExecutor(max_workers=sizer.max_concurrency, thread_name_prefix="push")
            if sizer.max_concurrency > 1 else None)
    try:
        while levels and not stopped():
            todo = deque(levels.popleft())
            packed_at = sizer.size
            running: dict = {}
            while True:
                if todo and sizer.size != packed_at:
                    # The unsent batches of this level are independent of the ones in flight: pack
                    # them again; a unit now larger than a batch puts its rest in levels before the next.
                    again = pack_levels([c for batch in todo for c in batch], sizer.size)
                    todo = deque(again[0])
                    levels.extendleft(reversed(again[1:]))
                    packed_at = sizer.size
                while todo and len(running) < sizer.concurrency and not stopped():
                    sent, to_send, skipped = _prepare(todo.popleft(), results, created)
                    if skipped:
                        handle(skipped, [])
                    if not to_send:
                        continue
                    if before_send is not None:
                        before_send(sent)
                    if pool is None:
                        returned(sent, *_send(client, sent, to_send))
                        break  # look at the sizer again before the next one
                    running[pool.submit(_send, client, sent, to_send)] = sent
                if not running:
                    if todo and not stopped():
                        continue
                    break
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    returned(running.pop(future), *future.result())
    finally:
        if pool is not None:
            pool.shutdown(wait=True)
    return results


def _prepare(batch: list[Command], results: dict[str, CommandResult], created: dict[str, int]):
    """Resolve each command's references; one that depends on a failure is not sent."""
    to_send: dict[str, tuple[str, dict]] = {}
    sent: list[Command] = []
    skipped: dict[str, CommandResult] = {}
    for command in batch:
        try:
            params = resolve_params(command.params, same_batch={c.name for c in sent}, created=created)
        except UnresolvedReference as exc:
            prerequisite = results.get(exc.command) or skipped.get(exc.command)
            unknown = prerequisite is not None and (prerequisite.state == "unknown"
                                                    or prerequisite.error == "PREREQUISITE_UNKNOWN")
            skipped[command.name] = CommandResult(
                command.name, "skipped", error="PREREQUISITE_UNKNOWN" if unknown else "PREREQUISITE_FAILED",
                description=f"not sent: {exc.command} did not succeed",
                retryable=unknown or (prerequisite.retryable if prerequisite else True))
            continue
        to_send[command.name] = (command.method, params)
        sent.append(command)
    return sent, to_send, skipped


def _send(client: BatchClient, sent: list[Command],
          to_send: dict[str, tuple[str, dict]]) -> tuple[dict[str, CommandResult], float | None]:
    """One batch → (a result per command, the portal's duration of it when the reply said)."""
    try:
        reply = client.batch(to_send, halt=False, idempotent=False)
    except AmbiguousWriteError as exc:
        logger.warning("batch of {} commands: outcome unknown ({}); will reconcile by external keys", len(sent), exc)
        return {c.name: CommandResult(c.name, "unknown", error=exc.code or "AMBIGUOUS", description=str(exc),
                                      retryable=True) for c in sent}, None
    except RetriableError as exc:
        logger.warning("batch of {} commands not applied ({}); will retry later", len(sent), exc)
        return {c.name: CommandResult(c.name, "failed", error=exc.code or "RETRIABLE", description=str(exc),
                                      retryable=True) for c in sent}, None
    crash_point("batch_sent")
    outcomes = getattr(reply, "outcomes", reply)
    results: dict[str, CommandResult] = {}
    for command in sent:
        outcome = outcomes.get(command.name)
        if outcome is None:
            results[command.name] = CommandResult(command.name, "failed", error="NOT_EXECUTED",
                                                  description="missing from the batch reply", retryable=True)
        elif outcome.ok:
            results[command.name] = CommandResult(command.name, "ok", created_id=created_id(command, outcome.result))
            if command.kind.endswith("_add") and results[command.name].created_id is None:
                results[command.name] = CommandResult(command.name, "unknown", error="UNEXPECTED_RESULT",
                                                      description=f"no id in {str(outcome.result)[:80]!r}",
                                                      retryable=True)
        else:
            # The client classified the failure once (CommandOutcome.disposition); honour it.
            code = outcome.error or ""
            description = outcome.error_description or ""
            disposition = getattr(outcome, "disposition", "invalid")
            if disposition == "ambiguous":
                results[command.name] = CommandResult(command.name, "unknown", error=code, description=description,
                                                      retryable=True)
                continue
            retryable = disposition in ("retry", "not_executed") or any(
                t in description.lower() for t in TRANSIENT_TEXTS)
            results[command.name] = CommandResult(command.name, "failed", error=code, description=description,
                                                  retryable=retryable)
    duration = getattr(reply, "duration_s", None)
    return results, duration if isinstance(duration, (int, float)) else None


def _distrust_chained(sent: list[Command], results: dict[str, CommandResult]) -> None:
    """A command that used ``$result`` of a failed one in the same batch got a wrong value: mark it failed.

    Bitrix24 substitutes whatever its path walk reaches instead of failing the dependent
    command, so e.g. a deal may exist with a wrong CONTACT_ID. Its id is kept, so the next
    attempt finds it by its external key and repairs it with an update.
    """
    for command in sent:
        for ref in refs_in(command.params):
            prerequisite = results.get(ref)
            if prerequisite is not None and prerequisite.state != "ok" and results[command.name].state == "ok":
                mine = results[command.name]
                results[command.name] = CommandResult(command.name, "failed", created_id=mine.created_id,
                                                      error="PREREQUISITE_FAILED",
                                                      description=f"{ref} failed: {prerequisite.description}",
                                                      retryable=True)


# --- per-answer outcomes ---------------------------------------------------------------------

@dataclass
class AnswerOutcome:
    answer_id: int
    state: Literal["pushed", "failed", "unknown"]
    contact_id: int | None = None
    deal_ids: dict[str, int] = field(default_factory=dict)
    error: str = ""
    retryable: bool = True


class OutcomeTracker:
    """Collects command results and says when each answer of the plan is settled.

    An answer is pushed only when every command it needs succeeded: its contact's create
    or fill-in, its deals, their summaries. None of them is a courtesy: a failed fill-in
    would leave the admissions office without the phone it needs, so it is retried like
    the rest.
    """

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.commands_of: dict[int, set[str]] = {a.answer_id: set() for a in plan.answers}
        self.results: dict[str, CommandResult] = {}
        self._answers_of: dict[str, list[int]] = {}     # command name → answers it settles
        self._answer = {a.answer_id: a for a in plan.answers}
        self._method = {c.name: c.method for c in plan.commands}
        self._contact_of = {answer_id: c for c in plan.contacts for answer_id in c.answer_ids}
        for command in plan.commands:
            for answer_id in dict.fromkeys(command.answer_ids):
                if answer_id in self.commands_of:
                    self.commands_of[answer_id].add(command.name)
                    self._answers_of.setdefault(command.name, []).append(answer_id)
        self._waiting = {answer_id: len(names) for answer_id, names in self.commands_of.items()}

    def add(self, results: dict[str, CommandResult]) -> list[AnswerOutcome]:
        """Record ``results``; return the answers whose last command just got its result."""
        settled = []
        for name, result in results.items():
            if name in self.results:
                continue
            self.results[name] = result
            for answer_id in self._answers_of.get(name, ()):
                self._waiting[answer_id] -= 1
                if self._waiting[answer_id] == 0:
                    settled.append(self._outcome(self._answer[answer_id]))
        return settled

    def _outcome(self, answer) -> AnswerOutcome:
        contact = self._contact_of.get(answer.answer_id)
        contact_id = contact.contact_id if contact else None
        if contact is not None and contact.action == "create":
            r = self.results.get(contact.command or "")
            contact_id = r.created_id if r and r.state == "ok" else None
        deal_ids: dict[str, int] = {}
        for deal in answer.deals:
            r = self.results.get(deal.command)
            if deal.deal_id is not None:
                deal_ids[deal.programme_key] = deal.deal_id
            elif r is not None and r.created_id is not None:
                deal_ids[deal.programme_key] = r.created_id
        mine = [self.results[n] for n in sorted(self.commands_of[answer.answer_id])]
        if any(r.state == "unknown" or r.error == "PREREQUISITE_UNKNOWN" for r in mine):
            return AnswerOutcome(answer.answer_id, "unknown", contact_id, deal_ids)
        failures = [r for r in mine if r.state != "ok"]
        if failures:
            first = failures[0]
            if _deleted(first, self._method.get(first.name, "")):
                return AnswerOutcome(answer.answer_id, "failed", contact_id, deal_ids, retryable=False,
                                     error=f"deleted_in_crm: {first.name}: the record was deleted in Bitrix24 "
                                           f"({first.error or 'error'} {first.description}".strip() + "); "
                                           f"`cli.py replay --answer {answer.answer_id}` creates it again")
            text = f"{first.name}: {first.error or 'error'} {first.description}".strip()
            return AnswerOutcome(answer.answer_id, "failed", contact_id, deal_ids, error=text,
                                 retryable=all(r.retryable for r in failures))
        return AnswerOutcome(answer.answer_id, "pushed", contact_id, deal_ids)


def _deleted(result: CommandResult, method: str) -> bool:
    """An update of a record that is gone: deterministic, never retried, never silently re-created."""
    if not method.endswith(".update") and method != "crm.timeline.comment.add":
        return False
    text = f"{result.error} {result.description}".lower()
    return "not found" in text or "not_found" in text
