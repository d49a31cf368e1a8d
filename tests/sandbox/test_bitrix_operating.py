"""Operating time charged per method, the server cut-off and the plan profiles of the Bitrix24
emulator (bitrix24-rest.md §3 and §10), as the benchmarks use them to play a real portal.

Time is a hand-moved clock, and the emulator's latencies "sleep" by moving it: nothing here
waits except the one test that checks the cut-off on the real clock.
"""
from __future__ import annotations

import pytest
import requests

from sandbox.bitrix import BitrixEmulator
from sandbox.bitrix.__main__ import build as build_from_command_line
from sandbox.bitrix.limits import DEFAULT_OPERATING_COSTS, OperatingCosts

OPERATING_BODY = {"error": "OPERATION_TIME_LIMIT",
                  "error_description": "Method is blocked due to operation time limit."}
TIME_KEYS = {"start", "finish", "duration", "processing", "date_start", "date_finish",
             "operating_reset_at", "operating"}


class Clock:
    """Unix seconds moved by hand; ``sleep`` moves it too, so latencies take no real time."""

    def __init__(self, now: float = 1_750_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    sleep = advance


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def http():
    with requests.Session() as session:
        yield session


def deal_batch(n: int, prefix: str = "d") -> dict:
    return {"cmd": {f"c{i}": f"crm.deal.add?fields[TITLE]={prefix}{i}" for i in range(n)}}


def titles(portal: BitrixEmulator) -> list[str]:
    return [d["TITLE"] for d in portal.admin.deals()]


# --- operating time charged per method -----------------------------------------------------

def test_each_batch_command_is_charged_its_own_methods_cost(clock, http):
    with BitrixEmulator(rate_limit=None, operating_costs=True, operating_default_cost_s=0.01, clock=clock) as portal:
        cmd = {"a1": "crm.deal.add?fields[TITLE]=x", "l1": "crm.deal.list", "a2": "crm.deal.add?fields[TITLE]=y",
               "t": "server.time", "a3": "crm.deal.add?fields[TITLE]=z"}
        body = http.post(portal.webhook_url + "batch", json={"cmd": cmd}).json()
        used = {m: portal.operating.used(m) for m in ("crm.deal.add", "crm.deal.list", "server.time", "batch")}
        charged = portal.admin.limit_counters()["operating_s_by_method"]
    times = body["result"]["result_time"]
    # Each command's time block shows its method's running total, not the batch's.
    assert [times[k]["operating"] for k in ("a1", "a2", "a3")] == pytest.approx([0.1, 0.2, 0.3])
    assert times["l1"]["operating"] == pytest.approx(0.05)
    assert used == pytest.approx({"crm.deal.add": 0.3, "crm.deal.list": 0.05, "server.time": 0.01, "batch": 0})
    assert charged == pytest.approx({"crm.deal.add": 0.3, "crm.deal.list": 0.05, "server.time": 0.01})


def test_a_custom_table_replaces_the_defaults_and_the_scale_multiplies_every_charge(clock, http):
    with BitrixEmulator(rate_limit=None, operating_costs={"CRM.DEAL.ADD": 2.0}, operating_default_cost_s=0.5,
                        operating_time_scale=10, clock=clock) as portal:
        deal = http.post(portal.webhook_url + "crm.deal.add", json={"fields": {"TITLE": "x"}}).json()
        listed = http.post(portal.webhook_url + "crm.deal.list", json={}).json()
    assert deal["time"]["operating"] == pytest.approx(20.0)
    assert listed["time"]["operating"] == pytest.approx(5.0), "outside the table: the default cost, not 0.05"


def test_without_a_table_a_call_is_charged_its_measured_time():
    costs = OperatingCosts(None, scale=3.0)
    assert costs.charge("crm.deal.add", 0.25) == pytest.approx(0.75)
    table = OperatingCosts.from_option(True)
    assert table.charge("lists.element.add", 9.0) == DEFAULT_OPERATING_COSTS["lists.element.add"] == 0.15
    assert table.charge("crm.timeline.comment.add", 9.0) == 0.05
    assert table.charge("no.such.method", 0.007) == 0.007


# --- the limit: 429 past the window, free again when it slides ----------------------------

def test_the_call_crossing_the_limit_completes_and_the_next_one_gets_429(clock, http):
    started = clock.now
    with BitrixEmulator(rate_limit=None, operating_limit_s=1.0, operating_costs={"crm.deal.add": 0.4},
                        clock=clock) as portal:
        replies = [http.post(portal.webhook_url + "crm.deal.add", json={"fields": {"TITLE": f"d{i}"}})
                   for i in range(4)]
        in_batch = http.post(portal.webhook_url + "batch",
                             json={"cmd": {"add": "crm.deal.add?fields[TITLE]=b", "list": "crm.deal.list"}}).json()
        other = http.post(portal.webhook_url + "crm.contact.add", json={"fields": {"NAME": "Ann"}})
        limit_counters = portal.admin.limit_counters()
        deals = titles(portal)
    assert [r.status_code for r in replies] == [200, 200, 200, 429]
    assert [r.json()["time"]["operating"] for r in replies[:3]] == pytest.approx([0.4, 0.8, 1.2])
    assert replies[2].json()["time"]["operating_reset_at"] == int(started) + 600
    assert replies[3].json() == OPERATING_BODY, "an error carries no time block"
    assert in_batch["result"]["result_error"] == {"add": OPERATING_BODY}
    assert list(in_batch["result"]["result"]) == ["list"]
    assert other.status_code == 200, "other methods keep working"
    assert deals == ["d0", "d1", "d2"], "the refused calls wrote nothing"
    assert limit_counters["operating_429"] == 1
    assert limit_counters["operating_blocked_commands"] == 1


def test_the_method_is_free_again_at_operating_reset_at(http):
    clock = Clock(1_750_000_000.7)  # a fraction of a second: operating_reset_at is whole seconds
    with BitrixEmulator(rate_limit=None, operating_limit_s=1.0, operating_costs={"crm.deal.add": 0.6},
                        clock=clock) as portal:
        add = lambda: http.post(portal.webhook_url + "crm.deal.add", json={"fields": {"TITLE": "x"}})  # noqa: E731
        first = add().json()
        clock.advance(90)               # a second one-minute bucket
        second = add().json()
        blocked_before = add().status_code
        clock.now = first["time"]["operating_reset_at"] - 1
        still_blocked = add().status_code
        clock.now = first["time"]["operating_reset_at"]
        freed = add()
    assert second["time"]["operating"] == pytest.approx(1.2)
    assert second["time"]["operating_reset_at"] == first["time"]["operating_reset_at"]
    assert (blocked_before, still_blocked) == (429, 429)
    assert freed.status_code == 200
    # Only the first minute dropped out: the second bucket (0.6) is still in the window.
    assert freed.json()["time"]["operating"] == pytest.approx(1.2)


# --- the time blocks ----------------------------------------------------------------------

def test_every_reply_reports_operating_time_and_its_reset(clock, http):
    with BitrixEmulator(rate_limit=None, operating_costs=True, clock=clock) as portal:
        single = http.post(portal.webhook_url + "crm.contact.add", json={"fields": {"NAME": "Ann"}}).json()
        batch = http.post(portal.webhook_url + "batch", json={"cmd": {
            "find": "crm.duplicate.findbycomm?type=EMAIL&values[0]=a@example.com",
            "add": "crm.contact.add?fields[NAME]=Bob"}}).json()
    assert set(single["time"]) == TIME_KEYS
    assert single["time"]["operating"] == pytest.approx(0.1)
    assert isinstance(single["time"]["operating_reset_at"], int)
    for name, expected in (("find", 0.05), ("add", 0.2)):
        block = batch["result"]["result_time"][name]
        assert set(block) == TIME_KEYS
        assert block["operating"] == pytest.approx(expected)
        assert block["operating_reset_at"] == int(clock.now) + 600
    # The outer batch is not a method with an operating budget (§4's reply has no such keys).
    assert "operating" not in batch["time"] and "operating_reset_at" not in batch["time"]


# --- the server cut-off -------------------------------------------------------------------

def test_a_batch_cut_off_mid_way_keeps_its_first_commands_writes(clock, http):
    with BitrixEmulator(rate_limit=None, command_latency_ms=100, request_timeout_s=0.25, clock=clock,
                        sleep=clock.sleep) as portal:
        reply = http.post(portal.webhook_url + "batch", json=deal_batch(10))
        deals = titles(portal)
        counters, limit_counters = portal.admin.counters(), portal.admin.limit_counters()
    assert reply.status_code == 504
    assert reply.headers["Content-Type"].startswith("text/html") and "Gateway Time-out" in reply.text
    # c0 ends at 0.1 s, c1 at 0.2 s, c2 starts at 0.2 s (not past 0.25) and ends at 0.3 s; c3 is not started.
    assert deals == ["d0", "d1", "d2"]
    assert counters["batch_commands"] == 3
    assert limit_counters["cut_off"] == 1
    assert limit_counters["operating_s_by_method"]["crm.deal.add"] > 0, "the commands that ran were charged"


def test_a_batch_within_the_time_out_is_answered_normally(clock, http):
    with BitrixEmulator(rate_limit=None, command_latency_ms=100, request_timeout_s=0.25, clock=clock,
                        sleep=clock.sleep) as portal:
        reply = http.post(portal.webhook_url + "batch", json=deal_batch(2))
        cut = portal.admin.limit_counters()["cut_off"]
    assert reply.status_code == 200 and sorted(reply.json()["result"]["result"]) == ["c0", "c1"]
    assert cut == 0


def test_a_single_call_cut_off_after_it_wrote_still_wrote(clock, http):
    with BitrixEmulator(rate_limit=None, latency_ms=300, request_timeout_s=0.2, clock=clock,
                        sleep=clock.sleep) as portal:
        reply = http.post(portal.webhook_url + "crm.deal.add", json={"fields": {"TITLE": "late"}})
        deals = titles(portal)
    assert reply.status_code == 504
    assert deals == ["late"], "the client sees a failure, the portal has the deal: an unknown outcome"


def test_the_cut_off_can_drop_the_connection_instead(clock, http):
    with BitrixEmulator(rate_limit=None, command_latency_ms=100, request_timeout_s=0.15, cutoff_reply="drop",
                        clock=clock, sleep=clock.sleep) as portal:
        with pytest.raises(requests.ConnectionError):
            http.post(portal.webhook_url + "batch", json=deal_batch(5))
        deals = titles(portal)
    assert deals == ["d0", "d1"]


def test_the_cut_off_on_the_real_clock():
    # The same rule with real time: a prefix of the batch is written, never all of it.
    with BitrixEmulator(rate_limit=None, command_latency_ms=40, request_timeout_s=0.1) as portal:
        reply = requests.post(portal.webhook_url + "batch", json=deal_batch(20), timeout=10)
        deals = titles(portal)
    assert reply.status_code == 504
    assert 1 <= len(deals) < 20
    assert deals == [f"d{i}" for i in range(len(deals))]


def test_the_cut_off_is_set_over_the_admin_api(clock, http):
    with BitrixEmulator(rate_limit=None, command_latency_ms=100, clock=clock, sleep=clock.sleep) as portal:
        admin = f"{portal.base_url}/_admin"
        assert portal.request_timeout_s == 60.0, "the cloud's 60 s by default"
        assert http.post(f"{admin}/request-timeout", json={"timeout_s": 0.15}).json() == {
            "timeout_s": 0.15, "reply": "html_504"}
        cut = http.post(portal.webhook_url + "batch", json=deal_batch(5, "a")).status_code
        assert http.post(f"{admin}/request-timeout", json={"timeout_s": 0}).json()["timeout_s"] is None
        whole = http.post(portal.webhook_url + "batch", json=deal_batch(5, "b")).status_code
        bad = http.post(f"{admin}/request-timeout", json={"reply": "teapot"}).status_code
        counted = http.get(f"{admin}/limit-counters").json()["cut_off"]
        deals = titles(portal)
    assert (cut, whole, bad, counted) == (504, 200, 400, 1)
    assert deals == ["a0", "a1", "b0", "b1", "b2", "b3", "b4"]


# --- plan profiles ------------------------------------------------------------------------

def test_standard_profile_is_the_default():
    portal = BitrixEmulator()
    try:
        assert (portal.profile, portal.bucket.rate, portal.bucket.burst, portal.operating.limit_s) == (
            "standard", 2.0, 50, 480.0)
    finally:
        portal.start().stop()


def test_enterprise_profile_drains_5_per_second_from_a_bucket_of_250(clock, http):
    with BitrixEmulator(profile="enterprise", clock=clock) as portal:
        assert portal.operating.limit_s == 480.0
        first = [http.get(portal.webhook_url + "server.time").status_code for _ in range(251)]
        clock.advance(1.0)
        after_a_second = [http.get(portal.webhook_url + "server.time").status_code for _ in range(6)]
    assert first == [200] * 250 + [503]
    assert after_a_second == [200] * 5 + [503]


def test_explicit_limits_win_over_the_profile():
    portal = BitrixEmulator(profile="enterprise", rate_limit=None, operating_limit_s=100.0)
    try:
        assert (portal.bucket.enabled, portal.bucket.burst, portal.operating.limit_s) == (False, 250, 100.0)
    finally:
        portal.start().stop()
    with pytest.raises(ValueError, match="enterprise"):
        BitrixEmulator(profile="gold")


def test_the_profile_is_switched_over_the_admin_api(http):
    with BitrixEmulator(rate_limit=None, operating_limit_s=None) as portal:
        admin = f"{portal.base_url}/_admin"
        limits = http.post(f"{admin}/profile", json={"profile": "enterprise"}).json()
        unknown = http.post(f"{admin}/profile", json={"profile": "gold"})
    assert (limits["profile"], limits["rate"], limits["burst"], limits["operating"]["limit_s"]) == (
        "enterprise", 5.0, 250, 480.0)
    assert unknown.status_code == 400 and "standard" in unknown.json()["error"]


# --- configuration over the admin API and the command line --------------------------------

def test_costs_and_limit_are_set_over_the_admin_api(clock, http):
    with BitrixEmulator(rate_limit=None, operating_limit_s=5.0, clock=clock) as portal:
        admin = f"{portal.base_url}/_admin"
        table = http.post(f"{admin}/operating-costs", json={"costs": True}).json()
        custom = http.post(f"{admin}/operating-costs",
                           json={"costs": {"crm.deal.add": 3}, "default_cost_s": 0.5}).json()
        # A key left out keeps its value: changing the scale does not turn the limit off.
        limit = http.post(f"{admin}/operating-limit", json={"scale": 2}).json()
        http.post(portal.webhook_url + "crm.deal.add", json={"fields": {"TITLE": "x"}})
        blocked = http.post(portal.webhook_url + "crm.deal.add", json={"fields": {"TITLE": "y"}}).status_code
        limits = http.get(f"{admin}/limits").json()
        counters = http.get(f"{admin}/limit-counters").json()
    assert table["costs"] == DEFAULT_OPERATING_COSTS and table["default_cost_s"] is None
    assert custom == {"costs": {"crm.deal.add": 3.0}, "default_cost_s": 0.5, "scale": 1.0}
    assert limit == {"limit_s": 5.0, "scale": 2.0}
    assert blocked == 429
    assert limits["operating"]["window_s_by_method"] == {"crm.deal.add": 6.0}
    assert limits["request_timeout"] == {"timeout_s": 60.0, "reply": "html_504"}
    assert counters == {"operating_429": 1, "operating_blocked_commands": 0, "cut_off": 0,
                        "operating_s_by_method": {"crm.deal.add": 6.0}}


def test_command_line_flags_build_the_portal():
    portal = build_from_command_line(["--port", "0", "--profile", "enterprise", "--operating-costs",
                                      "--operating-cost", "crm.deal.add=0.3", "--operating-default-cost", "0.02",
                                      "--operating-time-scale", "4", "--request-timeout", "0.5",
                                      "--cutoff-reply", "drop"])
    try:
        assert (portal.bucket.rate, portal.bucket.burst, portal.operating.limit_s) == (5.0, 250, 480.0)
        assert portal.costs.table == {**DEFAULT_OPERATING_COSTS, "crm.deal.add": 0.3}
        assert (portal.costs.default_s, portal.operating_time_scale) == (0.02, 4.0)
        assert (portal.request_timeout_s, portal.cutoff_reply) == (0.5, "drop")
    finally:
        portal.start().stop()
    plain = build_from_command_line(["--port", "0", "--rate-limit", "0", "--request-timeout", "0"])
    try:
        assert (plain.profile, plain.bucket.enabled, plain.bucket.burst) == ("standard", False, 50)
        assert plain.costs.table == {} and plain.request_timeout_s is None
    finally:
        plain.start().stop()
