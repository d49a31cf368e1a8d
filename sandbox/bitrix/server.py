"""The Bitrix24 incoming-webhook emulator: HTTP handler, routing, auth, envelopes, limits,
faults and the admin API.

Request pipeline for ``/rest/{user_id}/{secret}/{method}[.json][/]`` (GET or POST), in the
order the real server applies its checks (bitrix24-rest.md §1-§3):

1. fault draw (a gateway in front of the portal: 5xx, HTML pages, dropped connections);
2. leaky bucket -> 503 ``QUERY_LIMIT_EXCEEDED`` (nothing applied);
3. unknown method -> 404 ``ERROR_METHOD_NOT_FOUND``;
4. auth: ``require_https`` -> 400 ``INVALID_REQUEST``; wrong user/secret -> ``INVALID_CREDENTIALS``
   (401 by default, configurable); method outside the webhook scopes -> 403 ``insufficient_scope``;
5. operating limit of the method -> 429 ``OPERATION_TIME_LIMIT``;
6. the method, under the CRM lock; its cost (:class:`~.limits.OperatingCosts`: a fixed
   cost per method or the measured time) is added to the method's operating time;
7. the envelope ``{result, total?, next?, time}`` or ``{error, error_description}``;
8. the server time-out (``request_timeout_s``, the cloud's 60 s): a request still running
   past it is answered with a gateway's HTML 504 (or a dropped connection) instead of its
   envelope. What ran before the cut stays done: a ``batch`` stops before its next command,
   its earlier commands' writes are kept -- the client sees an unknown outcome.

Fault kinds (:data:`FAULT_KINDS`), drawn per request with the top-level method as
``method`` (scripts can target e.g. ``{"kind": "drop_after", "method": "batch"}``):

* before anything runs: ``http_500`` (JSON ``INTERNAL_SERVER_ERROR``), ``http_503`` (JSON
  ``QUERY_LIMIT_EXCEEDED`` as the limiter sends it), ``html_502``/``html_504`` (nginx HTML
  pages), ``overload`` (503 ``OVERLOAD_LIMIT``), ``invalid_credentials`` (an expired or
  deleted webhook), ``redirect_302`` (portal moved; ``location`` in the script entry),
  ``drop_before`` (connection reset, nothing applied);
* after the request is fully applied: ``drop_after`` (connection closed without an
  answer) and ``slow`` (answer after ``slow_s`` seconds, per entry or the emulator default);
* inside ``batch``: ``batch_command_error`` -- one command (``command`` in the script entry,
  else a seeded random one) fails with ``error``/``error_description`` (default
  ``INTERNAL_SERVER_ERROR``) and is not applied; the others run normally.
"""
from __future__ import annotations

import contextlib
import functools
import gc
import json
import re
import ssl
import threading
import time
from collections import Counter
from datetime import timedelta, timezone
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlsplit

from sandbox.faults import FaultInjector
from sandbox.httpbase import LoopbackServer, drop_connection

from .batch import run_batch
from .limits import LeakyBucket, OperatingCosts, OperatingLimiter, profile as plan_profile
from .methods import REGISTRY, Context, RestError, Result
from .params import php_intval, request_params
from .state import CRM, Invalid, internal_value, iso, load_portal

PRE_FAULTS = ("drop_before", "http_500", "http_503", "html_502", "html_504", "overload", "invalid_credentials",
              "redirect_302")
POST_FAULTS = ("drop_after", "slow")
BATCH_FAULTS = ("batch_command_error",)
FAULT_KINDS = PRE_FAULTS + POST_FAULTS + BATCH_FAULTS

_HTML = {
    502: b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1>"
         b"</center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n",
    302: b"<html>\r\n<head><title>302 Found</title></head>\r\n<body>\r\n<center><h1>302 Found</h1></center>"
         b"\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n",
    504: b"<html>\r\n<head><title>504 Gateway Time-out</title></head>\r\n<body>\r\n<center><h1>504 Gateway "
         b"Time-out</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n",
}


class _Reply:
    """What the handler sends: a JSON/HTML body with a status, or a dropped connection."""

    def __init__(self, status: int = 200, body: Any = None, *, html: bytes | None = None,
                 headers: dict | None = None, drop: bool = False, delay_s: float = 0.0) -> None:
        self.status = status
        self.body = body
        self.html = html
        self.headers = headers or {}
        self.drop = drop
        self.delay_s = delay_s


def _error_reply(err: RestError, headers: dict | None = None) -> _Reply:
    return _Reply(err.status, err.body(), headers=headers)


class _FromProfile:
    def __repr__(self) -> str:
        return "FROM_PROFILE"


# Default of the limit keywords: take the value from ``profile`` (an explicit value, None included, wins).
FROM_PROFILE: Any = _FromProfile()
_KEEP: Any = object()
CUTOFF_REPLIES = ("html_504", "drop")


class _CutOff(Exception):
    """Raised inside a request that ran past the server time-out: stop before the next command."""


def _cutoff_reply(kind: str) -> _Reply:
    # The doc only says the request "is cut off" (bitrix24-rest.md §1, §10); what clients meet
    # at the gateway is nginx's HTML 504 (§2, FB#85), or no answer at all.
    return _Reply(drop=True) if kind == "drop" else _Reply(504, html=_HTML[504])


class BitrixEmulator:
    """A Bitrix24 portal's REST API (incoming webhook) on loopback; see the module docstring.

    ``profile``: ``"standard"`` (2 requests/s, bucket 50) or ``"enterprise"`` (5/s, 250), both
    with 480 s of operating time per method per ten minutes; ``rate_limit``/``burst`` (the leaky
    bucket, ``None`` or 0 turns it off) and ``operating_limit_s`` (``None``/0 off) override it.
    ``operating_costs``: seconds charged per call of a method -- ``True`` for
    :data:`~.limits.DEFAULT_OPERATING_COSTS`, a mapping for exactly that table, ``None`` to
    charge every call its measured duration; ``operating_default_cost_s`` is charged for
    methods outside the table (``None``: measured). ``operating_time_scale`` multiplies every
    charge (time dilation, to reach the limit in short runs).
    ``request_timeout_s``: the server cut-off (``None``/0 off); ``cutoff_reply``: ``"html_504"``
    or ``"drop"``. It is measured on ``clock`` from the request's arrival, latencies included.
    ``clock``: unix seconds for limits, envelopes, record dates and the cut-off (default
    ``time.time``); ``sleep``: how ``latency_ms``/``command_latency_ms`` wait (default
    ``time.sleep``; a test passes one that moves its clock).
    ``tls``: an ``ssl.SSLContext`` to serve HTTPS; ``require_https``: refuse plain-http calls.
    ``enforce_required``: contacts missing a field the portal flags required are refused
    (``crm.enforce_required``; whether the real portal does so is unconfirmed).
    """

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, portal: dict | None = None,
                 portal_path: str | Path | None = None, user_id: int = 1, secret: str = "sandbox-secret",
                 scopes: tuple[str, ...] | list[str] = ("crm", "user"), profile: str = "standard",
                 rate_limit: float | None = FROM_PROFILE, burst: int = FROM_PROFILE,
                 operating_limit_s: float | None = FROM_PROFILE, operating_time_scale: float = 1.0,
                 operating_costs: dict[str, float] | bool | None = None,
                 operating_default_cost_s: float | None = None, request_timeout_s: float | None = 60.0,
                 cutoff_reply: str = "html_504",
                 faults: FaultInjector | None = None, latency_ms: float = 0.0, command_latency_ms: float = 0.0,
                 clock: Callable[[], float] | None = None, sleep: Callable[[float], None] | None = None,
                 bad_credentials_status: int = 401,
                 require_https: bool = False, tls: ssl.SSLContext | None = None, slow_s: float = 2.0,
                 batch_import_max: int = 20, utc_offset_hours: float = 3.0, enforce_required: bool = False) -> None:
        plan = plan_profile(profile)
        self.profile = plan.name
        rate_limit = plan.rate if rate_limit is FROM_PROFILE else rate_limit
        burst = plan.burst if burst is FROM_PROFILE else burst
        operating_limit_s = plan.operating_limit_s if operating_limit_s is FROM_PROFILE else operating_limit_s
        if cutoff_reply not in CUTOFF_REPLIES:
            raise ValueError(f"cutoff_reply must be one of {CUTOFF_REPLIES}, not {cutoff_reply!r}")
        self.user_id = int(user_id)
        self.secret = secret
        self.scopes = tuple(scopes)
        self.clock = clock or time.time
        self.sleep = sleep or time.sleep
        self.tz = timezone(timedelta(hours=utc_offset_hours))
        self.bad_credentials_status = bad_credentials_status
        self.require_https = require_https
        self.latency_ms = latency_ms
        self.command_latency_ms = command_latency_ms
        self.slow_s = slow_s
        self.batch_import_max = batch_import_max
        self.costs = OperatingCosts.from_option(operating_costs, default_s=operating_default_cost_s,
                                                scale=operating_time_scale)
        self.request_timeout_s = request_timeout_s or None
        self.cutoff_reply = cutoff_reply
        self.faults = faults if faults is not None else FaultInjector()
        self.bucket = LeakyBucket(rate_limit, burst, clock=self.clock)
        self.operating = OperatingLimiter(operating_limit_s or None, clock=self.clock)
        self._portal = portal if portal is not None else load_portal(portal_path)
        self.crm = CRM(self._portal, clock=self.clock, tz=self.tz, caller_id=self.user_id,
                       enforce_required=enforce_required)
        self._counters_lock = threading.Lock()
        self.reset_counters()
        self._server = LoopbackServer(_Handler, owner=self, host=host, port=port, ssl_context=tls)
        self._tls = tls is not None
        self.admin = AdminHandle(self)

    # ---- life cycle ----

    def start(self) -> "BitrixEmulator":
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    def __enter__(self) -> "BitrixEmulator":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        return self._server.base_url

    @property
    def port(self) -> int:
        return self._server.port

    @property
    def webhook_url(self) -> str:
        return f"{self.base_url}/rest/{self.user_id}/{self.secret}/"

    @property
    def operating_time_scale(self) -> float:
        return self.costs.scale

    @operating_time_scale.setter
    def operating_time_scale(self, value: float) -> None:
        self.costs.scale = float(value)

    # ---- counters ----

    def reset_counters(self) -> None:
        with self._counters_lock:
            self._requests = 0
            self._by_method: Counter[str] = Counter()
            self._batch_commands = 0
            self._commands_by_method: Counter[str] = Counter()
            self._rejected: Counter[str] = Counter()
            self._faults_fired: Counter[str] = Counter()
            self._operating_429 = 0
            self._operating_blocked_commands = 0
            self._cut_off = 0
            self._operating_s: Counter[str] = Counter()

    def counters(self) -> dict:
        with self._counters_lock:
            return {"requests": self._requests, "by_method": dict(self._by_method),
                    "batch_commands": self._batch_commands, "commands_by_method": dict(self._commands_by_method),
                    "rejected": dict(self._rejected), "faults_fired": dict(self._faults_fired)}

    def limit_counters(self) -> dict:
        """Since the last counter reset, for benchmarks of the limits: ``operating_429`` (HTTP
        429 ``OPERATION_TIME_LIMIT`` replies), ``operating_blocked_commands`` (batch commands
        refused the same way), ``cut_off`` (requests cut by the server time-out) and
        ``operating_s_by_method`` (operating seconds charged, all of them, not only the window's)."""
        with self._counters_lock:
            return {"operating_429": self._operating_429,
                    "operating_blocked_commands": self._operating_blocked_commands,
                    "cut_off": self._cut_off,
                    "operating_s_by_method": {m: round(v, 6) for m, v in sorted(self._operating_s.items())}}

    def _count_limit(self, *, operating_429: bool = False, blocked_command: bool = False, cut_off: bool = False,
                     charged: tuple[str, float] | None = None) -> None:
        with self._counters_lock:
            self._operating_429 += operating_429
            self._operating_blocked_commands += blocked_command
            self._cut_off += cut_off
            if charged is not None:
                self._operating_s[charged[0]] += charged[1]

    def _count(self, *, request: str | None = None, command: str | None = None, rejected: str | None = None,
               fault: str | None = None) -> None:
        with self._counters_lock:
            if request is not None:
                self._requests += 1
                self._by_method[request] += 1
            if command is not None:
                self._batch_commands += 1
                self._commands_by_method[command] += 1
            if rejected is not None:
                self._rejected[rejected] += 1
            if fault is not None:
                self._faults_fired[fault] += 1

    # ---- the REST pipeline ----

    def _context(self) -> Context:
        license_ = "ru_ent250" if self.bucket.burst >= 250 else "ru_project"
        return Context(self.crm, self.user_id, self.scopes, self.tz, self.batch_import_max, license_)

    def _time_block(self, start: float, elapsed: float, processing: float, method: str | None) -> dict:
        finish = start + elapsed
        block = {"start": start, "finish": finish, "duration": elapsed, "processing": processing,
                 "date_start": iso(start, self.tz), "date_finish": iso(finish, self.tz)}
        if method is not None:
            block["operating_reset_at"] = self.operating.reset_at(method)
            block["operating"] = round(self.operating.used(method), 6)
        return block

    def _operating_error(self, method: str) -> RestError | None:
        if self.operating.blocked(method):
            return RestError("OPERATION_TIME_LIMIT", "Method is blocked due to operation time limit.", 429)
        return None

    def _execute(self, method: str, params: dict) -> tuple[Result, float]:
        """Run one method under the CRM lock; (result, measured seconds). Raises RestError."""
        start = params.pop("start", None)
        start = php_intval(start) if start is not None else None
        fn = REGISTRY[method].fn
        t0 = time.perf_counter()
        try:
            with self.crm.lock:
                return fn(self._context(), params, start), time.perf_counter() - t0
        finally:
            # Charged whether the method succeeded or not: the portal spent the time either way.
            charged = self.costs.charge(method, time.perf_counter() - t0)
            self.operating.record(method, charged)
            self._count_limit(charged=(method, charged))

    def _past_deadline(self, deadline: float | None) -> bool:
        return deadline is not None and self.clock() > deadline

    def _sub_call(self, method: str, params: dict, *, deadline: float | None = None) -> dict:
        """One command inside a batch, as ``CRestServerBatchItem::process`` answers it.

        Past ``deadline`` the command is not started (:class:`_CutOff`); one already started
        finishes, so what the batch wrote before the cut is whole commands."""
        if self._past_deadline(deadline):
            raise _CutOff()
        self._count(command=method)
        if self.command_latency_ms:
            self.sleep(self.command_latency_ms / 1000.0)
        started, t0 = self.clock(), time.perf_counter()
        spec = REGISTRY.get(method)
        if spec is None:
            return {"error": "ERROR_METHOD_NOT_FOUND", "error_description": "Method not found!"}
        if spec.scope and spec.scope not in self.scopes:
            self._count(rejected="insufficient_scope")
            return {"error": "insufficient_scope", "error_description": ""}
        blocked = self._operating_error(method)
        if blocked is not None:
            self._count(rejected=blocked.code)
            self._count_limit(blocked_command=True)
            return {"error": blocked.code, "error_description": blocked.description}
        try:
            result, processing = self._execute(method, params)
        except RestError as err:
            return {"error": err.code, "error_description": err.description}
        res: dict[str, Any] = {"result": result.result}
        if result.next is not None:
            res["next"] = result.next
        if result.total is not None:
            res["total"] = result.total
        res["time"] = self._time_block(started, time.perf_counter() - t0, processing, method)
        return res

    def _batch(self, params: dict, deadline: float | None = None) -> Result:
        fault = self.faults.draw_detail(BATCH_FAULTS, method="batch")
        fail_command, fail_error = None, None
        if fault is not None:
            self._count(fault=fault["kind"])
            upper = {str(k).upper(): v for k, v in params.items()}
            cmd = upper.get("CMD")
            names = list(cmd.keys()) if isinstance(cmd, dict) else list(range(len(cmd))) if isinstance(cmd, list) else []
            names = names[:50]
            if names:
                fail_command = fault.get("command", self.faults.choice(names))
                fail_error = {"error": fault.get("error", "INTERNAL_SERVER_ERROR"),
                              "error_description": fault.get("error_description", "Internal server error")}
        call = functools.partial(self._sub_call, deadline=deadline)
        return Result(run_batch(params, call, fail_command=fail_command, fail_error=fail_error))

    def handle_rest(self, http_method: str, path: str, query: str, content_type: str | None, body: bytes) -> _Reply:
        segments = [s for s in path[len("/rest/"):].split("/") if s != ""]
        method = ""
        if segments:
            method = segments[-1].lower()
            for suffix in (".json", ".xml"):
                if method.endswith(suffix):
                    method = method[: -len(suffix)]
        self._count(request=method)
        arrived = self.clock()
        deadline = arrived + self.request_timeout_s if self.request_timeout_s else None
        if self.latency_ms:
            self.sleep(self.latency_ms / 1000.0)

        fault = self.faults.draw_detail(PRE_FAULTS + POST_FAULTS, method=method)
        if fault is not None:
            self._count(fault=fault["kind"])
            pre = self._pre_fault(fault, path, query)
            if pre is not None:
                return pre

        if not self.bucket.try_acquire():
            self._count(rejected="QUERY_LIMIT_EXCEEDED")
            return _error_reply(RestError("QUERY_LIMIT_EXCEEDED", "Too many requests", 503))

        try:
            reply = self._rest_call(http_method, segments, method, query, content_type, body, deadline)
        except _CutOff:
            reply = None
        if reply is None or self._past_deadline(deadline):
            # The work done so far stays done; the client only learns that the request was cut.
            self._count_limit(cut_off=True)
            return _cutoff_reply(self.cutoff_reply)
        if fault is not None and fault["kind"] == "drop_after":
            return _Reply(drop=True)
        if fault is not None and fault["kind"] == "slow":
            reply.delay_s = float(fault.get("slow_s", self.slow_s))
        return reply

    def _pre_fault(self, fault: dict, path: str, query: str) -> _Reply | None:
        kind = fault["kind"]
        if kind == "drop_before":
            return _Reply(drop=True)
        if kind == "http_500":
            return _Reply(500, {"error": "INTERNAL_SERVER_ERROR", "error_description": "Internal server error"})
        if kind == "http_503":
            return _Reply(503, {"error": "QUERY_LIMIT_EXCEEDED", "error_description": "Too many requests"})
        if kind in ("html_502", "html_504"):
            status = int(kind[-3:])
            return _Reply(status, html=_HTML[status])
        if kind == "overload":
            return _Reply(503, {"error": "OVERLOAD_LIMIT", "error_description": "REST API is blocked due to overload"})
        if kind == "invalid_credentials":
            return _Reply(self.bad_credentials_status,
                          {"error": "INVALID_CREDENTIALS", "error_description": "Invalid request credentials"})
        if kind == "redirect_302":
            location = fault.get("location") or (self.base_url + path + (f"?{query}" if query else ""))
            # Not JSON: clients (b24pysdk) recognise a moved portal by a non-JSON 302 with Location.
            return _Reply(302, html=_HTML[302], headers={"Location": location})
        return None

    def _rest_call(self, http_method: str, segments: list[str], method: str, query: str,
                   content_type: str | None, body: bytes, deadline: float | None = None) -> _Reply:
        if len(segments) == 1:
            return _error_reply(RestError("NO_AUTH_FOUND", "Wrong authorization data", 401))
        if len(segments) != 3 or method not in REGISTRY:
            self._count(rejected="ERROR_METHOD_NOT_FOUND")
            return _error_reply(RestError("ERROR_METHOD_NOT_FOUND", "Method not found!", 404))
        if self.require_https and not self._tls:
            self._count(rejected="INVALID_REQUEST")
            return _error_reply(RestError("INVALID_REQUEST", "Https required.", 400))
        user, secret = segments[0], segments[1]
        if secret != self.secret or not user.isdigit() or int(user) != self.user_id:
            self._count(rejected="INVALID_CREDENTIALS")
            return _error_reply(RestError("INVALID_CREDENTIALS", "Invalid request credentials",
                                          self.bad_credentials_status))
        spec = REGISTRY[method]
        if spec.scope and spec.scope not in self.scopes:
            self._count(rejected="insufficient_scope")
            return _error_reply(RestError(
                "insufficient_scope", "The request requires higher privileges than provided by the webhook token", 403))
        params = request_params(query, http_method, content_type, body)
        started, t0 = self.clock(), time.perf_counter()
        try:
            if method == "batch":
                # The outer batch is not counted in operating time; each command counts for its own method.
                params.pop("start", None)
                result, processing = self._batch(params, deadline), None
            else:
                blocked = self._operating_error(method)
                if blocked is not None:
                    self._count(rejected=blocked.code)
                    self._count_limit(operating_429=True)
                    return _error_reply(blocked)
                result, processing = self._execute(method, params)
        except RestError as err:
            return _error_reply(err)
        elapsed = time.perf_counter() - t0
        envelope: dict[str, Any] = {"result": result.result}
        if result.next is not None:
            envelope["next"] = result.next
        if result.total is not None:
            envelope["total"] = result.total
        envelope["time"] = self._time_block(started, elapsed, processing if processing is not None else elapsed,
                                            None if method == "batch" else method)
        headers = {"X-Bitrix-Rest-Time": f"{elapsed:.10f}", "X-Bitrix-Rest-User-Time": f"{elapsed:.10f}",
                   "X-Bitrix-Rest-System-Time": "0.0000000000"}
        return _Reply(200, envelope, headers=headers)

    # ---- admin over HTTP ----

    def handle_admin(self, http_method: str, path: str, body: bytes) -> _Reply:
        route = path[len("/_admin/"):].strip("/")
        try:
            payload = json.loads(body.decode("utf-8")) if body.strip() else {}
        except ValueError:
            return _Reply(400, {"error": "bad json"})
        a = self.admin
        if http_method == "GET" and route == "state":
            return _Reply(200, a.dump())
        if http_method == "GET" and route == "counters":
            return _Reply(200, a.counters())
        if http_method == "GET" and route == "limit-counters":
            return _Reply(200, a.limit_counters())
        if http_method == "POST" and route == "counters/reset":
            a.reset_counters()
            return _Reply(200, {"ok": True})
        if http_method == "POST" and route == "faults":
            return _Reply(200, a.set_faults(rates=payload.get("rates"), script=payload.get("script"),
                                             seed=payload.get("seed"), slow_s=payload.get("slow_s")))
        if http_method == "GET" and route == "faults":
            return _Reply(200, a.faults())
        if http_method == "POST" and route == "operating-limit":
            # A key left out keeps its value (before, a missing limit_s turned the limit off).
            return _Reply(200, a.set_operating_limit(payload.get("limit_s", _KEEP), scale=payload.get("scale")))
        if http_method == "POST" and route == "operating-costs":
            return _Reply(200, a.set_operating_costs(payload.get("costs", _KEEP),
                                                     default_cost_s=payload.get("default_cost_s", _KEEP)))
        if http_method == "POST" and route == "request-timeout":
            try:
                return _Reply(200, a.set_request_timeout(payload.get("timeout_s", _KEEP),
                                                         reply=payload.get("reply")))
            except ValueError as err:
                return _Reply(400, {"error": str(err)})
        if http_method == "POST" and route == "profile":
            try:
                return _Reply(200, a.set_profile(str(payload.get("profile", ""))))
            except ValueError as err:
                return _Reply(400, {"error": str(err)})
        if http_method == "GET" and route == "limits":
            return _Reply(200, a.limits())
        if http_method == "POST" and route == "rate-limit":
            return _Reply(200, a.set_rate_limit(payload.get("rate"), payload.get("burst", self.bucket.burst)))
        if http_method == "POST" and route in ("contacts", "deals"):
            rows = payload.get(route, payload) if isinstance(payload, dict) else payload
            try:
                ids = a.add_contacts(rows) if route == "contacts" else a.add_deals(rows)
            except (Invalid, ValueError, TypeError) as err:
                return _Reply(400, {"error": str(err)})
            return _Reply(200, {"ids": ids})
        if http_method == "POST" and route == "reset":
            a.reset()
            return _Reply(200, {"ok": True})
        return _Reply(404, {"error": f"no admin route {http_method} /_admin/{route}"})


class AdminHandle:
    """In-process control of a :class:`BitrixEmulator` (the same as ``/_admin/*`` over HTTP)."""

    def __init__(self, emulator: BitrixEmulator) -> None:
        self._e = emulator

    def dump(self) -> dict:
        """The whole CRM as plain typed dicts: contacts (with multi-fields), deals, items per type."""
        crm = self._e.crm
        with crm.lock:
            return {"contacts": [crm.dump_contact(i) for i in crm.contacts.ids],
                    "deals": [crm.dump_deal(i) for i in crm.deals.ids],
                    "items": {str(etid): [crm.dump_item(etid, i) for i in t.ids] for etid, t in crm.items.items()}}

    def contacts(self) -> list[dict]:
        crm = self._e.crm
        with crm.lock:
            return [crm.dump_contact(i) for i in crm.contacts.ids]

    def deals(self) -> list[dict]:
        crm = self._e.crm
        with crm.lock:
            return [crm.dump_deal(i) for i in crm.deals.ids]

    def items(self, entity_type_id: int) -> list[dict]:
        crm = self._e.crm
        with crm.lock:
            return [crm.dump_item(entity_type_id, i) for i in crm.items[entity_type_id].ids]

    def list_elements(self, iblock_id: int) -> list[dict]:
        """Elements of universal list ``iblock_id`` (17 poll forms, 18 programmes on the real portal)."""
        return self._e.crm.dump_list_elements(iblock_id)

    def timeline_comments(self, entity_type: str | None = None, entity_id: int | None = None) -> list[dict]:
        """Timeline comments, oldest first; of one record when ``entity_type``/``entity_id`` are given."""
        return self._e.crm.dump_timeline_comments(entity_type, entity_id)

    def counters(self) -> dict:
        return self._e.counters()

    def limit_counters(self) -> dict:
        """429s, batch commands refused for operating time, cut-off requests, seconds charged per method."""
        return self._e.limit_counters()

    def reset_counters(self) -> None:
        self._e.reset_counters()
        self._e.faults.fired.clear()

    def set_faults(self, *, rates: dict | None = None, script: list[dict] | None = None,
                   seed: int | None = None, slow_s: float | None = None) -> dict:
        """Replace fault rates and/or script (kinds: ``FAULT_KINDS``); ``slow_s`` is the default delay of ``slow``."""
        self._e.faults.configure(rates=rates, script=script, seed=seed)
        if slow_s is not None:
            self._e.slow_s = float(slow_s)
        return self.faults()

    def clear_faults(self) -> dict:
        self._e.faults.clear()
        return self.faults()

    def faults(self) -> dict:
        return {**self._e.faults.snapshot(), "slow_s": self._e.slow_s, "kinds": list(FAULT_KINDS)}

    def set_rate_limit(self, rate: float | None, burst: int = 50) -> dict:
        self._e.bucket.configure(rate, burst)
        return {"rate": self._e.bucket.rate or None, "burst": self._e.bucket.burst}

    def set_operating_limit(self, limit_s: float | None = _KEEP, *, scale: float | None = None) -> dict:
        """Seconds per method per ten minutes (``None``/0 off) and the multiplier of every charge."""
        if limit_s is not _KEEP:
            self._e.operating.limit_s = float(limit_s) if limit_s else None
        if scale is not None:
            self._e.operating_time_scale = float(scale)
        return {"limit_s": self._e.operating.limit_s, "scale": self._e.operating_time_scale}

    def set_operating_costs(self, costs: dict[str, float] | bool | None = _KEEP, *,
                            default_cost_s: float | None = _KEEP) -> dict:
        """Seconds charged per method: ``True`` the default table, a mapping exactly that table,
        ``None`` measured durations; ``default_cost_s`` for methods outside the table."""
        current = self._e.costs
        table = current.table if costs is _KEEP else costs
        default_s = current.default_s if default_cost_s is _KEEP else default_cost_s
        self._e.costs = OperatingCosts.from_option(table, default_s=default_s, scale=current.scale)
        return self._e.costs.snapshot()

    def set_request_timeout(self, timeout_s: float | None = _KEEP, *, reply: str | None = None) -> dict:
        """The server cut-off in seconds (``None``/0 off) and how a cut request is answered."""
        if reply is not None and reply not in CUTOFF_REPLIES:
            raise ValueError(f"reply must be one of {CUTOFF_REPLIES}, not {reply!r}")
        if timeout_s is not _KEEP:
            self._e.request_timeout_s = float(timeout_s) if timeout_s else None
        if reply is not None:
            self._e.cutoff_reply = reply
        return {"timeout_s": self._e.request_timeout_s, "reply": self._e.cutoff_reply}

    def set_profile(self, name: str) -> dict:
        """Switch plan: rate, bucket (emptied) and operating limit together; see :meth:`limits`."""
        plan = plan_profile(name)
        self._e.profile = plan.name
        self._e.bucket.configure(plan.rate, plan.burst)
        self._e.operating.limit_s = plan.operating_limit_s
        return self.limits()

    def limits(self) -> dict:
        """Every throttle's setting, and the operating seconds now in each method's window."""
        e = self._e
        return {"profile": e.profile, "rate": e.bucket.rate or None, "burst": e.bucket.burst,
                "operating": {"limit_s": e.operating.limit_s, **e.costs.snapshot(),
                              "window_s_by_method": e.operating.usage()},
                "request_timeout": {"timeout_s": e.request_timeout_s, "reply": e.cutoff_reply}}

    def charge_operating(self, method: str, seconds: float) -> None:
        """Add ``seconds`` to a method's operating time now (deterministic tests)."""
        self._e.operating.record(method.lower(), seconds)

    def add_contacts(self, rows: list[dict]) -> list[int]:
        """Seed contacts given as legacy fields (``EMAIL`` may be a list of entries or a string)."""
        crm = self._e.crm
        schema = crm.contact_schema
        ids = []
        with crm.lock, _gc_paused():
            for row in rows:
                data = _admin_fields(schema, row, self._e.tz)
                ids.append(crm.add_contact(data))
        return ids

    def add_deals(self, rows: list[dict]) -> list[int]:
        crm = self._e.crm
        schema = crm.deal_schema
        ids = []
        with crm.lock, _gc_paused():
            for row in rows:
                ids.append(crm.add_deal(_admin_fields(schema, row, self._e.tz)))
        return ids

    def reset(self) -> None:
        """Back to the seeded portal (state, limits and counters)."""
        with self._e.crm.lock:
            self._e.crm.reset()
        self._e.operating.clear()
        self._e.bucket.configure(self._e.bucket.rate or None, self._e.bucket.burst)
        self.reset_counters()


@contextlib.contextmanager
def _gc_paused():
    """Bulk seeding creates hundreds of thousands of dicts that all live on: the cyclic GC
    would rescan them again and again (it doubles the time at 200,000 deals)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _admin_fields(schema, row: dict, tz: timezone) -> dict:
    out: dict[str, Any] = {}
    for key, value in row.items():
        f = schema.by_name.get(key)
        if f is None:
            continue
        if f.kind == "multi" or key == "ID":
            out[key] = value
            continue
        try:
            out[key] = internal_value(f, value, tz)
        except Invalid:
            continue
    return out


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes; without TCP_NODELAY a keep-alive client
    # waits ~40 ms for the delayed ACK on every response.
    disable_nagle_algorithm = True
    server_version = "nginx"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet by design
        pass

    def do_GET(self) -> None:  # noqa: N802
        self._dispatch("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _dispatch(self, http_method: str) -> None:
        emulator: BitrixEmulator = self.server.owner  # type: ignore[attr-defined]
        body = self._read_body()
        url = urlsplit(self.path)
        path = re.sub(r"/{2,}", "/", url.path)
        if path.startswith("/rest/"):
            reply = emulator.handle_rest(http_method, path, url.query, self.headers.get("Content-Type"), body)
        elif path.startswith("/_admin/"):
            reply = emulator.handle_admin(http_method, path, body)
        else:
            reply = _Reply(404, {"error": "NOT_FOUND", "error_description": "Not found"})
        if reply.drop:
            drop_connection(self)
            return
        if reply.delay_s:
            time.sleep(reply.delay_s)
        if reply.html is not None:
            payload, ctype = reply.html, "text/html"
        else:
            payload, ctype = json.dumps(reply.body).encode("utf-8"), "application/json; charset=utf-8"
        try:
            self.send_response(reply.status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(payload)))
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
