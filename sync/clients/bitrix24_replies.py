"""Reading Bitrix24 replies: the envelope models, ``batch`` replies, and rows in PHP shapes.

PHP ``json_encode`` decides the JSON shape: an empty array is ``[]`` (never ``{}``), an
array keyed ``0..n-1`` is a list, anything else an object. So one section, or one
page of rows, can arrive as a list, an object keyed by index or id, ``[]`` or null.
``parse_batch_reply`` and ``rows`` read all of them; a shape that cannot be read is
an error naming the method, never a silent empty result.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from loguru import logger
from pydantic import BaseModel, Field

from sync.clients.bitrix24_failures import SYSTEM, Disposition, command_disposition, scope_for_method
from core.errors import UpstreamError
from core.redact import redact


class CallResult(BaseModel):
    """The success envelope of one call: ``result`` plus paging (``total``, ``next``) and ``time``."""

    result: Any = None
    total: int | None = None
    next: int | None = None
    time: dict[str, Any] = Field(default_factory=dict)


class CommandOutcome(BaseModel):
    """What happened to one command of a ``batch``.

    ``disposition`` says what the caller should do with a failure: ``retry`` (refused
    before running: send again), ``not_executed`` (halt stopped it: send again),
    ``ambiguous`` (may have run: reconcile first), ``fatal`` (the webhook cannot do
    this: stop), ``invalid`` (the portal refused this command's input: fix the data).
    """

    name: str
    method: str = ""
    ok: bool
    result: Any = None
    total: int | None = None
    next: int | None = None
    error: str | None = None
    error_description: str | None = None
    disposition: Disposition = "ok"
    time: dict[str, Any] = Field(default_factory=dict)

    @property
    def retriable(self) -> bool:
        """True when sending the same command again is safe and may succeed."""
        return self.disposition in ("retry", "not_executed")


class BatchResult(BaseModel):
    """One ``CommandOutcome`` per command name, in the order the commands were given."""

    outcomes: dict[str, CommandOutcome]
    halt: bool = False
    time: dict[str, Any] = Field(default_factory=dict)

    def __getitem__(self, name: str) -> CommandOutcome:
        return self.outcomes[name]

    def __len__(self) -> int:
        return len(self.outcomes)

    def __contains__(self, name: object) -> bool:
        return name in self.outcomes

    @property
    def ok(self) -> bool:
        return all(o.ok for o in self.outcomes.values())

    @property
    def failed(self) -> list[CommandOutcome]:
        return [o for o in self.outcomes.values() if not o.ok]

    @property
    def duration_s(self) -> float | None:
        """How long the portal spent on this batch (its ``time`` block); None when the reply did not say."""
        return server_duration(self.time)


def server_duration(block: Mapping[str, Any] | None) -> float | None:
    """The portal's own duration in a ``time`` block: ``duration``, else ``finish - start``."""
    if not isinstance(block, Mapping):
        return None

    def number(value: Any) -> float | None:
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None

    duration = number(block.get("duration"))
    if duration is None:
        start, finish = number(block.get("start")), number(block.get("finish"))
        duration = finish - start if start is not None and finish is not None else None
    return duration if duration is not None and duration >= 0 else None



class BadReply(Exception):
    """A 200 reply whose shape we cannot read (treated as AMBIGUOUS: it may have run)."""


def _section(value: Any, names: list[str], candidates: list[str] | None) -> dict[str, Any]:
    """One ``result_*`` section as ``{name: value}``.

    PHP ``json_encode`` writes ``[]`` when empty, a list when the keys are ``0..n-1``
    and an object otherwise. A list maps index ``i`` to the command named ``str(i)``;
    if no command is named so, the entries are in execution order, and are matched
    to ``candidates`` (the commands that can own them), in order.
    """
    if value is None or value == [] or value == {}:
        return {}
    if isinstance(value, dict):
        return {str(k): v for k, v in value.items()}
    if isinstance(value, list):
        known = set(names)
        if all(str(i) in known for i in range(len(value))):
            return {str(i): v for i, v in enumerate(value)}
        if candidates is not None and len(value) <= len(candidates):
            return dict(zip(candidates, value))
        raise BadReply(f"a list-shaped batch section of {len(value)} entries cannot be matched to commands")
    raise BadReply(f"a batch section is {type(value).__name__}, not an object or a list")


def as_int(value: Any) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def parse_batch_reply(commands: Mapping[str, str], reply: Any, *, halt: bool = False) -> dict[str, CommandOutcome]:
    """Turn the ``result`` of a ``batch`` envelope into one outcome per command name.

    ``commands`` maps name → method, in the order sent. Raises ``BadReply`` only if
    the reply cannot be read at all (then nobody knows which commands ran).
    """
    names = list(commands)
    if not isinstance(reply, dict):
        raise BadReply(f"batch result is {type(reply).__name__}, not an object")
    raw_result, raw_error = reply.get("result"), reply.get("result_error")
    if isinstance(raw_result, list) and isinstance(raw_error, list) and raw_result and raw_error \
            and not all(str(i) in names for i in range(max(len(raw_result), len(raw_error)))):
        raise BadReply("both result and result_error are lists: cannot tell which command failed")
    if isinstance(raw_result, list) and raw_result:
        errors = _section(raw_error, names, None if isinstance(raw_error, list) else [])
        results = _section(raw_result, names, [n for n in names if n not in errors])
    else:
        results = _section(raw_result, names, [])
        errors = _section(raw_error, names, [n for n in names if n not in results])
    succeeded = [n for n in names if n in results and n not in errors]
    times = _section(reply.get("result_time"), names, succeeded)
    totals = _safe_section(reply.get("result_total"), names)
    nexts = _safe_section(reply.get("result_next"), names)

    stray = (set(results) | set(errors)) - set(names)
    if stray:
        logger.warning("Bitrix24 batch reply names commands that were not sent: {}", sorted(stray))

    outcomes: dict[str, CommandOutcome] = {}
    for name in names:
        method = commands[name]
        if name in errors:
            err = errors[name] if isinstance(errors[name], dict) else {"error": "", "error_description": str(errors[name])}
            code = "" if err.get("error") is None else str(err.get("error"))
            description = str(err.get("error_description") or "")
            if code.upper() == "INSUFFICIENT_SCOPE" and not description:
                scope = scope_for_method(method)
                description = f"the webhook lacks the '{scope}' scope: tick it on the inbound webhook"
            outcomes[name] = CommandOutcome(name=name, method=method, ok=False, error=code,
                                            error_description=redact(description),
                                            disposition=command_disposition(code),
                                            time=times.get(name) if isinstance(times.get(name), dict) else {})
        elif name in results:
            outcomes[name] = CommandOutcome(name=name, method=method, ok=True, result=results[name],
                                            total=as_int(totals.get(name)), next=as_int(nexts.get(name)),
                                            time=times.get(name) if isinstance(times.get(name), dict) else {})
        else:
            why = ("not executed: halt=1 stopped the batch at an earlier failing command" if halt
                   else "not executed: the command is missing from the batch reply")
            outcomes[name] = CommandOutcome(name=name, method=method, ok=False, error="NOT_EXECUTED",
                                            error_description=why, disposition="not_executed")
    return outcomes


def _safe_section(value: Any, names: list[str]) -> dict[str, Any]:
    # total/next only exist for some commands; a list we cannot map by index is dropped
    # rather than guessed (it only happens with numeric names, which batch() refuses).
    try:
        return _section(value, names, None)
    except BadReply:
        logger.warning("Bitrix24 batch reply: could not match a list-shaped total/next section to commands")
        return {}



class RowsShapeError(UpstreamError):
    """Raised when a list method's result holds no readable rows (a scalar, or an object without a row list)."""


def rows(method: str, result: Any, key: str | None = None) -> list[dict]:
    """The rows of one list page (``result`` of ``method``), whatever PHP shape they came in.

    * ``key`` names the list inside a wrapping object (``crm.item.list`` → ``items``,
      used by itself for that method); an object without ``key`` is read as below;
    * a list is the rows; an object keyed by index or id (``{"0": {...}}``, ``{"75": {...}}``)
      gives its values; an object holding exactly one list gives that list;
    * ``None``, ``[]``, ``{}``, ``""`` and ``false`` (PHP's ways of saying "nothing") give ``[]``;
    * a row that is not an object cannot be referred to: it is skipped with a warning
      naming the method, and the other rows are kept;
    * anything else (a number, a string, an object of scalars) raises ``RowsShapeError``
      (code ``UNEXPECTED_REPLY``) naming the method: planning on a misread page could
      duplicate records.
    """
    if key is None and method.lower() == "crm.item.list":
        key = "items"
    page = result
    if key is not None and isinstance(page, dict) and key in page:
        page = page[key]
    if isinstance(page, dict) and page:
        lists = [v for v in page.values() if isinstance(v, list)]
        if len(page) == 1 and len(lists) == 1:
            page = lists[0]
        elif all(isinstance(v, dict) for v in page.values()) or all(str(k).isdigit() for k in page):
            page = list(page.values())  # rows keyed by index or ID (a PHP array that is not a list)
        else:
            hint = "; pass key= naming the list" if key is None else f"; it has no {key!r} list"
            raise RowsShapeError(redact(f"Bitrix24 {method}: cannot find the rows in the reply (keys "
                                        f"{sorted(map(str, page))[:5]}){hint}."), system=SYSTEM,
                                 code="UNEXPECTED_REPLY")
    if page is None or page is False or page == "" or page == [] or page == {}:
        return []
    if not isinstance(page, list):
        raise RowsShapeError(f"Bitrix24 {method}: the rows are a {type(page).__name__}, not a list or an object.",
                             system=SYSTEM, code="UNEXPECTED_REPLY")
    found = [row for row in page if isinstance(row, dict)]
    if len(found) < len(page):
        logger.warning("Bitrix24 {}: {} row(s) that are not objects; ignored", method, len(page) - len(found))
    return found
