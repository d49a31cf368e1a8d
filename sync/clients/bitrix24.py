"""Bitrix24 REST over an inbound webhook: calls, ``batch``, paging, rate limit, pacing, retries.

The jobs are split by module:

* ``bitrix24_failures`` — ``classify()``: THE table of what each reply or transport
  error means (retry / ambiguous / fatal / command), and the operator messages;
* ``bitrix24_replies`` — envelope models, ``parse_batch_reply`` (one outcome per
  command, never one exception per batch) and ``rows`` (list pages in PHP shapes);
* ``bitrix24_pacing`` — per-method operating time from every reply's ``time`` block;
* ``retry`` — the retry policy both clients share;
* this module — the client: the webhook URL, one request path, ``call``, ``batch``,
  ``list_all``, and what the push stage reads to adapt (``headroom``, ``stats``).

Before each request the client waits (1) for the methods it runs to have operating
time left for it (what the portal reported, plus what the batches in flight will use,
plus its own commands, within ``operating_limit_s × operating_margin``; else until
``operating_reset_at``) and (2) for the local leaky bucket. The HTTP timeout defaults to
``DEFAULT_TIMEOUT_S`` (75 s), longer than the portal's 60 s cut-off, so a slow success
is read as a success rather than an unknown outcome. The webhook URL's secret never
appears in a message, a log line or a ``repr``.
"""
from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Callable, TypeVar
from urllib.parse import urlsplit

import requests
from loguru import logger
from pydantic import BaseModel, Field, SecretStr

from sync.clients.bitrix24_failures import (
    ENV_NAME,
    SYSTEM,
    Action,
    Disposition,
    Failure,
    Reply,
    classify,
    command_disposition,
    fatal_message,
    scope_for_method,
)
from sync.clients.bitrix24_pacing import SERVER_CUTOFF_S, Admission, OperatingPacer
from sync.clients.bitrix24_replies import (
    BadReply,
    BatchResult,
    CallResult,
    CommandOutcome,
    RowsShapeError,
    as_int,
    parse_batch_reply,
    rows,
    server_duration,
)
from sync.clients.common import ClientPlumbing, NOT_JSON, USER_AGENT, body_snippet, decode_json, is_loopback_host
from sync.clients.phpquery import build_command
from sync.clients.ratelimit import LeakyBucket
from sync.clients.retry import AttemptFailed, GiveUp, RetryPolicy
from core.errors import AmbiguousWriteError, CommandError, ConfigError, FatalError, RetriableError, UpstreamError
from core.redact import install_logging_filter, redact, redact_url, register_secret

__all__ = ["Action", "BatchResult", "Bitrix24Client", "Bitrix24Stats", "CallResult", "CommandOutcome",
           "DEFAULT_TIMEOUT_S", "Disposition", "Failure", "Reply", "RowsShapeError", "classify",
           "command_disposition", "parse_batch_reply", "rows", "scope_for_method"]

MAX_BATCH = 50
PAGE_SIZE = 50
# Longer than the portal's 60 s cut-off: a client that gives up first turns slow successes
# into unknown outcomes (a write then needs reconciling by external keys).
DEFAULT_TIMEOUT_S = 75.0
# A batch that took this share of the cut-off on the portal is close to being cut off.
SLOW_BATCH_SHARE = 0.75

_METHOD = re.compile(r"[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*")
_COMMAND_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.:~-]{0,99}")
_WEBHOOK = re.compile(r"/rest/(\d+)/([^/\s]+)/?")
_RATE_REFUSALS = ("QUERY_LIMIT_EXCEEDED", "OPERATION_TIME_LIMIT")


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
    paced: int = 0                    # requests that waited for a method's operating time to free
    paced_s: float = 0.0
    last_batch_s: float | None = None  # the portal's own duration of the latest batch (its time block)
    slowest_batch_s: float = 0.0


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

    Every HTTP request first waits for operating time (``operating_limit_s``,
    ``operating_margin``; see ``bitrix24_pacing``) and for the local leaky bucket
    (``rate_per_s``, ``burst``; pass ``bucket=`` to share one between clients of the
    same portal), is POSTed as JSON with ``timeout`` and without following redirects,
    and its failure (if any) is classified once by ``classify()`` and retried by the
    shared ``RetryPolicy`` (``max_attempts``, ``max_wait_s``, ``backoff_base_s``,
    ``backoff_cap_s``). ``clock`` (monotonic), ``wall_clock`` (unix), ``sleep`` and
    ``rng`` (anything with ``uniform``) are injectable so tests never sleep.

    For the push stage: ``headroom(method)`` (operating seconds left before calls of
    that method wait), ``BatchResult.duration_s`` (the portal's time for one batch)
    and ``stats.last_batch_s`` / ``slowest_batch_s`` / ``paced_s``.
    """

    _stats_type = Bitrix24Stats

    def __init__(self, webhook_url: str | SecretStr, *, session: requests.Session | None = None,
                 timeout: float = DEFAULT_TIMEOUT_S, rate_per_s: float = 2.0, burst: int = 50, max_attempts: int = 6,
                 max_wait_s: float = 300.0, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep, allow_insecure_http: bool = False,
                 rng: Any = None, bucket: LeakyBucket | None = None, backoff_base_s: float = 1.0,
                 backoff_cap_s: float = 60.0, operating_limit_s: float | None = 480.0,
                 operating_margin: float = 0.98, wall_clock: Callable[[], float] = time.time) -> None:
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
        try:
            self.pacer = OperatingPacer(operating_limit_s, operating_margin, clock=clock, wall_clock=wall_clock)
            policy_kwargs: dict[str, Any] = {"max_attempts": max_attempts, "max_wait_s": max_wait_s,
                                             "base_s": backoff_base_s, "cap_s": backoff_cap_s, "clock": clock,
                                             "sleep": sleep}
            if rng is not None:
                policy_kwargs["rng"] = rng
            self.policy = RetryPolicy(**policy_kwargs)
        except ValueError as exc:
            raise ConfigError(f"Bitrix24 client settings: {exc}") from None
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

    def headroom(self, method: str) -> float:
        """Seconds of operating time ``method`` has left before calls using it wait for the portal's window.

        ``operating_limit_s × operating_margin`` minus what the portal last reported
        for the method (``inf`` when pacing is off). A push stage can shrink its
        batches or concurrency when this runs low, before the client starts waiting.
        """
        return self.pacer.headroom(method)

    # -- the one request path ---------------------------------------------------

    def _pace(self, methods: list[str], what: str, started: float) -> Admission:
        """Wait until the pacer admits a request running ``methods``, or refuse if that is past the budget.

        The pacer may hold a request back again after a wait (the window freed less than the
        request needs): each wait is checked against the retry budget.
        """
        while True:
            admission = self.pacer.admit(methods)
            if admission.wait <= 0:
                return admission
            wait, busiest, used = admission.wait, admission.busiest, admission.used
            limit = self.pacer.limit_s or 0.0
            if self._clock() - started + wait > self.policy.max_wait_s:
                raise RetriableError(
                    f"Bitrix24 {what} at {self.url} was not sent: the portal reports {busiest} used {used:.0f}s of "
                    f"its {limit:.0f}s operating-time limit and frees it in {wait:.0f}s, past the "
                    f"{self.policy.max_wait_s:.0f}s retry budget. Nothing was applied: run again later.",
                    system=SYSTEM, code="OPERATION_TIME_LIMIT", retry_after=wait)
            logger.warning("Bitrix24 {}: {} used {:.1f}s of its {:.0f}s operating-time limit; waiting {:.1f}s for "
                           "the portal to free it (operating_reset_at)", what, busiest, used, limit, wait)
            self._count(paced=1, paced_s=wait)
            self._sleep(wait)

    def _request(self, method: str, payload: Mapping[str, Any], *, idempotent: bool, read: Callable[[dict], T],
                 what: str, scopes: list[str], runs: Iterable[str],
                 times: Callable[[T], Iterable[tuple[str, Any]]]) -> T:
        """POST ``payload`` to ``method`` under the retry policy; ``read`` turns the envelope into T.

        ``runs``: the methods the portal will execute (for a batch, its commands'),
        paced by their operating time; ``times`` gives, from what ``read`` returned, each
        command's method and ``time`` block, which settle the attempt with the pacer.
        Every exception is raised outside ``except`` blocks, so no requests exception
        (whose text holds the URL) is chained to it.
        """
        body = json.dumps(dict(payload), ensure_ascii=False, separators=(",", ":"),
                          default=_json_default).encode("utf-8")
        headers = {"Content-Type": "application/json; charset=utf-8", "Accept": "application/json",
                   "User-Agent": USER_AGENT}
        runs = list(runs)
        started = self._clock()

        def attempt() -> T:
            # Settled once, whatever happens: a reply's time blocks, or only the release of what it reserved.
            admission, blocks = self._pace(runs, what, started), ()
            try:
                result = sent()
                blocks = times(result)
                return result
            finally:
                self.pacer.settle(admission, blocks)

        def sent() -> T:
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
                except BadReply as bad:
                    failure = Failure(Action.AMBIGUOUS, "UNEXPECTED_REPLY", f"unreadable reply: {bad}", 200)
            self._count(error_code=failure.code)
            if failure.penalize:
                self.bucket.penalize()
            up = failure.code.upper()
            if up in _RATE_REFUSALS:
                self._count(rejected_by_rate_limit=1)
            self._raise_unless_retriable(failure, what, idempotent, scopes)
            hint = failure.retry_after  # Retry-After first: the most explicit thing the server said
            if hint is None and up == "OPERATION_TIME_LIMIT" and method != "batch":
                self.pacer.note_blocked(method)
                hint = self.pacer.reset_wait(method)
            raise AttemptFailed(failure.reason, retry_after=hint, detail=failure)

        def exhausted(give_up: GiveUp) -> UpstreamError:
            return self._exhausted_error(give_up, what, idempotent, scopes)

        return self.policy.run(attempt, what=f"Bitrix24 {what}", give_up=exhausted,
                               on_retry=lambda wait: self._count(retries=1, backoff_s=wait))

    def _raise_unless_retriable(self, failure: Failure, what: str, idempotent: bool, scopes: list[str]) -> None:
        if failure.action is Action.FATAL:
            raise FatalError(fatal_message(failure, what, self.url, scopes), system=SYSTEM, code=failure.code,
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

    def _exhausted_error(self, give_up: GiveUp, what: str, idempotent: bool, scopes: list[str]) -> UpstreamError:
        failure: Failure = give_up.failure.detail
        if failure.fatal_when_exhausted:
            return FatalError(fatal_message(failure, what, self.url, scopes), system=SYSTEM, code=failure.code,
                              status=failure.status)
        if failure.action is Action.RETRY:
            note = " The portal refused the last attempt before running it, so it was not applied."
        elif not idempotent:  # pragma: no cover - ambiguous writes are never retried, so never exhausted
            note = " The last attempt may have been applied."
        else:
            note = ""
        return RetriableError(
            redact(f"Bitrix24 {what} at {self.url} failed: {failure.reason}; {give_up.summary}.{note} The portal "
                   f"is overloaded or unreachable: run again later."),
            system=SYSTEM, code=failure.code, status=failure.status, retry_after=give_up.failure.retry_after)

    def _note_batch_time(self, what: str, block: Mapping[str, Any]) -> None:
        duration = server_duration(block)
        if duration is None:
            return
        with self._lock:
            self._stats.last_batch_s = duration
            self._stats.slowest_batch_s = max(self._stats.slowest_batch_s, duration)
        if duration >= SLOW_BATCH_SHARE * SERVER_CUTOFF_S:
            logger.warning("Bitrix24 {} took {:.1f}s on the portal, close to its {:.0f}s cut-off: send smaller "
                           "batches or fewer at once", what, duration, SERVER_CUTOFF_S)

    # -- public API -------------------------------------------------------------

    def call(self, method: str, params: Mapping[str, Any] | None = None, *, idempotent: bool = True) -> CallResult:
        """Call one REST method; return its envelope as ``CallResult``.

        ``idempotent=False`` for writes (``*.add``): an ambiguous failure (timeout,
        reset, 5xx) then raises ``AmbiguousWriteError`` at once instead of re-sending.
        Raises ``FatalError``, ``CommandError``, ``RetriableError`` (retries exhausted,
        or the method's operating time frees later than the retry budget allows).
        """
        self._check_method(method)

        def read(envelope: dict) -> CallResult:
            time_info = envelope.get("time")
            time_info = time_info if isinstance(time_info, dict) else {}
            return CallResult(result=envelope.get("result"), total=as_int(envelope.get("total")),
                              next=as_int(envelope.get("next")), time=time_info)

        return self._request(method, params or {}, idempotent=idempotent, read=read, what=method,
                             scopes=[scope_for_method(method)], runs=[method],
                             times=lambda result: [(method, result.time)])

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
                                 f"letters, digits and _ . : ~ - (numeric names change the reply's shape; "
                                 f"brackets and spaces break $result references)")
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
        # The outer batch is not counted in operating time; each command counts for its own method.
        result = self._request("batch", {"halt": 1 if halt else 0, "cmd": cmd}, idempotent=idempotent, read=read,
                               what=what, scopes=scopes, runs=list(methods.values()),
                               times=lambda result: [(o.method, o.time) for o in result.outcomes.values()])
        for outcome in result.outcomes.values():
            if not outcome.ok:
                self._count(error_code=outcome.error)
                if (outcome.error or "").upper() == "OPERATION_TIME_LIMIT":
                    self.pacer.note_blocked(outcome.method)
        self._note_batch_time(what, result.time)
        return result

    def list_all(self, method: str, params: Mapping[str, Any] | None = None, *,
                 key: str | None = None) -> Iterator[dict]:
        """Every row of a list method, page by page (50 a page), following ``next``.

        Rows are read by ``rows()`` (``crm.item.list`` → under ``items``; ``key`` names
        another wrapping list); an unreadable page raises ``RowsShapeError``. Pass an
        ``order`` (e.g. ``{"ID": "ASC"}``): without one the portal's row order is not
        stable across pages.
        """
        base = dict(params or {})
        start = as_int(base.pop("start", 0)) or 0
        while True:
            page = self.call(method, {**base, "start": start}, idempotent=True)
            yield from rows(method, page.result, key)
            if page.next is None:
                return
            if page.next <= start:
                raise UpstreamError(f"Bitrix24 {method}: the portal returned next={page.next} after start={start}; "
                                    f"stopping to avoid an endless listing.", system=SYSTEM, code="PAGING_LOOP")
            start = page.next


def _describe_batch(methods: Mapping[str, str]) -> str:
    counts = Counter(methods.values())
    parts = ", ".join(f"{m}×{n}" if n > 1 else m for m, n in counts.items())
    return f"batch of {len(methods)} ({parts})"

