"""Bitrix24Client: configuration, the exact requests it sends, batch outcomes, paging, counters.

HTTP is faked with ``responses``; time never passes for real (``FakeClock``).
"""
from __future__ import annotations

import json
import threading

import pytest
import responses
from pydantic import SecretStr

from sync.clients.bitrix24 import (
    DEFAULT_TIMEOUT_S,
    Bitrix24Client,
    CallResult,
    parse_batch_reply,
)
from sync.clients.ratelimit import LeakyBucket
from core.errors import AmbiguousWriteError, CommandError, ConfigError, UpstreamError
from core.redact import redact
from tests.clients.b24_fakes import HOOK, OK_TIME, SECRET, ok, url
from tests.clients.conftest import FakeClock, MaxJitter, SpySession, load_fixture


@pytest.fixture
def client(clock: FakeClock, spy_session: SpySession) -> Bitrix24Client:
    return Bitrix24Client(HOOK, session=spy_session, clock=clock, sleep=clock.sleep, rng=MaxJitter())


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
