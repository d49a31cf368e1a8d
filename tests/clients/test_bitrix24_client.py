"""Bitrix24Client: exact requests, the failure table, retries and the sleeps they ask for, batch outcomes.

HTTP is faked with ``responses``; two tests use a real loopback socket to check that
real connection failures (refused, dropped after sending) land in the right class.
Time never passes for real: ``FakeClock`` advances only when slept on.
"""
from __future__ import annotations

import json
import random
import socket
import threading

import pytest
import requests
import responses
from pydantic import SecretStr
from urllib3.exceptions import MaxRetryError, NewConnectionError, ProtocolError

from sync.clients.bitrix24 import (
    Action,
    DEFAULT_TIMEOUT_S,
    Bitrix24Client,
    CallResult,
    Reply,
    classify,
    command_disposition,
    parse_batch_reply,
)
from sync.clients.common import NOT_JSON
from sync.clients.ratelimit import LeakyBucket
from core.errors import AmbiguousWriteError, CommandError, ConfigError, FatalError, RetriableError, UpstreamError
from core.redact import redact
from tests.clients.conftest import FIXTURES, FakeClock, MaxJitter, SpySession, load_fixture

SECRET = "k2ix9lshu8v4x2zq"
HOOK = f"https://hse.bitrix24.ru/rest/17/{SECRET}/"
OK_TIME = {"start": 1.0, "finish": 1.1, "duration": 0.1, "processing": 0.1,
           "date_start": "2024-10-23T18:18:09+03:00", "date_finish": "2024-10-23T18:18:09+03:00"}


def url(method: str) -> str:
    return f"{HOOK}{method}.json"


def ok(result, **extra) -> dict:
    return {"result": result, "time": OK_TIME, **extra}


QLE = {"error": "QUERY_LIMIT_EXCEEDED", "error_description": "Too many requests"}


@pytest.fixture
def client(clock: FakeClock, spy_session: SpySession) -> Bitrix24Client:
    return Bitrix24Client(HOOK, session=spy_session, clock=clock, sleep=clock.sleep, rng=MaxJitter())


def refused() -> requests.ConnectionError:
    """What requests raises when nothing listens: nothing was sent."""
    reason = NewConnectionError(None, "Failed to establish a new connection: [Errno 111] Connection refused")
    return requests.ConnectionError(MaxRetryError(None, f"/rest/17/{SECRET}/crm.deal.add.json", reason))


def dropped() -> requests.ConnectionError:
    """What requests raises when the server closes the connection after the request was sent."""
    return requests.ConnectionError(ProtocolError("Connection aborted.",
                                                  ConnectionResetError(104, "Connection reset by peer")))


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


# --------------------------------------------------------------------------- configuration

@pytest.mark.parametrize("hook", [
    f"http://hse.bitrix24.ru/rest/17/{SECRET}/",
    f"http://10.0.0.5:8080/rest/17/{SECRET}/",
    f"http://bitrix.internal/rest/17/{SECRET}",
])
def test_plain_http_to_remote_host_is_refused(hook: str) -> None:
    with pytest.raises(ConfigError) as info:
        Bitrix24Client(hook)
    message = str(info.value)
    assert "BITRIX24_WEBHOOK_URL" in message
    assert "plain http" in message and "https://" in message and "loopback" in message
    assert SECRET not in message


@pytest.mark.parametrize("hook", [
    f"http://127.0.0.1:8081/rest/1/{SECRET}/",
    f"http://127.5.6.7/rest/1/{SECRET}",
    f"http://localhost:9000/rest/1/{SECRET}/",
    f"http://[::1]:9000/rest/1/{SECRET}/",
])
def test_plain_http_to_loopback_is_allowed(hook: str) -> None:
    assert Bitrix24Client(hook).url.endswith("/rest/1/***/")


def test_plain_http_to_remote_host_can_be_allowed_explicitly() -> None:
    client = Bitrix24Client(f"http://bitrix.internal/rest/17/{SECRET}/", allow_insecure_http=True)
    assert client.url == "http://bitrix.internal/rest/17/***/"


@pytest.mark.parametrize("hook, says", [
    ("", "empty"),
    (f"ftp://hse.bitrix24.ru/rest/17/{SECRET}/", "scheme"),
    (f"https:///rest/17/{SECRET}/", "host"),
    (f"https://hse.bitrix24.ru/rest/abc/{SECRET}/", "numeric user id"),
    (f"https://hse.bitrix24.ru/rest/17/{SECRET}/crm.deal.add.json", "method name"),
    (f"https://hse.bitrix24.ru/rest/17/{SECRET}/?auth=1", "query"),
    (f"https://admin:{SECRET}@hse.bitrix24.ru/rest/17/{SECRET}/", "user:password"),
    (f"https://hse.bitrix24.ru/{SECRET}/", "path"),
    (f"https://hse.bitrix24.ru:99999/rest/17/{SECRET}/", "not a valid URL"),
])
def test_malformed_webhook_url_is_config_error_that_hides_the_secret(hook: str, says: str) -> None:
    with pytest.raises(ConfigError) as info:
        Bitrix24Client(hook)
    message = str(info.value)
    assert "BITRIX24_WEBHOOK_URL" in message and says in message
    assert SECRET not in message


def test_secretstr_url_is_accepted_and_secret_registered() -> None:
    client = Bitrix24Client(SecretStr(f"https://p.bitrix24.ru/rest/3/zz9Regist3red00/"))
    assert redact("leaked zz9Regist3red00 here") == "leaked *** here"
    assert repr(client) == ("Bitrix24Client(url='https://p.bitrix24.ru/rest/3/***/', timeout=75.0, "
                            "bucket=LeakyBucket(rate_per_s=2.0, burst=50))")
    assert "zz9Regist3red00" not in str(vars(client))


# --------------------------------------------------------------------------- call

@responses.activate
def test_call_posts_json_with_headers_timeout_and_no_redirects(client: Bitrix24Client,
                                                               spy_session: SpySession) -> None:
    responses.post(url("crm.deal.list"), json=ok([{"ID": "1"}], total=1))
    result = client.call("crm.deal.list", {"filter": {"ORIGINATOR_ID": "survey-sync"}, "select": ["ID"]})

    assert result == CallResult(result=[{"ID": "1"}], total=1, next=None, time=OK_TIME)
    request = responses.calls[0].request
    assert request.method == "POST"
    assert json.loads(request.body) == {"filter": {"ORIGINATOR_ID": "survey-sync"}, "select": ["ID"]}
    assert request.headers["Content-Type"].startswith("application/json")
    assert request.headers["Accept"] == "application/json"
    assert request.headers["User-Agent"].startswith("survey-bitrix24-sync/")
    sent = spy_session.sent[0]
    # The default timeout outlasts the portal's 60 s cut-off: a slow success is still read as one.
    assert sent["timeout"] == DEFAULT_TIMEOUT_S == 75.0 and sent["allow_redirects"] is False


@responses.activate
def test_unicode_params_are_sent_as_utf8_json(client: Bitrix24Client) -> None:
    responses.post(url("crm.contact.add"), json=ok(501))
    assert client.call("crm.contact.add", {"fields": {"NAME": "Иван 😀"}}, idempotent=False).result == 501
    assert json.loads(responses.calls[0].request.body.decode("utf-8")) == {"fields": {"NAME": "Иван 😀"}}


@pytest.mark.parametrize("method", ["crm.deal.add/../x", "", "crm deal", "../profile", "a?b=c"])
def test_method_names_that_could_change_the_url_are_refused(client: Bitrix24Client, method: str) -> None:
    with pytest.raises(ValueError):
        client.call(method)


@responses.activate
def test_other_error_envelope_on_call_raises_command_error(client: Bitrix24Client, clock: FakeClock) -> None:
    responses.post(url("crm.deal.get"), status=400, json={"error": "", "error_description": "Not found"})
    with pytest.raises(CommandError) as info:
        client.call("crm.deal.get", {"id": 999})
    assert info.value.code == "" and info.value.description == "Not found" and info.value.status == 400
    assert "crm.deal.get" in str(info.value) and "Not found" in str(info.value)
    assert len(responses.calls) == 1 and clock.sleeps == []


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


# --------------------------------------------------------------------------- batch

def _reply_for(fixture: dict) -> dict:
    return fixture["reply"]


@responses.activate
def test_batch_reply_becomes_one_outcome_per_command(client: Bitrix24Client) -> None:
    fixture = load_fixture("batch_mixed_success_and_errors.json")
    responses.post(url("batch"), json=_reply_for(fixture))
    commands = {name: (method, {"id": 1}) for name, method in fixture["commands"].items()}

    result = client.batch(commands, idempotent=False)  # no exception although 3 commands failed

    assert list(result.outcomes) == list(fixture["commands"])
    assert result["contact_add"].ok and result["contact_add"].result == 58943
    assert result["contact_add"].time["operating_reset_at"] == 1729697289
    assert result["deal_update_77"].ok and result["deal_update_77"].result is True
    page = result["deals_page"]
    assert page.ok and len(page.result) == 2 and (page.total, page.next) == (120, 50)
    missing = result["deal_get_99"]
    assert (missing.ok, missing.error, missing.error_description, missing.disposition) == \
        (False, "", "Not found", "invalid")
    scope = result["user_find"]
    assert (scope.error, scope.disposition) == ("insufficient_scope", "fatal")
    assert "'user' scope" in scope.error_description
    limited = result["deal_add_814573981_100"]
    assert (limited.error, limited.disposition, limited.retriable) == ("OPERATION_TIME_LIMIT", "retry", True)
    assert not result.ok and [o.name for o in result.failed] == ["deal_get_99", "user_find",
                                                                   "deal_add_814573981_100"]
    stats = client.stats
    assert (stats.requests, stats.by_method, stats.batch_commands) == (1, {"batch": 1}, 6)
    assert stats.errors_by_code == {"(no code)": 1, "insufficient_scope": 1, "OPERATION_TIME_LIMIT": 1}


@responses.activate
def test_batch_encodes_commands_with_http_build_query_and_halt(client: Bitrix24Client) -> None:
    responses.post(url("batch"), json=ok({"result": {"c_1": 1, "d_1": 2}, "result_error": [], "result_total": [],
                                          "result_next": [], "result_time": []}))
    client.batch({"c_1": ("crm.contact.add", {"fields": {"NAME": "Анна", "PHONE": [{"VALUE": "+7 903 123",
                                                                                     "VALUE_TYPE": "WORK"}],
                                                         "OPENED": True, "COMMENTS": None}}),
                  "d_1": ("crm.deal.add", {"fields": {"CONTACT_ID": "$result[c_1]", "TITLE": "A & B #1"}})},
                 halt=True, idempotent=False)
    body = json.loads(responses.calls[0].request.body)
    assert body == {"halt": 1, "cmd": {
        "c_1": "crm.contact.add?fields[NAME]=%D0%90%D0%BD%D0%BD%D0%B0&fields[PHONE][0][VALUE]=%2B7%20903%20123"
               "&fields[PHONE][0][VALUE_TYPE]=WORK&fields[OPENED]=Y",
        "d_1": "crm.deal.add?fields[CONTACT_ID]=$result[c_1]&fields[TITLE]=A%20%26%20B%20%231",
    }}


@responses.activate
def test_halted_commands_are_not_executed(client: Bitrix24Client) -> None:
    fixture = load_fixture("batch_halted.json")
    responses.post(url("batch"), json=_reply_for(fixture))
    result = client.batch({n: (m, {"fields": {"X": 1}}) for n, m in fixture["commands"].items()}, halt=True,
                          idempotent=False)
    assert result["contact_add"].ok and result["contact_add"].result == 501
    assert result["deal_add_a"].error_description == "Parameter 'fields' must be array."
    for name in ("deal_add_b", "deal_add_c"):
        outcome = result[name]
        assert (outcome.ok, outcome.error, outcome.disposition, outcome.retriable) == \
            (False, "NOT_EXECUTED", "not_executed", True)
        assert "halt" in outcome.error_description
    assert json.loads(responses.calls[0].request.body)["halt"] == 1


def test_result_error_as_list_is_mapped_to_names() -> None:
    """The real capture: result_error is a JSON list because the failing commands were named 0 and 1."""
    fixture = load_fixture("batch_result_error_as_list.json")
    outcomes = parse_batch_reply(fixture["commands"], fixture["reply"]["result"])
    assert outcomes["0"].error_description == "ID is not defined or invalid."
    assert outcomes["1"].error_description == "Not found"
    assert outcomes["35943"].ok and outcomes["35943"].result == {"ID": "35943"}
    assert outcomes["35943"].time["operating"] == pytest.approx(1.831031084060669)


def test_list_shaped_errors_with_named_commands_follow_execution_order() -> None:
    """Defensive: should a list reach us with non-numeric names, errors belong to the commands
    missing from ``result``, in the order they ran."""
    reply = {"result": {"lead_35943": {"ID": "35943"}},
             "result_error": [{"error": "", "error_description": "first"}, {"error": "", "error_description": "second"}],
             "result_total": [], "result_next": [], "result_time": []}
    commands = {"lead_0": "crm.lead.get", "lead_35943": "crm.lead.get", "lead_1": "crm.lead.get"}
    outcomes = parse_batch_reply(commands, reply)
    assert [(n, o.ok, o.error_description) for n, o in outcomes.items()] == [
        ("lead_0", False, "first"), ("lead_35943", True, None), ("lead_1", False, "second")]


def test_every_command_failed_with_list_shaped_errors() -> None:
    outcomes = parse_batch_reply({"a_1": "crm.deal.get", "a_2": "crm.deal.get"},
                                 {"result": [], "result_error": [{"error": "", "error_description": "Not found"},
                                                                 {"error": "ACCESS_DENIED", "error_description": ""}],
                                  "result_total": [], "result_next": [], "result_time": []})
    assert [(o.error, o.disposition) for o in outcomes.values()] == [("", "invalid"), ("ACCESS_DENIED", "fatal")]


def test_all_successful_list_shaped_result_maps_by_index() -> None:
    outcomes = parse_batch_reply({"0": "server.time", "1": "profile"},
                                 {"result": ["2025-10-20T09:15:02+03:00", {"ID": "1"}], "result_error": [],
                                  "result_total": [], "result_next": [], "result_time": []})
    assert outcomes["0"].result == "2025-10-20T09:15:02+03:00" and outcomes["1"].result == {"ID": "1"}


@responses.activate
def test_unreadable_batch_reply_on_write_is_ambiguous(client: Bitrix24Client) -> None:
    responses.post(url("batch"), json=ok("not the batch shape"))
    with pytest.raises(AmbiguousWriteError) as info:
        client.batch({"c_1": ("crm.contact.add", {})}, idempotent=False)
    assert "unreadable reply" in str(info.value)


@responses.activate
def test_unreadable_batch_reply_on_read_is_retried(client: Bitrix24Client, clock: FakeClock) -> None:
    responses.post(url("batch"), json=ok(["junk"]))
    responses.post(url("batch"), json=ok({"result": {"c_1": []}, "result_error": []}))
    assert client.batch({"c_1": ("crm.deal.list", {})}, idempotent=True)["c_1"].result == []
    assert clock.sleeps == [1.0]


@pytest.mark.parametrize("commands", [
    {"1": ("crm.deal.get", {})},
    {"12": ("crm.deal.get", {}), "c": ("crm.deal.get", {})},
    {"-3": ("crm.deal.get", {})},
    {"a b": ("crm.deal.get", {})},
    {"a[0]": ("crm.deal.get", {})},
    {f"c_{i}": ("crm.deal.get", {}) for i in range(51)},
    {},
    {"c": ("crm.deal.get?x=1", {})},
])
def test_numeric_bad_or_too_many_command_names_are_refused(client: Bitrix24Client, commands: dict) -> None:
    with pytest.raises(ValueError):
        client.batch(commands, idempotent=True)


@responses.activate
def test_names_with_separators_are_accepted(client: Bitrix24Client) -> None:
    names = ["pf_0~50", "da_814573981_100", "c:1", "x.y-z", "_private"]
    responses.post(url("batch"), json=ok({"result": {n: 1 for n in names}, "result_error": []}))
    assert client.batch({n: ("crm.item.list", {"start": 50}) for n in names}, idempotent=True).ok


@responses.activate
def test_fifty_commands_are_one_request_for_the_bucket(client: Bitrix24Client) -> None:
    names = [f"deal_814573981_{i}" for i in range(50)]
    responses.post(url("batch"), json=ok({"result": {n: i for i, n in enumerate(names)}, "result_error": []}))
    result = client.batch({n: ("crm.deal.add", {"fields": {"TITLE": n}}) for n in names}, idempotent=False)
    assert result.ok and len(result) == 50
    assert client.bucket.level == 1.0
    assert client.stats.requests == 1 and client.stats.batch_commands == 50


# --------------------------------------------------------------------------- list_all

@responses.activate
def test_list_all_pages_by_start_until_there_is_no_next(client: Bitrix24Client) -> None:
    rows = [{"ID": str(i)} for i in range(1, 121)]
    responses.post(url("crm.deal.list"), json=ok(rows[:50], total=120, next=50))
    responses.post(url("crm.deal.list"), json=ok(rows[50:100], total=120, next=100))
    responses.post(url("crm.deal.list"), json=ok(rows[100:], total=120))

    got = list(client.list_all("crm.deal.list", {"order": {"ID": "ASC"}, "select": ["ID"]}))

    assert got == rows
    starts = [json.loads(c.request.body)["start"] for c in responses.calls]
    assert starts == [0, 50, 100]
    assert json.loads(responses.calls[1].request.body) == {"order": {"ID": "ASC"}, "select": ["ID"], "start": 50}


@responses.activate
def test_list_all_reads_crm_item_list_rows_under_items(client: Bitrix24Client) -> None:
    responses.post(url("crm.item.list"), json=ok({"items": [{"id": 1}, {"id": 2}]}, total=3, next=50))
    responses.post(url("crm.item.list"), json=ok({"items": [{"id": 3}]}, total=3))
    assert [r["id"] for r in client.list_all("crm.item.list", {"entityTypeId": 1032})] == [1, 2, 3]


@responses.activate
def test_list_all_with_explicit_key(client: Bitrix24Client) -> None:
    responses.post(url("crm.type.list"), json=ok({"types": [{"id": 37}]}, total=1))
    assert list(client.list_all("crm.type.list", key="types")) == [{"id": 37}]


@responses.activate
def test_list_all_stops_when_next_does_not_advance(client: Bitrix24Client) -> None:
    responses.post(url("crm.deal.list"), json=ok([{"ID": "1"}], next=50))
    responses.post(url("crm.deal.list"), json=ok([{"ID": "2"}], next=50))
    with pytest.raises(UpstreamError, match="endless"):
        list(client.list_all("crm.deal.list"))


# --------------------------------------------------------------------------- stats, threads

@responses.activate
def test_stats_count_and_reset(client: Bitrix24Client) -> None:
    responses.post(url("server.time"), json=ok("now"))
    responses.post(url("profile"), json=ok({"ID": "1"}))
    client.call("server.time")
    client.call("profile")
    client.call("server.time")
    assert client.stats.by_method == {"server.time": 2, "profile": 1}
    client.reset_stats()
    assert client.stats.requests == 0 and client.stats.by_method == {}


@responses.activate
def test_concurrent_batches_share_the_bucket_and_counters(clock: FakeClock, spy_session: SpySession) -> None:
    slept: list[float] = []
    lock = threading.Lock()

    def record(seconds: float) -> None:
        with lock:
            slept.append(seconds)

    bucket = LeakyBucket(2.0, 4, clock=clock, sleep=record, safety_s=0)
    client = Bitrix24Client(HOOK, session=spy_session, clock=clock, sleep=record, bucket=bucket)
    responses.post(url("batch"), json=ok({"result": {"c": 1}, "result_error": []}))

    def worker() -> None:
        for _ in range(3):
            client.batch({"c": ("crm.deal.add", {})}, idempotent=False)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert client.stats.requests == 12 and client.stats.batch_commands == 12
    assert sorted(slept) == [0.5 * k for k in range(1, 9)]  # 4 free, then one slot each
    assert client.stats.waited_s == pytest.approx(sum(slept))


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
