"""Bitrix24 REST over an inbound webhook: calls, ``batch``, paging, rate limit, retries.

Everything that can go wrong on the wire is decided in ONE place, ``classify()``
(bitrix24-rest.md §2, §3, §9):

    what came back                                  action     then
    ----------------------------------------------  ---------  ----------------------------------------
    503 QUERY_LIMIT_EXCEEDED                        RETRY      retried for reads and writes (the limiter
    429 OPERATION_TIME_LIMIT                        RETRY        refused before the method ran);
    408, or 429 with any other body                 RETRY        QUERY_LIMIT_EXCEEDED also fills the bucket
    connection refused, DNS failure, connect        RETRY
      timeout (nothing was sent)
    503 OVERLOAD_LIMIT                              RETRY      retried; FatalError once retries run out
    read timeout, connection reset/dropped after    AMBIGUOUS  reads (idempotent=True) retried; writes
      sending, 5xx JSON or not, INTERNAL_SERVER_              raise AmbiguousWriteError at once, so the
      ERROR, 2xx that is not JSON or no envelope              caller reconciles by external keys (§9)
    INVALID_CREDENTIALS, NO_AUTH_FOUND,             FATAL      FatalError at once: what happened, what
      insufficient_scope, expired_token,                        to do, ``.code``
      ERROR_METHOD_NOT_FOUND, INVALID_REQUEST,
      ACCESS_DENIED, PORTAL_DELETED, any 401
    3xx (portal moved; Location shown redacted)     FATAL
    TLS certificate refused                         FATAL      (other TLS errors: AMBIGUOUS)
    4xx that is not JSON (not a Bitrix24 reply)     FATAL
    any other error envelope ("" "Not found", ...)  COMMAND    CommandError(code, description)

A ``batch`` reply becomes one ``CommandOutcome`` per command, never one exception
for the whole batch; each outcome carries a ``disposition`` from the same tables.
The webhook URL's secret never appears in a message, a log line or a ``repr``.
"""
from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from enum import Enum
from typing import Any, Callable, Literal, TypeVar
from urllib.parse import urlsplit

import requests
from loguru import logger
from pydantic import BaseModel, Field, SecretStr

from sync.clients.common import (
    ClientPlumbing,
    NOT_JSON,
    USER_AGENT,
    RetryPolicy,
    body_snippet,
    decode_json,
    describe_exception,
    header,
    is_loopback_host,
    parse_retry_after,
    walk_causes,
)
from sync.clients.phpquery import build_command
from sync.clients.ratelimit import LeakyBucket
from core.errors import AmbiguousWriteError, CommandError, ConfigError, FatalError, RetriableError, UpstreamError
from core.redact import install_logging_filter, redact, redact_url, register_secret

SYSTEM = "bitrix24"
ENV_NAME = "BITRIX24_WEBHOOK_URL"
MAX_BATCH = 50
PAGE_SIZE = 50

_METHOD = re.compile(r"[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*")
_COMMAND_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.:~-]{0,99}")
_WEBHOOK = re.compile(r"/rest/(\d+)/([^/\s]+)/?")


# --------------------------------------------------------------------------- results

class CallResult(BaseModel):
    """The success envelope of one call: ``result`` plus paging (``total``, ``next``) and ``time``."""

    result: Any = None
    total: int | None = None
    next: int | None = None
    time: dict[str, Any] = Field(default_factory=dict)


Disposition = Literal["ok", "retry", "ambiguous", "fatal", "invalid", "not_executed"]


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


class Bitrix24Stats(BaseModel):
    """Counters of one client (a snapshot; read ``client.stats`` again for fresh values)."""

    requests: int = 0
    by_method: dict[str, int] = Field(default_factory=dict)
    batch_commands: int = 0
    retries: int = 0
    rejected_by_rate_limit: int = 0
    waited_s: float = 0.0
    backoff_s: float = 0.0
    errors_by_code: dict[str, int] = Field(default_factory=dict)


# --------------------------------------------------------------------------- classification

class Action(str, Enum):
    RETRY = "retry"            # refused before the method ran: safe to send again, reads and writes
    AMBIGUOUS = "ambiguous"    # may have run: send again only if idempotent
    FATAL = "fatal"            # no retry will help: tell the operator what to do
    COMMAND = "command"        # this call's input was refused: CommandError


@dataclass(frozen=True)
class Reply:
    """An HTTP reply reduced to what ``classify`` needs (``payload`` is decoded JSON or NOT_JSON)."""

    status: int
    payload: Any
    headers: Mapping[str, str] = field(default_factory=dict)
    snippet: str = ""


@dataclass(frozen=True)
class Failure:
    """A classified failure of one HTTP attempt."""

    action: Action
    code: str
    reason: str
    status: int | None = None
    description: str = ""
    retry_after: float | None = None
    penalize: bool = False
    fatal_when_exhausted: bool = False
    location: str | None = None


# Error codes by what they mean for the caller (upper-cased; the server mixes cases).
_RETRY_CODES = {"QUERY_LIMIT_EXCEEDED", "OPERATION_TIME_LIMIT", "OVERLOAD_LIMIT"}
_FATAL_CODES = {"INVALID_CREDENTIALS", "NO_AUTH_FOUND", "INSUFFICIENT_SCOPE", "ERROR_METHOD_NOT_FOUND",
                "EXPIRED_TOKEN", "INVALID_TOKEN", "INVALID_REQUEST", "ACCESS_DENIED", "PORTAL_DELETED",
                "USER_ACCESS_ERROR", "WRONG_AUTH_TYPE"}
_AMBIGUOUS_CODES = {"INTERNAL_SERVER_ERROR", "ERROR_UNEXPECTED_ANSWER"}
# Inside a batch these mean "this command did not run": safe to send again.
_NOT_RUN_CODES = {"ERROR_BATCH_LENGTH_EXCEEDED"}


def _failure_from_exception(exc: BaseException) -> Failure:
    detail = describe_exception(exc)
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return Failure(Action.RETRY, "CONNECT_TIMEOUT", f"connect timeout, nothing was sent ({detail})")
    if isinstance(exc, requests.exceptions.SSLError):
        if "CERTIFICATE" in str(exc).upper():
            return Failure(Action.FATAL, "TLS_CERTIFICATE", f"the portal's TLS certificate was refused ({detail})")
        return Failure(Action.AMBIGUOUS, "TLS_ERROR", f"TLS error ({detail})")
    if isinstance(exc, (requests.exceptions.InvalidURL, requests.exceptions.InvalidSchema,
                        requests.exceptions.MissingSchema, requests.exceptions.InvalidHeader)):
        return Failure(Action.FATAL, "INVALID_URL", f"the request could not be built ({detail})")
    if isinstance(exc, requests.exceptions.Timeout):
        return Failure(Action.AMBIGUOUS, "READ_TIMEOUT", f"no reply in time after sending ({detail})")
    if isinstance(exc, requests.exceptions.ConnectionError):
        from urllib3.exceptions import ConnectTimeoutError, NewConnectionError
        if any(isinstance(c, (NewConnectionError, ConnectTimeoutError)) for c in walk_causes(exc)):
            return Failure(Action.RETRY, "CONNECTION_REFUSED",
                           f"could not connect, nothing was sent ({detail})")
        return Failure(Action.AMBIGUOUS, "CONNECTION_RESET", f"connection dropped after sending ({detail})")
    return Failure(Action.AMBIGUOUS, "TRANSPORT_ERROR", f"transport error ({detail})")


def classify(outcome: Reply | BaseException) -> Failure | None:
    """THE failure table of this client: None for a usable success envelope, else a ``Failure``."""
    if isinstance(outcome, BaseException):
        return _failure_from_exception(outcome)
    status, payload = outcome.status, outcome.payload
    retry_after = parse_retry_after(header(outcome.headers, "Retry-After"))

    if 300 <= status < 400:
        location = header(outcome.headers, "Location")
        shown = redact_url(location) if location else "(no Location header)"
        return Failure(Action.FATAL, "PORTAL_MOVED", f"HTTP {status} redirect to {shown}", status=status,
                       location=shown)

    if isinstance(payload, dict) and "error" in payload:
        code = "" if payload.get("error") is None else str(payload.get("error"))
        description = str(payload.get("error_description") or "")
        up = code.upper()
        reason = f"HTTP {status} {code or '(empty code)'}" + (f": {description}" if description else "")
        reason = redact(reason)
        if up == "QUERY_LIMIT_EXCEEDED":
            return Failure(Action.RETRY, code, reason, status, description, retry_after, penalize=True)
        if up == "OVERLOAD_LIMIT":
            return Failure(Action.RETRY, code, reason, status, description, retry_after, fatal_when_exhausted=True)
        if up in _RETRY_CODES:
            return Failure(Action.RETRY, code, reason, status, description, retry_after)
        if up in _FATAL_CODES:
            return Failure(Action.FATAL, code, reason, status, description, retry_after)
        if up in _AMBIGUOUS_CODES or status >= 500:
            return Failure(Action.AMBIGUOUS, code, reason, status, description, retry_after)
        if status == 401:
            return Failure(Action.FATAL, code, reason, status, description, retry_after)
        if status in (408, 429):
            return Failure(Action.RETRY, code, reason, status, description, retry_after)
        return Failure(Action.COMMAND, code, reason, status, description, retry_after)

    if payload is NOT_JSON or not isinstance(payload, dict):
        shape = "a non-JSON body" if payload is NOT_JSON else f"JSON {type(payload).__name__}"
        reason = redact(f"HTTP {status} with {shape}" + (f": {outcome.snippet}" if outcome.snippet else ""))
        if status in (408, 429):
            return Failure(Action.RETRY, f"HTTP_{status}", reason, status, retry_after=retry_after)
        if 400 <= status < 500:
            return Failure(Action.FATAL, f"HTTP_{status}", reason, status, retry_after=retry_after)
        return Failure(Action.AMBIGUOUS, "NON_JSON_REPLY" if status < 300 else f"HTTP_{status}", reason, status,
                       retry_after=retry_after)

    if 200 <= status < 300:
        if "result" in payload:
            return None
        return Failure(Action.AMBIGUOUS, "UNEXPECTED_REPLY", f"HTTP {status} JSON without 'result'", status)
    if status >= 500:
        return Failure(Action.AMBIGUOUS, f"HTTP_{status}", f"HTTP {status} without an error code", status,
                       retry_after=retry_after)
    if status in (408, 429):
        return Failure(Action.RETRY, f"HTTP_{status}", f"HTTP {status}", status, retry_after=retry_after)
    if status in (401, 403):
        return Failure(Action.FATAL, f"HTTP_{status}", f"HTTP {status} without an error code", status)
    return Failure(Action.COMMAND, f"HTTP_{status}", f"HTTP {status} without an error code", status)


def command_disposition(code: str | None) -> Disposition:
    """The ``CommandOutcome.disposition`` of a command that failed inside a batch with ``code``."""
    up = (code or "").upper()
    if up in _RETRY_CODES:
        return "retry"
    if up in _NOT_RUN_CODES or up == "NOT_EXECUTED":
        return "not_executed"
    if up in _FATAL_CODES:
        return "fatal"
    if up in _AMBIGUOUS_CODES:
        return "ambiguous"
    return "invalid"


# Which webhook permission (scope) a method family needs, to name it in messages.
_SCOPES = {"crm": "crm", "user": "user", "lists": "lists", "department": "department", "tasks": "task",
           "task": "task", "im": "im", "imbot": "imbot", "disk": "disk", "calendar": "calendar",
           "sonet_group": "sonet_group", "socialnetwork": "sonet_group", "entity": "entity",
           "telephony": "telephony", "bizproc": "bizproc", "catalog": "catalog", "sale": "sale",
           "log": "log", "landing": "landing", "documentgenerator": "documentgenerator", "timeman": "timeman"}


def scope_for_method(method: str) -> str:
    """The webhook scope that ``method`` needs (best effort from its family)."""
    family = method.split(".", 1)[0].lower()
    return _SCOPES.get(family, family)


def _fatal_message(failure: Failure, method: str, url: str, scopes: list[str]) -> str:
    up = failure.code.upper()
    said = f" ({failure.code}: {failure.description})" if failure.description else f" ({failure.code})"
    where = f"calling {method} at {url}"
    if up == "INSUFFICIENT_SCOPE":
        names = ", ".join(f"'{s}'" for s in scopes) or "the needed"
        text = (f"Bitrix24 refused {method}: the inbound webhook lacks the {names} scope{said}, {where}. "
                f"Tick the {names} scope on the inbound webhook (Developer resources → Integrations → "
                f"your webhook → Permissions) and save; the URL stays the same.")
    elif up in ("INVALID_CREDENTIALS", "NO_AUTH_FOUND", "EXPIRED_TOKEN", "INVALID_TOKEN", "WRONG_AUTH_TYPE") \
            or failure.code in ("HTTP_401",):
        text = (f"Bitrix24 refused the webhook's credentials{said}, {where}. The webhook was deleted, "
                f"has expired or its user was deactivated, or the URL was mistyped. Create an inbound "
                f"webhook (or check the existing one) and put its URL in {ENV_NAME}.")
    elif up == "ERROR_METHOD_NOT_FOUND":
        text = (f"Bitrix24 does not know the method {method}{said}, at {url}. Check its spelling, that the "
                f"module providing it is installed on the portal, and the portal's plan.")
    elif up == "INVALID_REQUEST":
        text = (f"Bitrix24 rejected the request as invalid{said}, {where}. If it says 'Https required', "
                f"use an https:// address in {ENV_NAME}.")
    elif up in ("ACCESS_DENIED", "USER_ACCESS_ERROR", "HTTP_403"):
        text = (f"Bitrix24 denied access{said}, {where}. REST is available only on commercial plans, and a "
                f"webhook acts with its creator's rights: check the plan and that the webhook's user may "
                f"read and write the CRM.")
    elif up == "PORTAL_DELETED":
        text = f"The Bitrix24 portal was deleted{said}, {where}. Point {ENV_NAME} at the current portal."
    elif up == "OVERLOAD_LIMIT":
        text = (f"Bitrix24 has blocked REST calls for this portal because of overload{said}, {where}; it "
                f"stayed blocked through every retry. The block is lifted by Bitrix24 support: contact "
                f"them, then run again.")
    elif up == "PORTAL_MOVED":
        text = (f"Bitrix24 answered {method} with a redirect to {failure.location}: the portal has moved "
                f"(renamed address). Put the new address in {ENV_NAME} (same /rest/<user_id>/<secret>/ "
                f"path) and run again; requests are not followed to the new host automatically.")
    elif up == "TLS_CERTIFICATE":
        text = (f"The portal's TLS certificate was refused, {where}: {failure.reason}. Check the address in "
                f"{ENV_NAME} and the machine's CA certificates.")
    elif up.startswith("HTTP_4"):
        text = (f"The server at {url} answered {method} with {failure.reason}, which is not a Bitrix24 "
                f"reply. Check {ENV_NAME}: it should be the portal's inbound webhook URL.")
    else:
        text = f"Bitrix24 call failed and retrying will not help{said}, {where}: {failure.reason}."
    return redact(text)


# --------------------------------------------------------------------------- batch reply parsing

class _BadReply(Exception):
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
        raise _BadReply(f"a list-shaped batch section of {len(value)} entries cannot be matched to commands")
    raise _BadReply(f"a batch section is {type(value).__name__}, not an object or a list")


def _as_int(value: Any) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def parse_batch_reply(commands: Mapping[str, str], reply: Any, *, halt: bool = False) -> dict[str, CommandOutcome]:
    """Turn the ``result`` of a ``batch`` envelope into one outcome per command name.

    ``commands`` maps name → method, in the order sent. Raises ``_BadReply`` only if
    the reply cannot be read at all (then nobody knows which commands ran).
    """
    names = list(commands)
    if not isinstance(reply, dict):
        raise _BadReply(f"batch result is {type(reply).__name__}, not an object")
    raw_result, raw_error = reply.get("result"), reply.get("result_error")
    if isinstance(raw_result, list) and isinstance(raw_error, list) and raw_result and raw_error \
            and not all(str(i) in names for i in range(max(len(raw_result), len(raw_error)))):
        raise _BadReply("both result and result_error are lists: cannot tell which command failed")
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
                                            total=_as_int(totals.get(name)), next=_as_int(nexts.get(name)),
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
    except _BadReply:
        logger.warning("Bitrix24 batch reply: could not match a list-shaped total/next section to commands")
        return {}


# --------------------------------------------------------------------------- the client

def _json_default(value: Any) -> Any:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    raise TypeError(f"cannot send {type(value).__name__} to Bitrix24 as JSON")


def _safe_display(text: str) -> str:
    """A malformed webhook URL shown without anything that could be the secret."""
    try:
        parts = urlsplit(text)
    except ValueError:
        return "<unparseable URL>"
    host = parts.hostname or "?"
    segments = [s for s in parts.path.split("/") if s]
    shown = "/".join(s if s == "rest" else "***" for s in segments)
    scheme = parts.scheme or "?"
    return redact(f"{scheme}://{host}/{shown}" + ("?***" if parts.query else ""))


def _parse_webhook(url: str | SecretStr, *, allow_insecure_http: bool) -> tuple[str, str]:
    """Validate the webhook URL → (base URL ending in '/', redacted URL for display)."""
    text = (url.get_secret_value() if isinstance(url, SecretStr) else str(url or "")).strip()
    match = _WEBHOOK.search(text)
    if match:
        register_secret(match.group(2))
    how = (f"It must look like https://<portal>.bitrix24.ru/rest/<user_id>/<secret>/ : copy the URL of an "
           f"inbound webhook (Developer resources → Other → Inbound webhook) into {ENV_NAME}.")
    if not text:
        raise ConfigError(f"{ENV_NAME} is empty. {how}")
    try:
        parts = urlsplit(text)
        port = parts.port  # raises ValueError on a bad port
    except ValueError:
        raise ConfigError(f"{ENV_NAME} is not a valid URL (got {_safe_display(text)}). {how}") from None
    del port
    problem = None
    if parts.scheme not in ("http", "https"):
        problem = f"the scheme must be https, got {parts.scheme or 'none'!r}"
    elif not parts.hostname:
        problem = "it has no host name"
    elif parts.username or parts.password:
        problem = "it must not contain user:password@"
    elif parts.query or parts.fragment:
        problem = "it must not have a query string or fragment"
    else:
        m = _WEBHOOK.fullmatch(parts.path)
        if not m:
            extra = re.fullmatch(r"/rest/\d+/[^/\s]+/([^/]+)/?", parts.path)
            if extra:
                problem = "it ends with a method name: remove everything after /rest/<user_id>/<secret>/"
            else:
                problem = "its path must be /rest/<user_id>/<secret>/ with a numeric user id"
    if problem:
        raise ConfigError(f"{ENV_NAME} is not an inbound webhook URL: {problem} (got {_safe_display(text)}). {how}")
    m = _WEBHOOK.fullmatch(parts.path)
    assert m is not None
    user_id, secret = m.group(1), m.group(2)
    base = f"{parts.scheme}://{parts.netloc}/rest/{user_id}/{secret}/"
    shown = redact_url(base)
    if parts.scheme == "http" and not is_loopback_host(parts.hostname):
        if not allow_insecure_http:
            raise ConfigError(
                f"{ENV_NAME} uses plain http:// to {parts.hostname} (got {shown}). The webhook secret is part "
                f"of the URL, so it would cross the network unencrypted, and Bitrix24 itself refuses plain "
                f"http ('Https required'). Use https://{parts.netloc}/... instead; plain http is allowed only "
                f"to loopback (localhost, 127.0.0.0/8, ::1), e.g. for the local emulator.")
        logger.warning("Bitrix24 webhook {} uses plain http to a non-loopback host (allowed explicitly)", shown)
    return base, shown


T = TypeVar("T")


class Bitrix24Client(ClientPlumbing):
    """Bitrix24 REST through an inbound webhook: ``call``, ``batch``, ``list_all``.

    Every HTTP request first waits for the local leaky bucket (``rate_per_s``,
    ``burst``; pass ``bucket=`` to share one between clients of the same portal),
    is POSTed as JSON with a timeout and without following redirects, and its
    failure (if any) is classified once by ``classify()``. ``clock``, ``sleep`` and
    ``rng`` (anything with ``uniform``) are injectable so tests never sleep.
    """

    _stats_type = Bitrix24Stats

    def __init__(self, webhook_url: str | SecretStr, *, session: requests.Session | None = None,
                 timeout: float = 30.0, rate_per_s: float = 2.0, burst: int = 50, max_attempts: int = 6,
                 max_wait_s: float = 300.0, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep, allow_insecure_http: bool = False,
                 rng: Any = None, bucket: LeakyBucket | None = None, backoff_base_s: float = 1.0,
                 backoff_cap_s: float = 60.0) -> None:
        install_logging_filter()
        base, shown = _parse_webhook(webhook_url, allow_insecure_http=allow_insecure_http)
        if timeout is None or timeout <= 0:
            raise ConfigError(f"the Bitrix24 timeout must be a positive number of seconds, got {timeout!r}")
        self._base = SecretStr(base)
        self.url = shown  # redacted: safe to print
        self._session = session if session is not None else requests.Session()
        self._owns_session = session is None
        self.timeout = float(timeout)
        self._clock = clock
        self._sleep = sleep
        self.bucket = bucket if bucket is not None else LeakyBucket(rate_per_s, burst, clock=clock, sleep=sleep)
        policy_kwargs: dict[str, Any] = {"max_attempts": max_attempts, "max_wait_s": max_wait_s,
                                         "base_s": backoff_base_s, "cap_s": backoff_cap_s}
        if rng is not None:
            policy_kwargs["rng"] = rng
        self.policy = RetryPolicy(**policy_kwargs)
        self._lock = threading.Lock()
        self._stats = Bitrix24Stats()

    # -- plumbing ---------------------------------------------------------------

    def __repr__(self) -> str:
        return f"Bitrix24Client(url={self.url!r}, timeout={self.timeout}, bucket={self.bucket!r})"

    def _count(self, **deltas: Any) -> None:
        with self._lock:
            s = self._stats
            for key, delta in deltas.items():
                if key == "method":
                    s.by_method[delta] = s.by_method.get(delta, 0) + 1
                elif key == "error_code":
                    label = delta or "(no code)"
                    s.errors_by_code[label] = s.errors_by_code.get(label, 0) + 1
                else:
                    setattr(s, key, getattr(s, key) + delta)

    @staticmethod
    def _check_method(method: str) -> str:
        if not isinstance(method, str) or not _METHOD.fullmatch(method):
            raise ValueError(f"not a Bitrix24 method name: {method!r}")
        return method

    # -- the one request loop ---------------------------------------------------

    def _request(self, method: str, payload: Mapping[str, Any], *, idempotent: bool,
                 read: Callable[[dict], T], what: str, scopes: list[str]) -> T:
        """POST ``payload`` to ``method``, retrying per ``classify``; ``read`` turns the envelope into T.

        Exceptions are raised outside ``except`` blocks so no requests exception (whose
        text holds the URL) is chained to them.
        """
        body = json.dumps(dict(payload), ensure_ascii=False, separators=(",", ":"),
                          default=_json_default).encode("utf-8")
        headers = {"Content-Type": "application/json; charset=utf-8", "Accept": "application/json",
                   "User-Agent": USER_AGENT}
        started = self._clock()
        attempt = 0
        while True:
            attempt += 1
            waited = self.bucket.acquire()
            self._count(requests=1, method=method, waited_s=waited)
            failure: Failure | None
            envelope: Any = None
            try:
                response = self._session.post(f"{self._base.get_secret_value()}{method}.json", data=body,
                                              headers=headers, timeout=self.timeout, allow_redirects=False)
            except requests.RequestException as exc:
                failure = classify(exc)
            else:
                envelope = decode_json(response)
                failure = classify(Reply(response.status_code, envelope, response.headers,
                                         body_snippet(response) if envelope is NOT_JSON else ""))
            if failure is None:
                try:
                    return read(envelope)
                except _BadReply as bad:
                    failure = Failure(Action.AMBIGUOUS, "UNEXPECTED_REPLY", f"unreadable reply: {bad}", 200)
            self._count(error_code=failure.code)
            if failure.penalize:
                self.bucket.penalize()
            if failure.code.upper() in ("QUERY_LIMIT_EXCEEDED", "OPERATION_TIME_LIMIT"):
                self._count(rejected_by_rate_limit=1)
            self._raise_unless_retriable(failure, method, what, idempotent, scopes)
            wait = self.policy.next_wait(attempt, failure.retry_after)
            give_up = self.policy.give_up_reason(attempt, self._clock() - started, wait)
            if give_up:
                self._raise_exhausted(failure, method, what, idempotent, attempt, give_up, scopes)
            logger.warning("Bitrix24 {}: attempt {}/{} failed: {}; retrying in {:.2f}s",
                           what, attempt, self.policy.max_attempts, redact(failure.reason), wait)
            self._count(retries=1, backoff_s=wait)
            self._sleep(wait)

    def _raise_unless_retriable(self, failure: Failure, method: str, what: str, idempotent: bool,
                                scopes: list[str]) -> None:
        if failure.action is Action.FATAL:
            raise FatalError(_fatal_message(failure, what, self.url, scopes), system=SYSTEM, code=failure.code,
                             status=failure.status)
        if failure.action is Action.COMMAND:
            raise CommandError(redact(f"Bitrix24 refused {what}: {failure.description or failure.reason} "
                                      f"(code {failure.code!r}, HTTP {failure.status})."),
                               description=redact(failure.description), system=SYSTEM, code=failure.code,
                               status=failure.status)
        if failure.action is Action.AMBIGUOUS and not idempotent:
            raise AmbiguousWriteError(
                redact(f"Bitrix24 {what} may or may not have been applied: {failure.reason}. It was not sent "
                       f"again, because re-sending a write that already happened duplicates it: look the "
                       f"records up by their external keys (ORIGINATOR_ID/ORIGIN_ID, e-mail) before sending "
                       f"it again."),
                system=SYSTEM, code=failure.code, status=failure.status, retry_after=failure.retry_after)

    def _raise_exhausted(self, failure: Failure, method: str, what: str, idempotent: bool, attempt: int,
                         give_up: str, scopes: list[str]) -> None:
        if failure.fatal_when_exhausted:
            raise FatalError(_fatal_message(failure, what, self.url, scopes), system=SYSTEM, code=failure.code,
                             status=failure.status)
        if failure.action is Action.RETRY:
            note = " The portal refused the last attempt before running it, so it was not applied."
        elif not idempotent:  # pragma: no cover - ambiguous writes are never retried, so never exhausted
            note = " The last attempt may have been applied."
        else:
            note = ""
        raise RetriableError(
            redact(f"Bitrix24 {what} at {self.url} failed: {failure.reason}; {give_up}.{note} The portal is "
                   f"overloaded or unreachable: run again later."),
            system=SYSTEM, code=failure.code, status=failure.status, retry_after=failure.retry_after)

    # -- public API -------------------------------------------------------------

    def call(self, method: str, params: Mapping[str, Any] | None = None, *, idempotent: bool = True) -> CallResult:
        """Call one REST method; return its envelope as ``CallResult``.

        ``idempotent=False`` for writes (``*.add``): an ambiguous failure (timeout,
        reset, 5xx) then raises ``AmbiguousWriteError`` at once instead of re-sending.
        Raises ``FatalError``, ``CommandError``, ``RetriableError`` (retries exhausted).
        """
        self._check_method(method)

        def read(envelope: dict) -> CallResult:
            time_info = envelope.get("time")
            return CallResult(result=envelope.get("result"), total=_as_int(envelope.get("total")),
                              next=_as_int(envelope.get("next")),
                              time=time_info if isinstance(time_info, dict) else {})

        return self._request(method, params or {}, idempotent=idempotent, read=read, what=method,
                             scopes=[scope_for_method(method)])

    def batch(self, commands: Mapping[str, tuple[str, Mapping[str, Any] | None]], *, halt: bool = False,
              idempotent: bool) -> BatchResult:
        """Send up to 50 commands as one ``batch`` request; one ``CommandOutcome`` per command name.

        ``commands`` maps a name (non-numeric: ``c_1``, ``deal_814573981_100``) to
        ``(method, params)``; params may hold ``$result[other_name]...`` references to
        earlier commands. A failing command never raises: read each outcome. The
        request as a whole can still raise like ``call`` (``idempotent=False`` when any
        command writes).
        """
        if not commands:
            raise ValueError("batch needs at least one command")
        if len(commands) > MAX_BATCH:
            raise ValueError(f"batch takes at most {MAX_BATCH} commands, got {len(commands)}: split them")
        cmd: dict[str, str] = {}
        methods: dict[str, str] = {}
        for name, spec in commands.items():
            if not isinstance(name, str) or not _COMMAND_NAME.fullmatch(name):
                raise ValueError(f"batch command name {name!r} must start with a letter or '_' and hold only "
                                 f"letters, digits and _ . : ~ - (numeric names change the reply's shape; brackets and spaces break $result references)")
            method, params = spec
            self._check_method(method)
            methods[name] = method
            cmd[name] = build_command(method, params)
        what = _describe_batch(methods)
        scopes = sorted({scope_for_method(m) for m in methods.values()})

        def read(envelope: dict) -> BatchResult:
            outcomes = parse_batch_reply(methods, envelope.get("result"), halt=halt)
            time_info = envelope.get("time")
            return BatchResult(outcomes=outcomes, halt=halt, time=time_info if isinstance(time_info, dict) else {})

        self._count(batch_commands=len(cmd))
        result = self._request("batch", {"halt": 1 if halt else 0, "cmd": cmd}, idempotent=idempotent, read=read,
                               what=what, scopes=scopes)
        for outcome in result.outcomes.values():
            if not outcome.ok:
                self._count(error_code=outcome.error)
        return result

    def list_all(self, method: str, params: Mapping[str, Any] | None = None, *,
                 key: str | None = None) -> Iterator[dict]:
        """Every row of a list method, page by page (50 a page), following ``next``.

        Rows are the ``result`` list, or ``result[key]`` (``crm.item.list`` → ``items``,
        found by itself when the result holds exactly one list). Pass an ``order``
        (e.g. ``{"ID": "ASC"}``): without one the portal's row order is not stable
        across pages.
        """
        base = dict(params or {})
        start = _as_int(base.pop("start", 0)) or 0
        while True:
            page = self.call(method, {**base, "start": start}, idempotent=True)
            yield from _rows(method, page.result, key)
            if page.next is None:
                return
            if page.next <= start:
                raise UpstreamError(f"Bitrix24 {method}: the portal returned next={page.next} after start={start}; "
                                    f"stopping to avoid an endless listing.", system=SYSTEM, code="PAGING_LOOP")
            start = page.next


def _rows(method: str, result: Any, key: str | None) -> list[dict]:
    if key is None and method.lower() == "crm.item.list":
        key = "items"
    if key is not None:
        rows = result.get(key, []) if isinstance(result, dict) else result
    elif isinstance(result, dict):
        lists = [v for v in result.values() if isinstance(v, list)]
        if len(lists) == 1 and len(result) == 1:
            rows = lists[0]
        elif result and all(isinstance(v, dict) for v in result.values()):
            rows = list(result.values())  # rows keyed by ID (PHP object-shaped list)
        else:
            raise UpstreamError(f"Bitrix24 {method}: cannot find the rows in the reply (keys "
                                f"{sorted(result)[:5]}); pass key= to list_all.", system=SYSTEM,
                                code="UNEXPECTED_REPLY")
    else:
        rows = result
    if rows is None:
        return []
    if isinstance(rows, dict):
        return list(rows.values())
    if not isinstance(rows, list):
        raise UpstreamError(f"Bitrix24 {method}: rows are {type(rows).__name__}, not a list.", system=SYSTEM,
                            code="UNEXPECTED_REPLY")
    return rows


def _describe_batch(methods: Mapping[str, str]) -> str:
    counts = Counter(methods.values())
    parts = ", ".join(f"{m}×{n}" if n > 1 else m for m, n in counts.items())
    return f"batch of {len(methods)} ({parts})"
