"""What cannot be stored is refused with JSON and a reason, and nothing of it is stored;
who may deliver (token, networks, trusted proxies)."""
from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from storage.inbox import InboxAnswerRow, InboxPollRow, InboxStore, inbox_stats
from tests.intake.conftest import sample_answers, sample_polls

GOOD = sample_answers()[0]
TOKEN = "s3cr3t-token-for-tests_0123456789"


def with_header(**changes):
    body = json.loads(json.dumps(GOOD))
    for key, value in changes.items():
        if value is ...:
            del body["header_data"][key]
        else:
            body["header_data"][key] = value
    return json.dumps(body).encode()


MALFORMED = {
    "empty body": (b"", 400, "empty_body"),
    "whitespace only": (b"  \n\t ", 400, "empty_body"),
    "not utf-8": (b'{"header_data": {"poll_id": 1, "answer_id": 2}, "data": {"x": "\xff\xfe"}}', 400, "not_utf8"),
    "cp1251 text": ('{"data": {"имя": "Мария"}}'.encode("cp1251"), 400, "not_utf8"),
    "truncated json": (json.dumps(GOOD).encode()[:-7], 400, "invalid_json"),
    "single quotes": (b"{'header_data': {}}", 400, "invalid_json"),
    "NaN": (b'{"header_data": {"poll_id": NaN, "answer_id": 1}}', 400, "invalid_json"),
    "huge float": (b'{"header_data": {"poll_id": 1, "answer_id": 2}, "data": {"x": 1e999}}', 400, "invalid_json"),
    "json array": (b"[1, 2, 3]", 400, "not_an_object"),
    "json string": (b'"postAnswer"', 400, "not_an_object"),
    "json null": (b"null", 400, "not_an_object"),
    "deep nesting": (b"[" * 100_000 + b"]" * 100_000, 400, "too_deep"),
    "no header_data": (json.dumps({"data": GOOD["data"]}).encode(), 400, "missing_field"),
    "header_data a list": (json.dumps({"header_data": [1, 2], "data": {}}).encode(), 400, "not_an_object"),
    "header_data a string": (json.dumps({"header_data": "430131691"}).encode(), 400, "not_an_object"),
    "no answer_id": (with_header(answer_id=...), 400, "missing_field"),
    "no poll_id": (with_header(poll_id=...), 400, "missing_field"),
    "answer_id a string": (with_header(answer_id="814573981"), 400, "not_an_integer"),
    "answer_id a float": (with_header(answer_id=814573981.5), 400, "not_an_integer"),
    "answer_id a boolean": (with_header(answer_id=True), 400, "not_an_integer"),
    "poll_id an object": (with_header(poll_id={"id": 1}), 400, "not_an_integer"),
    "poll_id null": (with_header(poll_id=None), 400, "not_an_integer"),
    "answer_id negative": (with_header(answer_id=-5), 400, "id_out_of_range"),
    "answer_id beyond 2^53": (with_header(answer_id=2 ** 64), 400, "id_out_of_range"),
    "2 MiB": (json.dumps({**GOOD, "data": {"blob": "x" * (2 * 1024 * 1024)}}).encode(), 413, "body_too_large"),
}


def stored_count(engine) -> int:
    with engine.connect() as conn:
        return (conn.execute(select(func.count()).select_from(InboxAnswerRow.__table__)).scalar()
                + conn.execute(select(func.count()).select_from(InboxPollRow.__table__)).scalar())


@pytest.mark.parametrize("name", list(MALFORMED))
def test_a_packet_that_cannot_be_stored_is_refused_with_a_reason_and_nothing_is_stored(name, intake, engine):
    content, status, reason = MALFORMED[name]
    reply = intake.post("postAnswer", content=content)
    assert reply.status_code == status
    body = reply.json()
    assert body["is_successful"] is False and body["status"] == "error" and body["reason"] == reason
    assert body["message"] and "Traceback" not in reply.text and "File \"" not in reply.text
    assert stored_count(engine) == 0
    [refusal] = InboxStore(engine).refusals()
    assert (refusal.endpoint, refusal.reason) == ("postAnswer", reason)
    assert refusal.size == len(content) or (status == 413 and refusal.size >= 1024 * 1024)


def test_refusals_name_the_field_and_echo_the_ids_that_are_ids(intake):
    reply = intake.post("postAnswer", content=with_header(answer_id="abc")).json()
    assert reply["message"] == 'Поле header_data.answer_id должно быть целым числом, получено строка "abc"'
    assert reply["poll_id"] == 430131691 and reply["answer_id"] is None
    missing = intake.post("postAnswer", content=json.dumps({"data": {}}).encode()).json()
    assert missing["message"] == "В пакете нет обязательного поля header_data"
    big = intake.post("postAnswer", content=MALFORMED["2 MiB"][0]).json()
    assert "1048576" in big["message"] and "INTAKE_MAX_BODY" in big["description"]


@pytest.mark.parametrize("body, reason", [
    ({"poll_name": "no id"}, "missing_field"),
    ({"poll_id": "430131691"}, "not_an_integer"),
    ({"poll_id": None, "express_poll_id": "x"}, "not_an_integer"),
    ({"poll_id": 0}, "id_out_of_range"),
])
def test_a_poll_registration_without_a_usable_id_is_refused(body, reason, intake, engine):
    reply = intake.post("postPoll", body)
    assert reply.status_code == 400 and reply.json()["reason"] == reason and reply.json()["is_successful"] is False
    assert stored_count(engine) == 0


def test_the_body_limit_is_a_setting_and_a_chunked_body_is_cut_at_it(make_intake, engine):
    small = make_intake(intake_max_body=2048)

    def chunks():
        for _ in range(10):
            yield b" " * 1024  # no Content-Length: the limit must hold while reading
    reply = small.client.post(f"{small.base}/postAnswer", content=chunks(),
                              headers={"Content-Type": "application/json"})
    assert reply.status_code == 413 and reply.json()["reason"] == "body_too_large"
    assert small.post("postAnswer", GOOD).json()["is_successful"] is True  # ~900 bytes: under the limit


def test_wrong_method_and_unknown_paths_are_answered_in_json(intake):
    get = intake.client.get(f"{intake.base}/postAnswer")
    assert get.status_code == 405 and get.json()["is_successful"] is False
    nowhere = intake.client.post("/elsewhere", content=b"{}")
    assert nowhere.status_code == 404 and nowhere.json()["is_successful"] is False


def test_with_a_token_only_the_token_path_delivers(make_intake, engine, logs):
    intake = make_intake(intake_token=TOKEN)
    base = intake.settings.intake_base_path
    assert intake.client.post(f"{base}/{TOKEN}/postAnswer", json=GOOD).json()["is_successful"] is True
    for path in (f"{base}/postAnswer", f"{base}/wrong-token-0123456789/postAnswer", f"{base}/{TOKEN}x/postAnswer",
                 f"{base}/{TOKEN}/{TOKEN}/postAnswer", f"/{TOKEN}/postAnswer", f"{base}/{TOKEN}/postanswer"):
        reply = intake.client.post(path, json=GOOD)
        assert reply.status_code == 404, path
        assert reply.json() == intake.client.post("/nothing-here", json=GOOD).json()  # nothing tells them apart
    assert intake.client.get(f"{base}/{TOKEN}/health").json()["status"] == "ok"
    assert intake.client.get(f"{base}/health").status_code == 404
    assert stored_count(engine) == 1
    reasons = [r.reason for r in InboxStore(engine).refusals()]
    assert reasons.count("wrong_token") == 2 and "unknown_path" in reasons
    docs = intake.client.get("/openapi.json").text
    assert "{token}" in docs and TOKEN not in docs
    assert logs and not any(TOKEN in message for _, message in logs)
    assert not any("neither INTAKE_TOKEN" in message for _, message in logs)


def test_without_token_or_networks_a_warning_is_logged_at_start(make_intake, logs):
    make_intake()
    assert any(level == "WARNING" and "neither INTAKE_TOKEN nor INTAKE_ALLOWED_NETWORKS" in message
               for level, message in logs)


def test_only_allowed_networks_may_deliver(make_intake, engine):
    # TestClient's peer is "testclient", which is no address: like an address outside every network.
    closed = make_intake(intake_allowed_networks="10.0.0.0/8")
    reply = closed.post("postAnswer", GOOD)
    assert reply.status_code == 403 and reply.json()["reason"] == "forbidden_network"
    assert "INTAKE_ALLOWED_NETWORKS" in reply.json()["description"]
    assert closed.client.get("/docs").status_code == 403
    assert stored_count(engine) == 0
    assert [r.reason for r in InboxStore(engine).refusals()] == ["forbidden_network"]


@pytest.mark.parametrize("peer, forwarded, allowed", [
    ("10.1.2.3", None, True),                          # inside the network
    ("192.0.2.1", None, False),                        # outside
    ("192.0.2.1", "10.1.2.3", False),                  # X-Forwarded-For from an untrusted peer is ignored
    ("172.16.0.5", "10.1.2.3", True),                  # a trusted proxy vouches for 10.1.2.3
    ("172.16.0.5", "192.0.2.9", False),                # ... and for an outsider
    ("172.16.0.5", "10.1.2.3, 192.0.2.9", False),      # the nearest untrusted hop counts, not the claim on the left
    ("172.16.0.5", "192.0.2.9, 10.1.2.3", True),
    ("172.16.0.5", "10.1.2.3, 172.16.0.6", True),      # trusted hops are skipped
    ("::ffff:10.1.2.3", None, True),                   # IPv4 seen through an IPv6 socket
])
def test_the_sender_address_and_trusted_proxies(peer, forwarded, allowed, make_intake):
    from starlette.requests import Request

    intake = make_intake(intake_allowed_networks="10.0.0.0/8", intake_trusted_proxies="172.16.0.0/12")
    gate = intake.app.state.intake
    headers = [(b"x-forwarded-for", forwarded.encode())] if forwarded else []
    request = Request({"type": "http", "client": (peer, 5000), "headers": headers, "method": "POST", "path": "/"})
    assert gate.allowed_address(gate.client_address(request)) is allowed
