"""Push: send a plan's commands in ``batch`` calls and turn each reply into per-answer outcomes.

Every command's own result is read; a batch never fails as a whole except when the
request itself failed, and then what it did is either known not to have happened
(retry later) or unknown (the answers stay ``in_flight`` and are reconciled by their
external keys before anything is sent again).
"""
from __future__ import annotations

import threading
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


def push_commands(client: BatchClient, commands: Sequence[Command], *, batch_size: int = 50,
                  on_batch: Callable[[dict[str, CommandResult]], None] | None = None,
                  concurrency: int = 1, stop: threading.Event | None = None,
                  before_send: Callable[[list[Command]], None] | None = None) -> dict[str, CommandResult]:
    """Send ``commands``; return one result per command name.

    Batches of one level are independent (see ``sync.crm.batching``), so up to
    ``concurrency`` of them are in flight at once: the client's leaky bucket keeps the
    pace, and the burst is used instead of idling through each round trip. Results are
    handled (``on_batch``) in this thread, as each batch returns. ``before_send`` is
    called, also in this thread, just before a batch goes out (the ledger marks its
    answers in flight then, so a stop leaves unsent answers as they were).
    """
    def submit(sent: list[Command]) -> None:
        if before_send is not None:
            before_send(sent)

    results: dict[str, CommandResult] = {}
    created: dict[str, int] = {}

    def handle(batch_results: dict[str, CommandResult], sent: list[Command]) -> None:
        for command in sent:
            outcome = batch_results[command.name]
            if outcome.state == "ok" and outcome.created_id is not None:
                created[command.name] = outcome.created_id
        _distrust_chained(sent, batch_results)
        results.update(batch_results)
        if on_batch is not None:
            on_batch(batch_results)

    for level in pack_levels(list(commands), batch_size):
        if stop is not None and stop.is_set():
            break
        prepared = []
        for batch in level:
            sent, to_send, skipped = _prepare(batch, results, created)
            if skipped:
                handle(skipped, [])
            if to_send:
                prepared.append((sent, to_send))
        if concurrency > 1 and len(prepared) > 1:
            # At most ``concurrency`` in flight; a stop request lets those finish and sends no more.
            with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="push") as pool:
                queue = iter(prepared)
                running: dict = {}
                while True:
                    while len(running) < concurrency and not (stop is not None and stop.is_set()):
                        item = next(queue, None)
                        if item is None:
                            break
                        submit(item[0])
                        running[pool.submit(_send, client, item[0], item[1])] = item[0]
                    if not running:
                        break
                    done, _ = wait(running, return_when=FIRST_COMPLETED)
                    for future in done:
                        handle(future.result(), running.pop(future))
        else:
            for sent, to_send in prepared:
                if stop is not None and stop.is_set():
                    break
                submit(sent)
                handle(_send(client, sent, to_send), sent)
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


def _send(client: BatchClient, sent: list[Command], to_send: dict[str, tuple[str, dict]]) -> dict[str, CommandResult]:
    try:
        reply = client.batch(to_send, halt=False, idempotent=False)
    except AmbiguousWriteError as exc:
        logger.warning("batch of {} commands: outcome unknown ({}); will reconcile by external keys", len(sent), exc)
        return {c.name: CommandResult(c.name, "unknown", error=exc.code or "AMBIGUOUS", description=str(exc),
                                      retryable=True) for c in sent}
    except RetriableError as exc:
        logger.warning("batch of {} commands not applied ({}); will retry later", len(sent), exc)
        return {c.name: CommandResult(c.name, "failed", error=exc.code or "RETRIABLE", description=str(exc),
                                      retryable=True) for c in sent}
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
    return results


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
