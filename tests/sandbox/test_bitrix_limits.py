"""Leaky bucket and operating-time limit of the Bitrix24 emulator (checklist items 7-8).

Time is a hand-moved clock: nothing here sleeps.
"""
from __future__ import annotations

import pytest
import requests

from sandbox.bitrix import BitrixEmulator, LeakyBucket, OperatingLimiter

LIMIT_BODY = {"error": "QUERY_LIMIT_EXCEEDED", "error_description": "Too many requests"}
OPERATING_BODY = {"error": "OPERATION_TIME_LIMIT", "error_description": "Method is blocked due to operation time limit."}


class Clock:
    def __init__(self, now: float = 1_750_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def http():
    with requests.Session() as session:
        yield session


# --- 7. leaky bucket -----------------------------------------------------------------------

def test_leaky_bucket_rejects_past_burst_with_503(clock, http):
    with BitrixEmulator(rate_limit=2.0, burst=5, clock=clock) as portal:
        replies = [http.post(portal.webhook_url + "crm.deal.add", json={"fields": {"TITLE": f"d{i}"}})
                   for i in range(7)]
        counters = portal.admin.counters()
        deals = portal.admin.deals()
    assert [r.status_code for r in replies] == [200] * 5 + [503] * 2
    assert replies[5].json() == LIMIT_BODY
    assert len(deals) == 5, "rejected requests must not change state"
    assert counters["rejected"] == {"QUERY_LIMIT_EXCEEDED": 2}


def test_leaky_bucket_drains_at_the_configured_rate(clock, http):
    with BitrixEmulator(rate_limit=2.0, burst=3, clock=clock) as portal:
        statuses = [http.get(portal.webhook_url + "server.time").status_code for _ in range(4)]
        clock.advance(0.5)  # drains one request
        statuses += [http.get(portal.webhook_url + "server.time").status_code for _ in range(2)]
        clock.advance(10)
        statuses += [http.get(portal.webhook_url + "server.time").status_code for _ in range(3)]
    assert statuses == [200, 200, 200, 503, 200, 503, 200, 200, 200]


def test_batch_counts_once_for_the_bucket(clock, http):
    with BitrixEmulator(rate_limit=2.0, burst=2, clock=clock) as portal:
        cmd = {f"c{i}": f"crm.deal.add?fields[TITLE]=d{i}" for i in range(50)}
        first = http.post(portal.webhook_url + "batch", json={"cmd": cmd})
        second = http.get(portal.webhook_url + "server.time")
        third = http.get(portal.webhook_url + "server.time")
        assert len(portal.admin.deals()) == 50
    assert (first.status_code, second.status_code, third.status_code) == (200, 200, 503)


def test_rate_limit_is_configurable_at_run_time(clock, http):
    with BitrixEmulator(rate_limit=None, clock=clock) as portal:
        assert all(http.get(portal.webhook_url + "server.time").status_code == 200 for _ in range(60))
        assert http.post(f"{portal.base_url}/_admin/rate-limit", json={"rate": 5, "burst": 1}).json() == {
            "rate": 5.0, "burst": 1}
        codes = [http.get(portal.webhook_url + "server.time").status_code for _ in range(2)]
        portal.admin.set_rate_limit(None)
        codes.append(http.get(portal.webhook_url + "server.time").status_code)
    assert codes == [200, 503, 200]


def test_leaky_bucket_unit_with_clock(clock):
    bucket = LeakyBucket(5.0, 250, clock=clock)
    assert sum(bucket.try_acquire() for _ in range(300)) == 250
    clock.advance(1.0)
    assert sum(bucket.try_acquire() for _ in range(10)) == 5
    assert LeakyBucket(0, 1, clock=clock).try_acquire() and LeakyBucket(None, 1, clock=clock).enabled is False


# --- 8. operating-time limit ---------------------------------------------------------------

def test_operating_limit_blocks_next_call_with_429(clock, http):
    # Every call measures at least a microsecond; scaled by 1e7 that is over the 1 s limit.
    with BitrixEmulator(rate_limit=None, operating_limit_s=1.0, operating_time_scale=1e7, clock=clock) as portal:
        first = http.post(portal.webhook_url + "crm.deal.list", json={})
        second = http.post(portal.webhook_url + "crm.deal.list", json={})
        other = http.post(portal.webhook_url + "crm.contact.list", json={})
        rejected = portal.admin.counters()["rejected"]
    assert first.status_code == 200, "the call that crosses the limit completes"
    assert first.json()["time"]["operating"] > 1.0
    assert second.status_code == 429
    assert second.json() == OPERATING_BODY
    assert other.status_code == 200, "other methods keep working"
    assert rejected == {"OPERATION_TIME_LIMIT": 1}


def test_operating_time_is_exposed_and_resets_after_ten_minutes(clock, http):
    started = clock.now
    with BitrixEmulator(rate_limit=None, clock=clock) as portal:
        portal.admin.charge_operating("crm.deal.list", 300)
        clock.advance(120)
        portal.admin.charge_operating("crm.deal.list", 100)
        body = http.post(portal.webhook_url + "crm.deal.list", json={}).json()
        portal.admin.charge_operating("crm.deal.list", 81)
        blocked = http.post(portal.webhook_url + "crm.deal.list", json={})
        clock.advance(600 - 120 + 1)   # the first minute (300 s) drops out, the later one stays
        after = http.post(portal.webhook_url + "crm.deal.list", json={})
    assert body["time"]["operating"] == pytest.approx(400, abs=0.1)
    assert body["time"]["operating_reset_at"] == int(started) + 600
    assert blocked.status_code == 429
    assert after.status_code == 200
    assert after.json()["time"]["operating"] == pytest.approx(181, abs=0.1)


def test_operating_limit_inside_batch_is_a_result_error(clock, http):
    with BitrixEmulator(rate_limit=None, clock=clock) as portal:
        portal.admin.charge_operating("crm.deal.list", 500)
        reply = http.post(portal.webhook_url + "batch", json={"cmd": {"l": "crm.deal.list", "t": "server.time"}})
    assert reply.status_code == 200
    result = reply.json()["result"]
    assert result["result_error"] == {"l": OPERATING_BODY}
    assert list(result["result"]) == ["t"]


def test_outer_batch_is_not_counted_but_each_command_is(clock, http):
    with BitrixEmulator(rate_limit=None, operating_time_scale=1000.0, clock=clock) as portal:
        http.post(portal.webhook_url + "batch", json={"cmd": {"a": "crm.deal.list", "b": "crm.deal.list"}})
        assert portal.operating.used("batch") == 0
        assert portal.operating.used("crm.deal.list") > 0


def test_operating_limiter_unit_buckets_by_minute(clock):
    limiter = OperatingLimiter(10.0, clock=clock)
    limiter.record("m", 6)
    clock.advance(61)
    limiter.record("m", 5)
    assert limiter.used("m") == 11 and limiter.blocked("m") and not limiter.blocked("other")
    clock.advance(540)
    assert limiter.used("m") == 5 and not limiter.blocked("m")
