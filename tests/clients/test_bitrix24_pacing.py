"""Pacing by the portal's operating-time reports, and the waits a 429 OPERATION_TIME_LIMIT takes.

The fake clock starts at 1000 (monotonic) while the portal's time blocks say 5000 (unix):
waits are computed against the server's own time, so the local wall clock is never read
when a block carries ``finish`` (``wall_clock`` fails the test if it is).
"""
from __future__ import annotations

import json

import pytest
import responses

from sync.clients.bitrix24 import Bitrix24Client
from core.errors import RetriableError
from tests.clients.conftest import FakeClock, MaxJitter, SpySession

HOOK = "https://hse.bitrix24.ru/rest/17/pAcEsEcReT42x/"
OTL = {"error": "OPERATION_TIME_LIMIT", "error_description": "Method is blocked due to operation time limit."}


def url(method: str) -> str:
    return f"{HOOK}{method}.json"


def block(operating: float, reset_at: float, *, finish: float = 5000.0, duration: float = 0.5) -> dict:
    return {"start": finish - duration, "finish": finish, "duration": duration, "processing": duration,
            "operating": operating, "operating_reset_at": reset_at}


def ok(result, time_block: dict) -> dict:
    return {"result": result, "time": time_block}


def batch_reply(results: dict, times: dict, *, duration: float = 1.0) -> dict:
    return {"result": {"result": results, "result_error": [], "result_total": [], "result_next": [],
                       "result_time": times},
            "time": {"start": 5000.0, "finish": 5000.0 + duration, "duration": duration}}


def no_wall_clock() -> float:
    pytest.fail("the wall clock was read although the reply carried the server's time")


@pytest.fixture
def client(clock: FakeClock, spy_session: SpySession) -> Bitrix24Client:
    return Bitrix24Client(HOOK, session=spy_session, clock=clock, sleep=clock.sleep, rng=MaxJitter(),
                          wall_clock=no_wall_clock, operating_margin=0.85)


# --------------------------------------------------------------------------- pacing before the wall

@responses.activate
def test_a_method_near_its_operating_limit_waits_for_the_reset_before_the_next_call(client: Bitrix24Client,
                                                                                    clock: FakeClock,
                                                                                    log_lines) -> None:
    # 420 s used of 480 s: past the 85 % budget (408 s); the window frees at 5120, 120 s after the reply.
    responses.post(url("crm.deal.add"), json=ok(1, block(420.0, 5120)))
    responses.post(url("crm.deal.add"), json=ok(2, block(12.0, 5700, finish=5121.0)))

    assert client.call("crm.deal.add", {"fields": {}}, idempotent=False).result == 1
    assert clock.sleeps == []
    assert client.call("crm.deal.add", {"fields": {}}, idempotent=False).result == 2

    assert clock.sleeps == [pytest.approx(121.0)]  # 120 s to the reset + 1 s safety
    assert len(responses.calls) == 2  # waited instead of running into a 429
    stats = client.stats
    assert (stats.paced, stats.paced_s, stats.retries) == (1, pytest.approx(121.0), 0)
    assert any("crm.deal.add used 420.0s of its 480s operating-time limit; waiting 121.0s" in line
               for line in log_lines)


@responses.activate
def test_time_spent_since_the_reply_shortens_the_wait(client: Bitrix24Client, clock: FakeClock) -> None:
    responses.post(url("crm.deal.list"), json=ok([], block(450.0, 5100)))
    client.call("crm.deal.list")
    clock.advance(40.0)
    client.call("crm.deal.list")
    assert clock.sleeps == [pytest.approx(61.0)]  # 100 - 40 + 1


@responses.activate
def test_below_the_budget_nothing_waits_and_headroom_says_how_much_is_left(client: Bitrix24Client,
                                                                         clock: FakeClock) -> None:
    responses.post(url("crm.deal.list"), json=ok([], block(100.0, 5300)))
    client.call("crm.deal.list")
    client.call("crm.deal.list")
    assert clock.sleeps == [] and len(responses.calls) == 2
    assert client.headroom("crm.deal.list") == pytest.approx(408.0 - 100.0)
    assert client.headroom("CRM.DEAL.LIST") == client.headroom("crm.deal.list")  # the portal lower-cases names
    assert client.headroom("crm.contact.list") == pytest.approx(408.0)  # never seen: the whole budget


@responses.activate
def test_headroom_returns_to_the_whole_budget_once_the_window_has_freed(client: Bitrix24Client,
                                                                      clock: FakeClock) -> None:
    responses.post(url("crm.deal.list"), json=ok([], block(470.0, 5060)))
    client.call("crm.deal.list")
    assert client.headroom("crm.deal.list") == 0.0
    clock.advance(61.0)
    assert client.headroom("crm.deal.list") == pytest.approx(408.0)


@responses.activate
def test_batch_commands_report_their_own_operating_time_and_pace_only_their_methods(client: Bitrix24Client,
                                                                                  clock: FakeClock) -> None:
    responses.post(url("batch"), json=batch_reply({"d_1": 7, "l_1": []},
                                                  {"d_1": block(430.0, 5200), "l_1": block(3.0, 5550)}))
    client.batch({"d_1": ("crm.deal.add", {"fields": {}}), "l_1": ("crm.contact.list", {})}, idempotent=False)
    assert client.headroom("crm.deal.add") == 0.0
    assert client.headroom("crm.contact.list") == pytest.approx(405.0)

    client.batch({"l_2": ("crm.contact.list", {})}, idempotent=True)
    assert clock.sleeps == []  # crm.contact.list has time left

    client.batch({"d_2": ("crm.deal.add", {"fields": {}}), "l_3": ("crm.contact.list", {})}, idempotent=False)
    assert clock.sleeps == [pytest.approx(201.0)]  # the busiest method of the batch decides
    assert len(responses.calls) == 3


@responses.activate
def test_a_command_refused_inside_a_batch_counts_its_method_as_used_up(client: Bitrix24Client,
                                                                     clock: FakeClock) -> None:
    responses.post(url("crm.deal.list"), json=ok([], block(300.0, 5090)))
    client.call("crm.deal.list")  # under the budget: no pacing yet
    responses.post(url("batch"), json={"result": {"result": [], "result_error": {"l_1": OTL}, "result_time": []},
                                       "time": {"duration": 0.1}})
    result = client.batch({"l_1": ("crm.deal.list", {})}, idempotent=True)
    assert result["l_1"].disposition == "retry"
    assert client.headroom("crm.deal.list") == 0.0
    client.batch({"l_2": ("crm.deal.list", {})}, idempotent=True)
    assert clock.sleeps == [pytest.approx(91.0)]


@responses.activate
def test_pacing_can_be_turned_off(clock: FakeClock, spy_session: SpySession) -> None:
    client = Bitrix24Client(HOOK, session=spy_session, clock=clock, sleep=clock.sleep, operating_limit_s=None)
    responses.post(url("crm.deal.list"), json=ok([], block(479.0, 5500)))
    client.call("crm.deal.list")
    client.call("crm.deal.list")
    assert clock.sleeps == [] and client.headroom("crm.deal.list") == float("inf")


@responses.activate
def test_a_block_without_server_time_is_measured_on_the_wall_clock(clock: FakeClock,
                                                                 spy_session: SpySession) -> None:
    client = Bitrix24Client(HOOK, session=spy_session, clock=clock, sleep=clock.sleep,
                            wall_clock=lambda: 5030.0, operating_margin=0.85)
    responses.post(url("crm.deal.list"), json=ok([], {"operating": 420.0, "operating_reset_at": 5100}))
    client.call("crm.deal.list")
    client.call("crm.deal.list")
    assert clock.sleeps == [pytest.approx(71.0)]


@pytest.mark.parametrize("kwargs", [{"operating_limit_s": -1}, {"operating_margin": 0}, {"operating_margin": 1.5}])
def test_nonsense_pacing_settings_are_config_errors(kwargs: dict) -> None:
    from core.errors import ConfigError
    with pytest.raises(ConfigError, match="operating"):
        Bitrix24Client(HOOK, **kwargs)


# --------------------------------------------------------------------------- 429 OPERATION_TIME_LIMIT

@responses.activate
def test_operation_time_limit_waits_until_the_reported_reset(client: Bitrix24Client, clock: FakeClock,
                                                            log_lines) -> None:
    responses.post(url("crm.deal.list"), json=ok([], block(300.0, 5200)))
    client.call("crm.deal.list")
    clock.advance(50.0)
    responses.post(url("crm.deal.list"), status=429, json=OTL)
    responses.post(url("crm.deal.list"), json=ok([{"ID": "1"}], block(10.0, 5800, finish=5201.0)))
    responses.calls.reset()

    assert client.call("crm.deal.list").result == [{"ID": "1"}]

    assert clock.sleeps == [pytest.approx(151.0)]  # 200 s to the reset - 50 s gone + 1 s; not a 1 s backoff
    assert len(responses.calls) == 2
    stats = client.stats
    assert (stats.retries, stats.rejected_by_rate_limit, stats.paced) == (1, 1, 0)
    assert log_lines[-1].startswith("Bitrix24 crm.deal.list: attempt 1/6 failed: HTTP 429 OPERATION_TIME_LIMIT")
    assert "retrying in 151.00s" in log_lines[-1]


@responses.activate
def test_operation_time_limit_without_a_known_reset_backs_off(client: Bitrix24Client, clock: FakeClock) -> None:
    responses.post(url("crm.deal.list"), status=429, json=OTL)
    responses.post(url("crm.deal.list"), json=ok([], block(1.0, 5600)))
    client.call("crm.deal.list")
    assert clock.sleeps == [1.0]


@responses.activate
def test_retry_after_wins_over_the_operating_reset(client: Bitrix24Client, clock: FakeClock) -> None:
    responses.post(url("crm.deal.list"), json=ok([], block(300.0, 5200)))
    client.call("crm.deal.list")
    responses.post(url("crm.deal.list"), status=429, json=OTL, headers={"Retry-After": "5"})
    responses.post(url("crm.deal.list"), json=ok([], block(1.0, 5600)))
    client.call("crm.deal.list")
    assert clock.sleeps == [5.0]


# --------------------------------------------------------------------------- the total-time cap

@responses.activate
def test_a_reset_beyond_the_retry_budget_is_refused_without_sending(clock: FakeClock,
                                                                    spy_session: SpySession) -> None:
    client = Bitrix24Client(HOOK, session=spy_session, clock=clock, sleep=clock.sleep, max_wait_s=300,
                            wall_clock=no_wall_clock)
    responses.post(url("crm.deal.add"), json=ok(1, block(475.0, 5599.5)))  # past the default 98 % (470.4 s)
    client.call("crm.deal.add", {"fields": {}}, idempotent=False)

    with pytest.raises(RetriableError) as info:
        client.call("crm.deal.add", {"fields": {}}, idempotent=False)

    assert len(responses.calls) == 1 and clock.sleeps == []  # nothing sent, nothing slept
    error = info.value
    assert (error.code, error.system) == ("OPERATION_TIME_LIMIT", "bitrix24")
    assert error.retry_after == pytest.approx(600.5)
    message = str(error)
    assert "crm.deal.add used 475s of its 480s operating-time limit" in message
    assert "300s retry budget" in message and "Nothing was applied" in message and "run again later" in message
    assert "pAcEsEcReT42x" not in message


@responses.activate
def test_a_429_whose_reset_is_beyond_the_budget_gives_up_at_once(clock: FakeClock,
                                                                 spy_session: SpySession) -> None:
    client = Bitrix24Client(HOOK, session=spy_session, clock=clock, sleep=clock.sleep, max_wait_s=120,
                            wall_clock=no_wall_clock)
    responses.post(url("crm.deal.list"), json=ok([], block(300.0, 5400)))
    client.call("crm.deal.list")
    responses.post(url("crm.deal.list"), status=429, json=OTL)
    with pytest.raises(RetriableError) as info:
        client.call("crm.deal.list")
    assert clock.sleeps == [] and len(responses.calls) == 2
    message = str(info.value)
    assert "gave up after 1 attempts: waiting 401.0s more would exceed the 120s retry budget" in message
    assert "was not applied" in message and info.value.retry_after == pytest.approx(401.0)


# --------------------------------------------------------------------------- batch duration

@responses.activate
def test_batch_duration_is_reported_and_a_slow_batch_is_logged(client: Bitrix24Client, log_lines) -> None:
    responses.post(url("batch"), json=batch_reply({"d_1": 1}, {"d_1": block(5.0, 5600)}, duration=12.0))
    responses.post(url("batch"), json=batch_reply({"d_2": 2}, {"d_2": block(9.0, 5600)}, duration=48.5))
    first = client.batch({"d_1": ("crm.deal.add", {"fields": {}})}, idempotent=False)
    assert first.duration_s == 12.0 and client.stats.last_batch_s == 12.0
    assert not any("cut-off" in line for line in log_lines)

    second = client.batch({"d_2": ("crm.deal.add", {"fields": {}})}, idempotent=False)

    assert second.duration_s == 48.5
    stats = client.stats
    assert (stats.last_batch_s, stats.slowest_batch_s) == (48.5, 48.5)
    assert any("batch of 1 (crm.deal.add) took 48.5s on the portal, close to its 60s cut-off" in line
               for line in log_lines)
    assert json.loads(responses.calls[1].request.body)["cmd"] == {"d_2": "crm.deal.add"}


# --------------------------------------------------------------------------- what is in flight counts too

def deal_batch(n: int, first_name: int = 1) -> dict:
    return {f"d_{first_name + i}": ("crm.deal.add", {"fields": {}}) for i in range(n)}


def deal_batch_reply(n: int, first_name: int, operating_from: float, step: float, reset_at: float) -> dict:
    names = [f"d_{first_name + i}" for i in range(n)]
    return batch_reply({name: 100 + i for i, name in enumerate(names)},
                       {name: block(operating_from + step * i, reset_at) for i, name in enumerate(names)})


@responses.activate
def test_the_cost_of_a_command_is_learnt_from_the_steps_between_a_batchs_commands(client: Bitrix24Client) -> None:
    responses.post(url("batch"), json=deal_batch_reply(4, 1, 100.0, 0.25, 5500))
    client.batch(deal_batch(4), idempotent=False)
    assert client.pacer.cost("crm.deal.add") == pytest.approx(0.25)
    assert client.pacer.in_flight("crm.deal.add") == 0.0  # the reply was read: nothing reserved any more


def test_a_request_waits_when_what_is_in_flight_would_carry_its_method_past_the_budget(clock: FakeClock) -> None:
    from sync.clients.bitrix24_pacing import OperatingPacer
    pacer = OperatingPacer(480.0, 0.85, clock=clock, wall_clock=no_wall_clock)   # budget 408 s
    steps = [("crm.deal.add", block(390.0 + i, 5300)) for i in range(3)]       # 1 s a command, 392 s used
    pacer.settle(None, steps)

    first = pacer.admit(["crm.deal.add"] * 10)       # 392 + 10 = 402: admitted, 10 s reserved
    assert first.wait == 0 and first.reserved == {"crm.deal.add": pytest.approx(10.0)}
    second = pacer.admit(["crm.deal.add"] * 10)      # 392 + 10 in flight + 10 = 412 > 408: held back
    assert second.wait == pytest.approx(301.0) and second.busiest == "crm.deal.add"
    assert pacer.admit(["crm.contact.add"] * 50).wait == 0  # other methods are not held back

    pacer.settle(first, [("crm.deal.add", block(402.0, 5300))])  # back: 402 reported, nothing in flight
    assert pacer.in_flight("crm.deal.add") == 0.0
    assert pacer.admit(["crm.deal.add"] * 6).wait == 0       # 402 + 6 = 408: still fits
    assert pacer.admit(["crm.deal.add"]).wait > 0             # 409 would not


def test_a_window_that_has_freed_admits_again_and_a_step_down_teaches_nothing(clock: FakeClock) -> None:
    from sync.clients.bitrix24_pacing import OperatingPacer
    pacer = OperatingPacer(480.0, 0.85, clock=clock, wall_clock=no_wall_clock)
    pacer.settle(None, [("crm.deal.add", block(400.0, 5100)), ("crm.deal.add", block(400.5, 5100))])
    assert pacer.admit(["crm.deal.add"] * 20).wait == pytest.approx(101.0)
    clock.advance(101.0)
    admitted = pacer.admit(["crm.deal.add"] * 20)
    assert admitted.wait == 0 and admitted.reserved == {"crm.deal.add": pytest.approx(10.0)}
    # A minute dropped out between two commands: 400.5 → 90.0 is no negative cost.
    pacer.settle(admitted, [("crm.deal.add", block(400.5, 5100)), ("crm.deal.add", block(90.0, 5700))])
    assert pacer.cost("crm.deal.add") == pytest.approx(0.5)
    assert pacer.in_flight("crm.deal.add") == 0.0


@responses.activate
def test_an_attempt_that_fails_releases_what_it_reserved(client: Bitrix24Client) -> None:
    responses.post(url("batch"), json=deal_batch_reply(2, 1, 10.0, 0.5, 5500))
    client.batch(deal_batch(2), idempotent=False)                   # learns 0.5 s a command
    responses.post(url("batch"), status=503, json={"error": "QUERY_LIMIT_EXCEEDED",
                                                   "error_description": "Too many requests"})
    responses.post(url("batch"), json=deal_batch_reply(2, 3, 11.0, 0.5, 5500))
    client.batch(deal_batch(2, first_name=3), idempotent=False)     # refused once, then sent again
    assert client.stats.retries == 1
    assert client.pacer.in_flight("crm.deal.add") == 0.0
