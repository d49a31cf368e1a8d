"""Bitrix24Client failures: the classification table, retries and the sleeps they ask for, fatal
errors and their messages, secrets kept out of every message.

HTTP is faked with ``responses``; two tests use a real loopback socket to check that
real connection failures (refused, dropped after sending) land in the right class.
Time never passes for real: ``FakeClock`` advances only when slept on.
"""
from __future__ import annotations

import random
import socket
import threading

import pytest
import requests
import responses

from sync.clients.bitrix24 import (
    Action,
    Bitrix24Client,
    Reply,
    classify,
    command_disposition,
)
from sync.clients.common import NOT_JSON
from core.errors import AmbiguousWriteError, CommandError, FatalError, RetriableError
from tests.clients.b24_fakes import HOOK, QLE, SECRET, dropped, ok, refused, url
from tests.clients.conftest import FIXTURES, FakeClock, MaxJitter, SpySession, load_fixture


@pytest.fixture
def client(clock: FakeClock, spy_session: SpySession) -> Bitrix24Client:
    return Bitrix24Client(HOOK, session=spy_session, clock=clock, sleep=clock.sleep, rng=MaxJitter())


# --------------------------------------------------------------------------- the failure table

ENVELOPES = load_fixture("error_envelopes.json")["cases"]


@pytest.mark.parametrize("case", ENVELOPES, ids=lambda c: f"{c['status']}-{c['body']['error'] or 'empty'}")
def test_error_envelopes_are_classified_by_the_table(case: dict) -> None:
    failure = classify(Reply(case["status"], case["body"]))
    assert failure is not None
    assert failure.action.value == case["action"]
    assert failure.code == case["body"]["error"]


@pytest.mark.parametrize("outcome, action, code", [
    (requests.exceptions.ConnectTimeout("connect timed out"), Action.RETRY, "CONNECT_TIMEOUT"),
    (refused(), Action.RETRY, "CONNECTION_REFUSED"),
    (requests.exceptions.ReadTimeout("read timed out"), Action.AMBIGUOUS, "READ_TIMEOUT"),
    (dropped(), Action.AMBIGUOUS, "CONNECTION_RESET"),
    (requests.exceptions.ChunkedEncodingError("Connection broken: IncompleteRead"), Action.AMBIGUOUS,
     "TRANSPORT_ERROR"),
    (requests.exceptions.SSLError("certificate verify failed: CERTIFICATE_VERIFY_FAILED"), Action.FATAL,
     "TLS_CERTIFICATE"),
    (Reply(502, NOT_JSON, snippet="<html>502 Bad Gateway</html>"), Action.AMBIGUOUS, "HTTP_502"),
    (Reply(504, NOT_JSON), Action.AMBIGUOUS, "HTTP_504"),
    (Reply(200, NOT_JSON), Action.AMBIGUOUS, "NON_JSON_REPLY"),
    (Reply(200, {"no": "result"}), Action.AMBIGUOUS, "UNEXPECTED_REPLY"),
    (Reply(500, {"weird": 1}), Action.AMBIGUOUS, "HTTP_500"),
    (Reply(429, NOT_JSON), Action.RETRY, "HTTP_429"),
    (Reply(408, NOT_JSON), Action.RETRY, "HTTP_408"),
    (Reply(404, NOT_JSON), Action.FATAL, "HTTP_404"),
    (Reply(401, NOT_JSON), Action.FATAL, "HTTP_401"),
    (Reply(302, NOT_JSON, headers={"Location": f"https://new.bitrix24.ru/rest/17/{SECRET}/x.json"}),
     Action.FATAL, "PORTAL_MOVED"),
    (Reply(301, NOT_JSON), Action.FATAL, "PORTAL_MOVED"),
    (Reply(401, {"error": "SOMETHING_NEW", "error_description": "?"}), Action.FATAL, "SOMETHING_NEW"),
    (Reply(503, {"error": "SOMETHING_NEW", "error_description": "?"}), Action.AMBIGUOUS, "SOMETHING_NEW"),
    (Reply(200, {"error": "QUERY_LIMIT_EXCEEDED"}), Action.RETRY, "QUERY_LIMIT_EXCEEDED"),
])
def test_transport_failures_are_classified_by_the_table(outcome, action: Action, code: str) -> None:
    failure = classify(outcome)
    assert failure is not None
    assert (failure.action, failure.code) == (action, code)
    assert SECRET not in failure.reason


def test_success_envelope_is_not_a_failure() -> None:
    assert classify(Reply(200, ok(True))) is None
    assert classify(Reply(200, {"result": None})) is None


def test_only_query_limit_exceeded_penalizes_the_bucket() -> None:
    assert classify(Reply(503, QLE)).penalize
    assert not classify(Reply(429, {"error": "OPERATION_TIME_LIMIT"})).penalize
    assert classify(Reply(503, {"error": "OVERLOAD_LIMIT"})).fatal_when_exhausted


def test_retry_after_is_read_from_the_reply() -> None:
    assert classify(Reply(503, QLE, headers={"Retry-After": "7"})).retry_after == 7.0
    assert classify(Reply(503, QLE)).retry_after is None


@pytest.mark.parametrize("code, disposition", [
    ("QUERY_LIMIT_EXCEEDED", "retry"), ("OPERATION_TIME_LIMIT", "retry"), ("ERROR_BATCH_LENGTH_EXCEEDED",
                                                                            "not_executed"),
    ("NOT_EXECUTED", "not_executed"), ("insufficient_scope", "fatal"), ("ACCESS_DENIED", "fatal"),
    ("INTERNAL_SERVER_ERROR", "ambiguous"), ("", "invalid"), ("ERROR_CORE", "invalid"),
    ("CRM_FIELD_ERROR_REQUIRED", "invalid"), (None, "invalid"),
])
def test_command_errors_inside_batch_get_a_disposition(code, disposition: str) -> None:
    assert command_disposition(code) == disposition

# --------------------------------------------------------------------------- retries

@responses.activate
def test_query_limit_exceeded_is_retried_after_backoff(client: Bitrix24Client, clock: FakeClock) -> None:
    responses.post(url("crm.deal.list"), status=503, json=QLE)
    responses.post(url("crm.deal.list"), json=ok([]))

    assert client.call("crm.deal.list").result == []
    assert len(responses.calls) == 2
    assert clock.sleeps == [1.0]  # backoff 1 s; the bucket (penalized to full) drained 2 slots meanwhile
    stats = client.stats
    assert (stats.requests, stats.retries, stats.rejected_by_rate_limit) == (2, 1, 1)
    assert stats.errors_by_code == {"QUERY_LIMIT_EXCEEDED": 1}
    assert client.bucket.rejected == 1


@responses.activate
def test_query_limit_exceeded_on_write_is_retried_too(client: Bitrix24Client, clock: FakeClock) -> None:
    """The limiter refused before running the method: re-sending an add cannot duplicate it."""
    responses.post(url("crm.contact.add"), status=503, json=QLE)
    responses.post(url("crm.contact.add"), json=ok(501))
    assert client.call("crm.contact.add", {"fields": {"NAME": "A"}}, idempotent=False).result == 501
    assert len(responses.calls) == 2


@responses.activate
def test_query_limit_exceeded_makes_the_bucket_wait(spy_session: SpySession) -> None:
    """After a 503 the local bucket is full: the next request waits one drain slot (0.5 s)."""
    slept: list[float] = []
    frozen = FakeClock()  # sleep does not advance this clock: the wait must come from the bucket
    client = Bitrix24Client(HOOK, session=spy_session, clock=frozen, sleep=slept.append, rng=MaxJitter())
    with responses.RequestsMock() as mock:
        mock.post(url("server.time"), status=503, json=QLE)
        mock.post(url("server.time"), json=ok("2025-10-20T09:15:02+03:00"))
        client.call("server.time")
    assert slept == [1.0, 0.6]  # backoff, then the bucket: one slot (0.5 s) + its 0.1 s safety margin
    assert client.stats.waited_s == pytest.approx(0.6)


@responses.activate
def test_operation_time_limit_is_retried(client: Bitrix24Client, clock: FakeClock) -> None:
    responses.post(url("crm.deal.list"), status=429,
                   json={"error": "OPERATION_TIME_LIMIT", "error_description": "Method is blocked due to operation time limit."})
    responses.post(url("crm.deal.list"), json=ok([]))
    client.call("crm.deal.list")
    assert clock.sleeps == [1.0]
    assert client.stats.rejected_by_rate_limit == 1
    assert client.bucket.rejected == 0  # not the request-rate bucket


@responses.activate
def test_retry_after_header_wins(client: Bitrix24Client, clock: FakeClock) -> None:
    responses.post(url("crm.deal.list"), status=503, json=QLE, headers={"Retry-After": "7"})
    responses.post(url("crm.deal.list"), status=503, json=QLE)
    responses.post(url("crm.deal.list"), json=ok([]))
    client.call("crm.deal.list")
    assert clock.sleeps == [7.0, 2.0]  # the hint, then backoff attempt 2


@responses.activate
def test_retry_after_beyond_the_budget_gives_up_at_once(clock: FakeClock, spy_session: SpySession) -> None:
    client = Bitrix24Client(HOOK, session=spy_session, clock=clock, sleep=clock.sleep, max_wait_s=60)
    responses.post(url("crm.deal.list"), status=429, json={"error": "OPERATION_TIME_LIMIT"},
                   headers={"Retry-After": "600"})
    with pytest.raises(RetriableError) as info:
        client.call("crm.deal.list")
    assert info.value.retry_after == 600.0
    assert clock.sleeps == [] and len(responses.calls) == 1


@responses.activate
def test_backoff_doubles_until_max_attempts(client: Bitrix24Client, clock: FakeClock) -> None:
    responses.post(url("crm.deal.list"), status=503, json=QLE)
    with pytest.raises(RetriableError) as info:
        client.call("crm.deal.list")
    assert len(responses.calls) == 6
    assert clock.sleeps == [1.0, 2.0, 4.0, 8.0, 16.0]
    message = str(info.value)
    assert "crm.deal.list" in message and "6 attempts" in message and "run again later" in message
    assert "was not applied" in message
    assert info.value.code == "QUERY_LIMIT_EXCEEDED" and info.value.system == "bitrix24"


@responses.activate
def test_backoff_is_full_jitter_with_injected_rng(clock: FakeClock, spy_session: SpySession) -> None:
    client = Bitrix24Client(HOOK, session=spy_session, clock=clock, sleep=clock.sleep, rng=random.Random(42),
                            max_attempts=5)
    responses.post(url("crm.deal.list"), status=502, body="<html>bad gateway</html>")
    with pytest.raises(RetriableError):
        client.call("crm.deal.list")
    expected_rng = random.Random(42)
    expected = [expected_rng.uniform(0.0, 2.0 ** n) for n in range(4)]
    assert clock.sleeps == pytest.approx(expected)
    assert all(0 <= s <= 2 ** n for n, s in enumerate(clock.sleeps))


@responses.activate
def test_max_wait_caps_total_retry_time(clock: FakeClock, spy_session: SpySession) -> None:
    client = Bitrix24Client(HOOK, session=spy_session, clock=clock, sleep=clock.sleep, rng=MaxJitter(),
                            max_wait_s=5.0)
    responses.post(url("crm.deal.list"), status=503, json=QLE)
    with pytest.raises(RetriableError) as info:
        client.call("crm.deal.list")
    assert clock.sleeps == [1.0, 2.0]  # a third wait of 4 s would end at 7 s > 5 s
    assert len(responses.calls) == 3
    assert "retry budget" in str(info.value)


@responses.activate
def test_timeout_on_read_is_retried(client: Bitrix24Client, clock: FakeClock) -> None:
    responses.post(url("crm.deal.list"), body=requests.exceptions.ReadTimeout("read timed out"))
    responses.post(url("crm.deal.list"), json=ok([{"ID": "1"}]))
    assert client.call("crm.deal.list").result == [{"ID": "1"}]
    assert clock.sleeps == [1.0]


@responses.activate
def test_timeout_on_write_call_raises_ambiguous_without_retry(client: Bitrix24Client, clock: FakeClock) -> None:
    responses.post(url("crm.deal.add"), body=requests.exceptions.ReadTimeout("read timed out"))
    with pytest.raises(AmbiguousWriteError) as info:
        client.call("crm.deal.add", {"fields": {"TITLE": "x"}}, idempotent=False)
    assert len(responses.calls) == 1 and clock.sleeps == []
    assert "external keys" in str(info.value) and info.value.code == "READ_TIMEOUT"
    assert isinstance(info.value, RetriableError)  # a later run may reconcile and retry


@responses.activate
def test_timeout_on_write_batch_raises_ambiguous_without_retry(client: Bitrix24Client, clock: FakeClock) -> None:
    responses.post(url("batch"), body=requests.exceptions.ReadTimeout("read timed out"))
    with pytest.raises(AmbiguousWriteError) as info:
        client.batch({"contact_1": ("crm.contact.add", {"fields": {"NAME": "A"}}),
                      "deal_1": ("crm.deal.add", {"fields": {"CONTACT_ID": "$result[contact_1]"}})},
                     idempotent=False)
    assert len(responses.calls) == 1 and clock.sleeps == []
    assert "batch of 2 (crm.contact.add, crm.deal.add)" in str(info.value)


@responses.activate
def test_connection_refused_on_write_is_retried(client: Bitrix24Client, clock: FakeClock) -> None:
    responses.post(url("crm.deal.add"), body=refused())
    responses.post(url("crm.deal.add"), json=ok(394))
    assert client.call("crm.deal.add", {"fields": {}}, idempotent=False).result == 394
    assert clock.sleeps == [1.0]


@responses.activate
def test_connect_timeout_on_write_is_retried(client: Bitrix24Client, clock: FakeClock) -> None:
    responses.post(url("crm.deal.add"), body=requests.exceptions.ConnectTimeout("connect timed out"))
    responses.post(url("crm.deal.add"), json=ok(394))
    assert client.call("crm.deal.add", {"fields": {}}, idempotent=False).result == 394


@responses.activate
def test_connection_reset_after_sending_on_write_is_ambiguous(client: Bitrix24Client) -> None:
    responses.post(url("crm.deal.add"), body=dropped())
    with pytest.raises(AmbiguousWriteError):
        client.call("crm.deal.add", {"fields": {}}, idempotent=False)
    assert len(responses.calls) == 1


@responses.activate
def test_html_gateway_page_is_retried_for_reads_and_ambiguous_for_writes(client: Bitrix24Client,
                                                                         clock: FakeClock) -> None:
    page = (FIXTURES / "gateway_502.html").read_text()
    responses.post(url("crm.deal.list"), status=502, body=page, content_type="text/html")
    responses.post(url("crm.deal.list"), json=ok([]))
    assert client.call("crm.deal.list").result == []
    responses.post(url("crm.deal.add"), status=502, body=page, content_type="text/html")
    with pytest.raises(AmbiguousWriteError) as info:
        client.call("crm.deal.add", {"fields": {}}, idempotent=False)
    assert "502" in str(info.value) and "Bad Gateway" in str(info.value)


@responses.activate
def test_json_500_on_write_is_ambiguous(client: Bitrix24Client) -> None:
    responses.post(url("crm.deal.add"), status=500,
                   json={"error": "INTERNAL_SERVER_ERROR", "error_description": "Internal server error"})
    with pytest.raises(AmbiguousWriteError) as info:
        client.call("crm.deal.add", {"fields": {}}, idempotent=False)
    assert info.value.code == "INTERNAL_SERVER_ERROR" and info.value.status == 500


@responses.activate
def test_write_refused_by_limiter_then_timed_out_is_ambiguous(client: Bitrix24Client, clock: FakeClock) -> None:
    responses.post(url("crm.deal.add"), status=503, json=QLE)
    responses.post(url("crm.deal.add"), body=requests.exceptions.ReadTimeout("read timed out"))
    with pytest.raises(AmbiguousWriteError):
        client.call("crm.deal.add", {"fields": {}}, idempotent=False)
    assert len(responses.calls) == 2 and clock.sleeps == [1.0]


@responses.activate
def test_retries_are_logged_with_method_attempt_reason_and_wait(client: Bitrix24Client, log_lines) -> None:
    responses.post(url("crm.deal.list"), status=503, json=QLE)
    responses.post(url("crm.deal.list"), json=ok([]))
    client.call("crm.deal.list")
    assert log_lines == ["Bitrix24 crm.deal.list: attempt 1/6 failed: HTTP 503 QUERY_LIMIT_EXCEEDED: "
                         "Too many requests; retrying in 1.00s\n"]


# --------------------------------------------------------------------------- fatal

@responses.activate
def test_insufficient_scope_is_fatal_and_names_scope(client: Bitrix24Client, clock: FakeClock) -> None:
    responses.post(url("crm.deal.add"), status=403,
                   json={"error": "insufficient_scope",
                         "error_description": "The request requires higher privileges than provided by the webhook token"})
    with pytest.raises(FatalError) as info:
        client.call("crm.deal.add", {"fields": {}}, idempotent=False)
    message = str(info.value)
    assert "'crm' scope" in message and "Tick" in message and "inbound webhook" in message
    assert info.value.code == "insufficient_scope" and info.value.status == 403
    assert len(responses.calls) == 1 and clock.sleeps == []
    assert SECRET not in message


@responses.activate
def test_insufficient_scope_on_batch_names_every_scope_involved(client: Bitrix24Client) -> None:
    responses.post(url("batch"), status=403, json={"error": "insufficient_scope", "error_description": ""})
    with pytest.raises(FatalError) as info:
        client.batch({"u": ("user.get", {"FILTER": {"EMAIL": "a@b.ru"}}), "d": ("crm.deal.list", {})},
                     idempotent=True)
    assert "'crm', 'user' scope" in str(info.value)


@pytest.mark.parametrize("status, code, says", [
    (401, "INVALID_CREDENTIALS", "BITRIX24_WEBHOOK_URL"),
    (401, "NO_AUTH_FOUND", "Create an inbound webhook"),
    (401, "expired_token", "has expired"),
    (404, "ERROR_METHOD_NOT_FOUND", "does not know the method crm.deal.add"),
    (400, "INVALID_REQUEST", "https://"),
    (403, "ACCESS_DENIED", "commercial plans"),
    (403, "PORTAL_DELETED", "was deleted"),
])
@responses.activate
def test_fatal_codes_raise_at_once_with_what_to_do(client: Bitrix24Client, clock: FakeClock, status: int,
                                                   code: str, says: str) -> None:
    responses.post(url("crm.deal.add"), status=status, json={"error": code, "error_description": "server text"})
    with pytest.raises(FatalError) as info:
        client.call("crm.deal.add", {"fields": {}})
    assert says in str(info.value) and info.value.code == code and info.value.system == "bitrix24"
    assert len(responses.calls) == 1 and clock.sleeps == []
    assert SECRET not in str(info.value)


@responses.activate
def test_overload_limit_is_retried_then_fatal(client: Bitrix24Client, clock: FakeClock) -> None:
    responses.post(url("crm.deal.list"), status=503,
                   json={"error": "OVERLOAD_LIMIT", "error_description": "REST API is blocked due to overload"})
    with pytest.raises(FatalError) as info:
        client.call("crm.deal.list")
    assert len(responses.calls) == 6 and clock.sleeps == [1.0, 2.0, 4.0, 8.0, 16.0]
    assert "Bitrix24 support" in str(info.value) and info.value.code == "OVERLOAD_LIMIT"


@responses.activate
def test_portal_moved_is_fatal_and_names_the_new_address_redacted(client: Bitrix24Client) -> None:
    responses.post(url("crm.deal.list"), status=302,
                   headers={"Location": f"https://hse-new.bitrix24.ru/rest/17/{SECRET}/crm.deal.list.json"})
    with pytest.raises(FatalError) as info:
        client.call("crm.deal.list")
    message = str(info.value)
    assert "https://hse-new.bitrix24.ru/rest/17/***/crm.deal.list.json" in message
    assert "BITRIX24_WEBHOOK_URL" in message and "moved" in message
    assert SECRET not in message and info.value.code == "PORTAL_MOVED"
    assert len(responses.calls) == 1  # not followed


# --------------------------------------------------------------------------- secrets

@responses.activate
def test_webhook_secret_never_in_error_message(clock: FakeClock, spy_session: SpySession, log_lines) -> None:
    client = Bitrix24Client(HOOK, session=spy_session, clock=clock, sleep=clock.sleep, rng=MaxJitter(),
                            max_attempts=2)
    leaky = f"HTTPSConnectionPool(host='hse.bitrix24.ru'): Max retries exceeded with url: /rest/17/{SECRET}/x.json"
    scenarios = [
        ("crm.a", dict(body=requests.exceptions.ReadTimeout(leaky)), AmbiguousWriteError),
        ("crm.b", dict(body=requests.ConnectionError(leaky)), AmbiguousWriteError),
        ("crm.c", dict(status=503, json={"error": "QUERY_LIMIT_EXCEEDED", "error_description": leaky}),
         RetriableError),
        ("crm.d", dict(status=401, json={"error": "INVALID_CREDENTIALS", "error_description": leaky}), FatalError),
        ("crm.e", dict(status=400, json={"error": "", "error_description": leaky}), CommandError),
        ("crm.f", dict(status=502, body=f"<html>upstream {HOOK} failed</html>"), AmbiguousWriteError),
        ("crm.g", dict(status=404, body=f"<html>no {HOOK}</html>"), FatalError),
    ]
    for method, reply, expected in scenarios:
        responses.post(url(method), **reply)
        with pytest.raises(expected) as info:
            client.call(method, idempotent=False)
        exc = info.value
        assert SECRET not in str(exc) and SECRET not in repr(exc), method
        assert SECRET not in getattr(exc, "description", ""), method
        assert exc.__cause__ is None and exc.__context__ is None, method  # no chained requests error
    assert SECRET not in repr(client)
    assert log_lines and not any(SECRET in line for line in log_lines)

# --------------------------------------------------------------------------- real sockets on loopback

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_real_refused_connection_is_safe_to_retry() -> None:
    port = _free_port()  # closed again: nothing listens there
    with pytest.raises(requests.ConnectionError) as info:
        requests.post(f"http://127.0.0.1:{port}/rest/1/{SECRET}/crm.deal.add.json", timeout=2)
    failure = classify(info.value)
    assert failure.action is Action.RETRY and failure.code == "CONNECTION_REFUSED"
    assert SECRET not in failure.reason


def test_real_connection_dropped_after_request_is_ambiguous(clock: FakeClock) -> None:
    """A server that reads the whole request, then closes without answering (it may have run it)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    port = server.getsockname()[1]
    received: list[bytes] = []

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(65536)
            received.append(data)
        server.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    client = Bitrix24Client(f"http://127.0.0.1:{port}/rest/1/{SECRET}/", clock=clock, sleep=clock.sleep,
                            timeout=5)
    with pytest.raises(AmbiguousWriteError) as info:
        client.call("crm.deal.add", {"fields": {"TITLE": "x"}}, idempotent=False)
    thread.join(timeout=5)
    assert received and received[0].startswith(b"POST /rest/1/")
    assert info.value.code == "CONNECTION_RESET"
    assert SECRET not in str(info.value)
