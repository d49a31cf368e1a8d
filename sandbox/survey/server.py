"""A loopback emulator of the survey platform's read API, misbehaving on request.

``SurveyEmulator`` serves ``GET /api/v1/polls``, ``/api/v1/polls/{poll_id}/answers``
and ``/api/v1/polls/{poll_id}/answers/{answer_id}`` as the contract describes
(``sandbox/survey-platform-openapi.yaml``), with every production hazard switchable:

* late visibility: an answer is readable once ``now >= updated_at + lag``
  (``visibility_lag_s``; ``visibility_lag_mode="spread"`` gives each answer its own
  share of it, so that answers appear out of order);
* edits and deletions through the admin handle (``updated_at`` moves, the answer
  reappears later in the order);
* ties in ``updated_at`` (the generated dataset has many);
* a per-token rate limit (429 + ``Retry-After``);
* transient faults drawn from a ``FaultInjector`` (kinds in ``FAULT_KINDS``);
* cursor expiry after ``cursor_ttl_s`` by the emulator's clock;
* ``latency_ms`` on every API response.

The clock is the emulator's own (real UTC time by default, or ``clock``), and
``admin.set_clock``/``advance_clock`` move it, so tests never wait for real.

Admin endpoints live outside the API prefix under ``/_admin`` and need no token; the
in-process ``admin`` handle offers the same actions (see ``SurveyAdmin``).
"""
from __future__ import annotations

import hmac
import math
import re
import socket
import threading
import time
from collections import Counter
from datetime import datetime
from http.server import BaseHTTPRequestHandler
from typing import Any, Callable
from urllib.parse import urlsplit

from sandbox.faults import FaultInjector
from sandbox.httpbase import LoopbackServer, drop_connection
from sandbox.survey.admin import SurveyAdmin
from sandbox.survey.clock import Clock, format_rfc3339, parse_rfc3339, to_us
from sandbox.survey.cursors import Cursor, CursorError, decode_cursor, encode_cursor
from sandbox.survey.dataset import Dataset, build_dataset, dump_json
from sandbox.survey.protocol import (
    ADMIN_PREFIX,
    ANSWERS_LIMIT_MAX,
    API_PREFIX,
    CURSOR_FAULTS,
    DEFAULT_LIMIT,
    POLLS_LIMIT_MAX,
    TRANSPORT_FAULTS,
    ApiError,
    query_params,
)
from sandbox.survey.store import SurveyStore

_ID = r"([0-9]{1,16})"
_ROUTES = [
    (re.compile(r"/polls"), "listPolls"),
    (re.compile(rf"/polls/{_ID}/answers"), "listAnswers"),
    (re.compile(rf"/polls/{_ID}/answers/{_ID}"), "getAnswer"),
]
_LIMIT = re.compile(r"[0-9]{1,9}")
_JSON = "application/json; charset=utf-8"
# What each injected HTTP fault answers: a gateway's HTML 502, the API's JSON 503, a plain-text 504.
_FAULT_RESPONSES: dict[str, tuple[int, bytes, str, dict[str, str]]] = {
    "http_502": (502, b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
                      b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
                      b"</body>\r\n</html>\r\n", "text/html", {}),
    "http_503": (503, b'{"error":"internal","message":"service temporarily unavailable"}', _JSON,
                 {"Retry-After": "1"}),
    "http_504": (504, b"upstream request timeout", "text/plain; charset=utf-8", {}),
    "http_429": (429, b'{"error":"rate_limited","message":"too many requests"}', _JSON, {"Retry-After": "1"}),
}


class _RateLimiter:
    """A token bucket per API token: ``rate`` requests a second, bursts up to ``rate``."""

    def __init__(self, rate: float | None, monotonic: Callable[[], float]) -> None:
        self._lock = threading.Lock()
        self._monotonic = monotonic
        self._buckets: dict[str, tuple[float, float]] = {}  # token -> (tokens, at)
        self.rate = rate or 0.0

    def set_rate(self, rate: float | None) -> None:
        with self._lock:
            self.rate = float(rate or 0.0)
            self._buckets.clear()

    def acquire(self, key: str) -> float | None:
        """None if the request may go on, else the seconds until it could."""
        with self._lock:
            if self.rate <= 0:
                return None
            capacity = max(1.0, self.rate)
            now = self._monotonic()
            tokens, at = self._buckets.get(key, (capacity, now))
            tokens = min(capacity, tokens + (now - at) * self.rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                return None
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / self.rate


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like the real service behind its gateway
    server_version = "SurveySandbox/1.0"
    timeout = 60  # an idle keep-alive connection is closed after this

    def setup(self) -> None:
        super().setup()
        # Headers and body leave in separate writes; without this, Nagle's algorithm and the
        # client's delayed ACK add ~40 ms to every keep-alive response.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.owner._track(self.connection, add=True)  # type: ignore[attr-defined]

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.owner._track(self.connection, add=False)  # type: ignore[attr-defined]

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        if self.server.owner.verbose:  # type: ignore[attr-defined]
            super().log_message(format, *args)

    def _dispatch(self) -> None:
        self.server.owner._handle(self)  # type: ignore[attr-defined]

    def __getattr__(self, name: str) -> Any:
        # Every method (TRACE, PROPFIND ...) reaches the router, which answers 405 where only
        # GET is allowed, rather than the base class's HTML "501 Unsupported method".
        if name.startswith("do_"):
            return self._dispatch
        raise AttributeError(name)

    def read_body(self) -> bytes:
        length = self.headers.get("Content-Length")
        if not length:
            return b""
        try:
            return self.rfile.read(int(length))
        except ValueError:
            return b""

    def respond(self, status: int, body: bytes, *, content_type: str = _JSON,
                headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


class SurveyEmulator:
    """The survey platform's read API on loopback; ``admin`` drives it from a test.

    ``dataset`` defaults to ``build_dataset(answers=answers, seed=seed)`` (the sample
    polls and answers plus ``answers`` generated ones). ``rate_limit_per_s`` of 0 or
    None disables the rate limit. ``clock`` is the base clock (default: real UTC time).
    """

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, token: str = "sandbox-token",
                 dataset: Dataset | None = None, answers: int = 0, seed: int = 0,
                 faults: FaultInjector | None = None, latency_ms: float = 0, rate_limit_per_s: float | None = 10.0,
                 visibility_lag_s: float = 0.0, visibility_lag_mode: str = "fixed", cursor_ttl_s: float = 900.0,
                 slow_s: float = 3.0, clock: Callable[[], datetime] | None = None,
                 monotonic: Callable[[], float] = time.monotonic, verbose: bool = False) -> None:
        self.token = token
        self.seed = seed
        self.verbose = verbose
        self.faults = faults if faults is not None else FaultInjector(seed=seed)
        self.clock = Clock(clock)
        self.store = SurveyStore(dataset if dataset is not None else build_dataset(answers=answers, seed=seed),
                                 visibility_lag_s=visibility_lag_s, visibility_lag_mode=visibility_lag_mode,
                                 seed=seed)
        self.latency_ms = float(latency_ms)
        self.cursor_ttl_s = float(cursor_ttl_s)
        self.slow_s = float(slow_s)
        self._limiter = _RateLimiter(rate_limit_per_s, monotonic)
        self._counter_lock = threading.Lock()
        self._requests: Counter[str] = Counter()
        self._statuses: Counter[str] = Counter()
        self._by_endpoint: dict[str, Counter[str]] = {}
        self._faults_fired: Counter[str] = Counter()
        self._connections: set = set()
        self._connections_lock = threading.Lock()
        self._server = LoopbackServer(_Handler, owner=self, host=host, port=port)
        self._started = False
        self.admin = SurveyAdmin(self)

    # Life cycle -----------------------------------------------------------------------------
    @property
    def root_url(self) -> str:
        return self._server.base_url

    @property
    def base_url(self) -> str:
        """The API's base URL, e.g. ``http://127.0.0.1:8081/api/v1``."""
        return self._server.base_url + API_PREFIX

    @property
    def admin_url(self) -> str:
        return self._server.base_url + ADMIN_PREFIX

    @property
    def port(self) -> int:
        return self._server.port

    def start(self) -> "SurveyEmulator":
        self._server.start()
        self._started = True
        return self

    def stop(self) -> None:
        """Stop serving and cut the keep-alive connections still open."""
        if not self._started:
            return
        self._started = False
        self._server.stop()
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            drop_connection(_Closing(connection))

    def __enter__(self) -> "SurveyEmulator":
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _track(self, connection: Any, *, add: bool) -> None:
        with self._connections_lock:
            if add:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)

    # Counters -------------------------------------------------------------------------------
    def _count_request(self, operation: str) -> None:
        with self._counter_lock:
            self._requests[operation] += 1

    def _count_status(self, operation: str, status: str) -> None:
        with self._counter_lock:
            self._statuses[status] += 1
            self._by_endpoint.setdefault(operation, Counter())[status] += 1

    def _count_fault(self, kind: str) -> None:
        with self._counter_lock:
            self._faults_fired[kind] += 1

    def counters(self) -> dict:
        with self._counter_lock:
            return {
                "requests": dict(self._requests),
                "total": sum(self._requests.values()),
                "statuses": dict(self._statuses),
                "by_endpoint": {op: dict(counts) for op, counts in self._by_endpoint.items()},
                "faults": dict(self._faults_fired),
            }

    def reset_counters(self) -> None:
        with self._counter_lock:
            self._requests.clear()
            self._statuses.clear()
            self._by_endpoint.clear()
            self._faults_fired.clear()

    # HTTP -----------------------------------------------------------------------------------
    def _handle(self, handler: _Handler) -> None:
        try:
            self._route(handler)
        except OSError:
            handler.close_connection = True  # the client went away mid-exchange
        except Exception as error:  # a bug here must still answer, and loudly
            handler.log_error("survey emulator failed on %s %s: %r", handler.command, handler.path, error)
            handler.respond(500, dump_json({"error": "internal", "message": f"emulator error: {error!r}"}))

    def _route(self, handler: _Handler) -> None:
        body = handler.read_body()
        parts = urlsplit(handler.path)
        path = parts.path
        try:
            if path == ADMIN_PREFIX or path.startswith(ADMIN_PREFIX + "/"):
                status, payload = self.admin._http(handler.command, path[len(ADMIN_PREFIX):], parts.query, body)
                handler.respond(status, dump_json(payload))
            elif path == API_PREFIX or path.startswith(API_PREFIX + "/"):
                self._serve_api(handler, path[len(API_PREFIX):], parts.query)
            else:
                raise ApiError(404, "not_found", f"no such path {path!r}; the API is under {API_PREFIX}")
        except ApiError as error:
            handler.respond(error.status, error.body(), headers=error.headers)

    def _serve_api(self, handler: _Handler, path: str, query: str) -> None:
        operation, ids = "unknown", ()
        for pattern, name in _ROUTES:
            match = pattern.fullmatch(path)
            if match:
                operation, ids = name, tuple(int(group) for group in match.groups())
                break
        self._count_request(operation)
        if self.latency_ms > 0:
            time.sleep(self.latency_ms / 1000)

        def send(status: int, body: bytes, content_type: str = _JSON, headers: dict[str, str] | None = None) -> None:
            self._count_status(operation, str(status))
            handler.respond(status, body, content_type=content_type, headers=headers)

        fault = self.faults.draw(TRANSPORT_FAULTS, method=operation)
        if fault is not None:
            self._count_fault(fault)
            if fault == "drop":
                self._count_status(operation, "dropped")
                drop_connection(handler)
                return
            if fault == "slow":
                time.sleep(self.slow_s)  # then answer normally, late
            else:
                status, body, content_type, headers = _FAULT_RESPONSES[fault]
                send(status, body, content_type, headers)
                return
        try:
            token = self._authenticate(handler)
            wait = self._limiter.acquire(token)
            if wait is not None:
                raise ApiError(429, "rate_limited",
                               f"more than {self._limiter.rate:g} requests per second for this token",
                               {"Retry-After": str(max(1, math.ceil(wait)))})
            if handler.command != "GET":
                raise ApiError(405, "bad_request", f"{handler.command} is not allowed here; use GET",
                               {"Allow": "GET"})
            if operation == "unknown":
                raise ApiError(404, "not_found", f"no such endpoint {API_PREFIX}{path}")
            params = query_params(query) if operation != "getAnswer" else {}  # it takes no query
            if operation == "listPolls":
                body = self._list_polls(params)
            elif operation == "listAnswers":
                body = self._list_answers(ids[0], params)
            else:
                body = self._get_answer(*ids)
        except ApiError as error:
            send(error.status, error.body(), headers=error.headers)
            return
        send(200, body)

    def _authenticate(self, handler: _Handler) -> str:
        header = handler.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if not header:
            raise ApiError(401, "unauthorized", "missing Authorization header; send 'Authorization: Bearer <token>'",
                           {"WWW-Authenticate": 'Bearer realm="surveys"'})
        if scheme.lower() != "bearer" or not _same(token.strip(), self.token):
            raise ApiError(401, "unauthorized", "invalid bearer token",
                           {"WWW-Authenticate": 'Bearer realm="surveys", error="invalid_token"'})
        return token.strip()

    # Endpoints ------------------------------------------------------------------------------
    def _listing_position(self, params: dict[str, str], scope: str, operation: str,
                          now_us: int) -> tuple[tuple[int, int] | None, int | None]:
        since_us = None
        if "updated_since" in params:
            try:
                since_us = to_us(parse_rfc3339(params["updated_since"]))
            except ValueError:
                raise ApiError(400, "bad_request",
                               f"updated_since must be an RFC 3339 timestamp with an offset, e.g. "
                               f"2025-10-20T09:15:02+03:00 (encode '+' as %2B), got {params['updated_since']!r}"
                               ) from None
        after = None
        if params.get("cursor"):
            try:
                cursor = decode_cursor(params["cursor"], scope=scope)
            except CursorError as error:
                raise ApiError(400, "bad_request", str(error)) from None
            forced = self.faults.draw(CURSOR_FAULTS, method=operation)
            if forced is not None:
                self._count_fault(forced)
            if forced is not None or now_us - cursor.issued_us > self.cursor_ttl_s * 1_000_000:
                raise ApiError(400, "cursor_expired",
                               f"cursor issued at {format_rfc3339(cursor.issued_us)} is older than "
                               f"{self.cursor_ttl_s:g} s; restart the listing from your watermark")
            after = cursor.position
        return after, since_us

    def _page_body(self, items: list[bytes], last: tuple[int, int] | None, scope: str, now_us: int) -> bytes:
        cursor = b"null"
        if last is not None:
            cursor = b'"' + encode_cursor(Cursor(scope, last[0], last[1], now_us)).encode("ascii") + b'"'
        return b'{"items":[' + b",".join(items) + b'],"next_cursor":' + cursor + b"}"

    def _list_polls(self, params: dict[str, str]) -> bytes:
        now_us = self.clock.now_us()
        limit = _limit(params, POLLS_LIMIT_MAX)
        after, since_us = self._listing_position(params, "polls", "listPolls", now_us)
        page = self.store.list_polls(after=after, since_us=since_us, limit=limit)
        return self._page_body(page.items, page.last, "polls", now_us)

    def _list_answers(self, poll_id: int, params: dict[str, str]) -> bytes:
        if not self.store.poll_exists(poll_id):
            raise ApiError(404, "not_found", f"no poll {poll_id}")
        now_us = self.clock.now_us()
        scope = f"answers:{poll_id}"
        limit = _limit(params, ANSWERS_LIMIT_MAX)
        after, since_us = self._listing_position(params, scope, "listAnswers", now_us)
        page = self.store.list_answers(poll_id, after=after, since_us=since_us, limit=limit, now_us=now_us)
        return self._page_body(page.items, page.last, scope, now_us)

    def _get_answer(self, poll_id: int, answer_id: int) -> bytes:
        body = self.store.get_answer(poll_id, answer_id, now_us=self.clock.now_us())
        if body is None:
            raise ApiError(404, "not_found", f"no answer {answer_id} in poll {poll_id}")
        return body


class _Closing:
    """Just enough of a handler for ``drop_connection`` to cut a tracked connection."""

    def __init__(self, connection: Any) -> None:
        self.connection = connection
        self.close_connection = False


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8", "surrogateescape"), expected.encode("utf-8"))


def _limit(params: dict[str, str], maximum: int) -> int:
    raw = params.get("limit")
    if raw is None:
        return DEFAULT_LIMIT
    if not _LIMIT.fullmatch(raw) or not 1 <= int(raw) <= maximum:
        raise ApiError(400, "bad_request", f"limit must be an integer from 1 to {maximum}, got {raw!r}")
    return int(raw)
