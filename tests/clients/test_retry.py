"""The shared retry policy on its own: what it retries, how long it waits, when it stops, what it logs."""
from __future__ import annotations

import random

import pytest

from sync.clients.retry import AttemptFailed, GiveUp, RetryPolicy
from tests.clients.conftest import FakeClock, MaxJitter


class Exhausted(Exception):
    def __init__(self, give_up: GiveUp) -> None:
        super().__init__(give_up.summary)
        self.give_up = give_up


def policy(clock: FakeClock, **kwargs) -> RetryPolicy:
    return RetryPolicy(clock=clock, sleep=clock.sleep, rng=MaxJitter(), **kwargs)


def failing(times: int, result: str = "done", **failure) -> tuple[list[int], object]:
    calls: list[int] = []

    def attempt() -> str:
        calls.append(1)
        if len(calls) <= times:
            raise AttemptFailed(f"failure {len(calls)}", **failure)
        return result

    return calls, attempt


def test_retries_named_failures_with_doubling_backoff(clock: FakeClock) -> None:
    calls, attempt = failing(3)
    assert policy(clock).run(attempt, what="op", give_up=Exhausted) == "done"
    assert len(calls) == 4 and clock.sleeps == [1.0, 2.0, 4.0]


def test_other_exceptions_pass_through_without_retry(clock: FakeClock) -> None:
    def attempt() -> None:
        raise KeyError("a bug, not a named failure")

    with pytest.raises(KeyError):
        policy(clock).run(attempt, what="op", give_up=Exhausted)
    assert clock.sleeps == []


def test_backoff_is_capped(clock: FakeClock) -> None:
    calls, attempt = failing(5)
    policy(clock, cap_s=3.0, max_attempts=10).run(attempt, what="op", give_up=Exhausted)
    assert clock.sleeps == [1.0, 2.0, 3.0, 3.0, 3.0]


def test_jitter_is_full_and_drawn_from_the_injected_rng(clock: FakeClock) -> None:
    calls, attempt = failing(3)
    RetryPolicy(clock=clock, sleep=clock.sleep, rng=random.Random(7)).run(attempt, what="op", give_up=Exhausted)
    expected = random.Random(7)
    assert clock.sleeps == pytest.approx([expected.uniform(0.0, 2.0 ** n) for n in range(3)])


def test_the_servers_hint_wins_over_backoff(clock: FakeClock) -> None:
    calls, attempt = failing(2, retry_after=12.5)
    policy(clock).run(attempt, what="op", give_up=Exhausted)
    assert clock.sleeps == [12.5, 12.5]


def test_gives_up_after_max_attempts_with_the_last_failure(clock: FakeClock) -> None:
    calls, attempt = failing(99)
    with pytest.raises(Exhausted) as info:
        policy(clock, max_attempts=3).run(attempt, what="op", give_up=Exhausted)
    give_up = info.value.give_up
    assert (give_up.attempts, give_up.summary, give_up.failure.reason) == (3, "gave up after 3 attempts", "failure 3")
    assert len(calls) == 3 and clock.sleeps == [1.0, 2.0]
    assert info.value.__context__ is None and info.value.__cause__ is None


def test_total_time_cap_counts_time_spent_in_attempts(clock: FakeClock) -> None:
    """Slow attempts use the budget too: 4 s per attempt + 1 s wait, then 4 s + a 2 s wait would pass 10 s."""
    calls: list[int] = []

    def slow() -> None:
        calls.append(1)
        clock.advance(4.0)
        raise AttemptFailed("slow failure")

    with pytest.raises(Exhausted) as info:
        policy(clock, max_wait_s=10.0).run(slow, what="op", give_up=Exhausted)
    assert len(calls) == 2 and clock.sleeps == [1.0]
    assert info.value.give_up.summary == ("gave up after 2 attempts: waiting 2.0s more would exceed the 10s "
                                          "retry budget")


def test_a_hint_longer_than_the_budget_gives_up_without_sleeping(clock: FakeClock) -> None:
    calls, attempt = failing(1, retry_after=600)
    with pytest.raises(Exhausted) as info:
        policy(clock, max_wait_s=60).run(attempt, what="op", give_up=Exhausted)
    assert clock.sleeps == [] and info.value.give_up.failure.retry_after == 600.0


def test_each_retry_is_logged_and_reported(clock: FakeClock, log_lines) -> None:
    waits: list[float] = []
    calls, attempt = failing(2)
    policy(clock, max_attempts=4).run(attempt, what="Some API GET /x", give_up=Exhausted, on_retry=waits.append)
    assert log_lines == ["Some API GET /x: attempt 1/4 failed: failure 1; retrying in 1.00s\n",
                         "Some API GET /x: attempt 2/4 failed: failure 2; retrying in 2.00s\n"]
    assert waits == [1.0, 2.0]


@pytest.mark.parametrize("kwargs", [{"max_attempts": 0}, {"max_wait_s": -1}, {"base_s": -1}])
def test_nonsense_settings_are_refused(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(**kwargs)
