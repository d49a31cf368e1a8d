"""Fault injection of the Bitrix24 emulator (checklist item 26 and the FaultInjector kinds)."""
from __future__ import annotations

import time

import pytest
import requests

from sandbox.bitrix import FAULT_KINDS, BitrixEmulator
from sandbox.faults import FaultInjector


@pytest.fixture
def portal():
    with BitrixEmulator(rate_limit=None, slow_s=0.3) as emulator:
        yield emulator


def add_deal(portal, title="d", **kwargs):
    return requests.post(portal.webhook_url + "crm.deal.add", json={"fields": {"TITLE": title}}, **kwargs)


@pytest.mark.parametrize("kind, status, body", [
    ("http_500", 500, {"error": "INTERNAL_SERVER_ERROR", "error_description": "Internal server error"}),
    ("http_503", 503, {"error": "QUERY_LIMIT_EXCEEDED", "error_description": "Too many requests"}),
    ("overload", 503, {"error": "OVERLOAD_LIMIT", "error_description": "REST API is blocked due to overload"}),
    ("invalid_credentials", 401, {"error": "INVALID_CREDENTIALS", "error_description": "Invalid request credentials"}),
])
def test_json_error_faults_answer_and_apply_nothing(portal, kind, status, body):
    portal.admin.set_faults(script=[{"kind": kind}])
    reply = add_deal(portal)
    assert (reply.status_code, reply.json()) == (status, body)
    assert portal.admin.deals() == []
    assert add_deal(portal).status_code == 200, "a script entry fires once"


@pytest.mark.parametrize("kind, status", [("html_502", 502), ("html_504", 504)])
def test_html_gateway_pages_are_not_json(portal, kind, status):
    portal.admin.set_faults(script=[{"kind": kind, "method": "batch"}])
    reply = requests.post(portal.webhook_url + "batch", json={"cmd": {"a": "crm.deal.add?fields[TITLE]=x"}})
    assert reply.status_code == status
    assert reply.headers["Content-Type"].startswith("text/html")
    assert b"<html>" in reply.content
    with pytest.raises(ValueError):
        reply.json()
    assert portal.admin.deals() == []


def test_drop_before_resets_the_connection_and_applies_nothing(portal):
    portal.admin.set_faults(script=[{"kind": "drop_before"}])
    with pytest.raises(requests.ConnectionError):
        add_deal(portal)
    assert portal.admin.deals() == []


def test_drop_after_applies_write_then_closes(portal):
    portal.admin.set_faults(script=[{"kind": "drop_after", "method": "crm.deal.add"}])
    with pytest.raises(requests.ConnectionError):
        add_deal(portal, "written but unheard")
    assert [d["TITLE"] for d in portal.admin.deals()] == ["written but unheard"]


def test_drop_after_a_batch_applies_every_command(portal):
    portal.admin.set_faults(script=[{"kind": "drop_after", "method": "batch"}])
    with pytest.raises(requests.ConnectionError):
        requests.post(portal.webhook_url + "batch", json={"cmd": {f"c{i}": f"crm.deal.add?fields[TITLE]={i}"
                                                                  for i in range(5)}})
    assert len(portal.admin.deals()) == 5


def test_slow_answer_times_the_client_out_but_the_write_is_applied(portal):
    portal.admin.set_faults(script=[{"kind": "slow"}])
    started = time.perf_counter()
    with pytest.raises(requests.ReadTimeout):
        add_deal(portal, "slow", timeout=0.1)
    assert time.perf_counter() - started < 0.3
    assert [d["TITLE"] for d in portal.admin.deals()] == ["slow"]


def test_slow_duration_comes_from_the_script_entry(portal):
    portal.admin.set_faults(script=[{"kind": "slow", "slow_s": 0.15}])
    started = time.perf_counter()
    assert requests.get(portal.webhook_url + "server.time").status_code == 200
    assert 0.15 <= time.perf_counter() - started < 0.3


def test_batch_command_error_fails_one_command_and_runs_the_rest(portal):
    portal.admin.set_faults(script=[{"kind": "batch_command_error", "command": "c2"}])
    cmd = {f"c{i}": f"crm.deal.add?fields[TITLE]=t{i}" for i in range(5)}
    result = requests.post(portal.webhook_url + "batch", json={"cmd": cmd}).json()["result"]
    assert result["result_error"] == {"c2": {"error": "INTERNAL_SERVER_ERROR",
                                             "error_description": "Internal server error"}}
    assert list(result["result"]) == ["c0", "c1", "c3", "c4"]
    assert [d["TITLE"] for d in portal.admin.deals()] == ["t0", "t1", "t3", "t4"]


def test_batch_command_error_picks_a_seeded_random_command():
    def failed_command(seed: int) -> str:
        faults = FaultInjector(seed=seed, rates={"batch_command_error": 1.0})
        with BitrixEmulator(rate_limit=None, faults=faults) as emulator:
            cmd = {f"c{i}": "server.time" for i in range(20)}
            result = requests.post(emulator.webhook_url + "batch", json={"cmd": cmd}).json()["result"]
        (name,) = result["result_error"]
        assert len(result["result"]) == 19
        return name

    assert failed_command(11) == failed_command(11)


def test_seeded_fault_rates_replay_the_same_sequence():
    def statuses(seed: int) -> list[int]:
        faults = FaultInjector(seed=seed, rates={"http_500": 0.3, "overload": 0.2})
        with BitrixEmulator(rate_limit=None, faults=faults) as emulator, requests.Session() as http:
            return [http.get(emulator.webhook_url + "server.time").status_code for _ in range(30)]

    first = statuses(3)
    assert first == statuses(3)
    assert {200, 500, 503} <= set(first)


def test_scripted_fault_targets_one_method(portal):
    portal.admin.set_faults(script=[{"kind": "http_500", "method": "crm.deal.add", "times": 2}])
    assert requests.get(portal.webhook_url + "server.time").status_code == 200
    assert [add_deal(portal).status_code for _ in range(3)] == [500, 500, 200]
    assert portal.admin.counters()["faults_fired"] == {"http_500": 2}


def test_redirect_302_points_to_the_new_portal(portal):
    portal.admin.set_faults(script=[{"kind": "redirect_302", "location": "https://new.example.bitrix24.ru/rest/1/s/"}])
    reply = requests.get(portal.webhook_url + "profile", allow_redirects=False)
    assert reply.status_code == 302
    assert reply.headers["Location"] == "https://new.example.bitrix24.ru/rest/1/s/"


def test_faults_over_http_admin(portal):
    reply = requests.post(f"{portal.base_url}/_admin/faults", json={"script": [{"kind": "overload"}], "seed": 5})
    snapshot = reply.json()
    assert snapshot["seed"] == 5 and snapshot["script"][0]["kind"] == "overload"
    assert set(snapshot["kinds"]) == set(FAULT_KINDS)
    assert requests.get(portal.webhook_url + "server.time").json()["error"] == "OVERLOAD_LIMIT"


def test_latency_per_request_and_per_batch_command():
    with BitrixEmulator(rate_limit=None, latency_ms=60, command_latency_ms=30) as emulator:
        started = time.perf_counter()
        requests.get(emulator.webhook_url + "server.time")
        single = time.perf_counter() - started
        started = time.perf_counter()
        requests.post(emulator.webhook_url + "batch", json={"cmd": {f"c{i}": "server.time" for i in range(4)}})
        batched = time.perf_counter() - started
    assert single >= 0.06
    assert batched >= 0.06 + 4 * 0.03
