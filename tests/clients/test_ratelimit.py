"""The local copy of the portal's leaky bucket: 50 at once, then 2 a second, full after a 503."""
from __future__ import annotations

import threading

import pytest

from sync.clients.ratelimit import LeakyBucket
from tests.clients.conftest import FakeClock


def test_bucket_lets_burst_through_then_two_per_second(clock: FakeClock) -> None:
    bucket = LeakyBucket(2.0, 50, clock=clock, sleep=clock.sleep, safety_s=0)

    waits = [bucket.acquire() for _ in range(50)]
    assert waits == [0.0] * 50
    assert clock.sleeps == []  # the first burst never calls sleep

    waits = [bucket.acquire() for _ in range(4)]
    assert waits == [0.5, 0.5, 0.5, 0.5]
    assert clock.sleeps == [0.5, 0.5, 0.5, 0.5]
    assert clock.now == pytest.approx(1002.0)  # 4 more requests took 2 s: two per second


def test_bucket_drains_while_idle(clock: FakeClock) -> None:
    bucket = LeakyBucket(2.0, 50, clock=clock, sleep=clock.sleep, safety_s=0)
    for _ in range(50):
        bucket.acquire()
    clock.advance(10.0)  # 20 slots drained
    assert [bucket.acquire() for _ in range(20)] == [0.0] * 20
    assert bucket.acquire() == 0.5
    clock.advance(1000.0)
    assert bucket.level == 0.0  # never below empty


def test_enterprise_rate_five_per_second(clock: FakeClock) -> None:
    bucket = LeakyBucket(5.0, 250, clock=clock, sleep=clock.sleep, safety_s=0)
    assert sum(bucket.acquire() for _ in range(250)) == 0.0
    assert bucket.acquire() == pytest.approx(0.2)


def test_penalize_treats_bucket_as_full(clock: FakeClock) -> None:
    bucket = LeakyBucket(2.0, 50, clock=clock, sleep=clock.sleep, safety_s=0)
    bucket.acquire()
    bucket.penalize()  # the server said QUERY_LIMIT_EXCEEDED: our copy drifted
    assert bucket.rejected == 1
    assert bucket.acquire() == 0.5
    bucket.note_rejected()  # alias
    assert bucket.rejected == 2
    assert bucket.acquire() == 0.5


def test_penalize_keeps_booked_waits(clock: FakeClock) -> None:
    """Reservations above the burst are not forgiven by a penalty."""
    slept: list[float] = []
    bucket = LeakyBucket(2.0, 1, clock=clock, sleep=slept.append, safety_s=0)  # sleep does not move the clock
    bucket.acquire()
    bucket.acquire()  # booked at level 2, waits 0.5
    bucket.penalize()
    assert bucket.acquire() == 1.0  # level 3


def test_concurrent_callers_book_distinct_slots(clock: FakeClock) -> None:
    """Eight threads × 10 acquires at one frozen instant: the waits are exactly 0.5·k for k=1..30."""
    slept: list[float] = []
    lock = threading.Lock()

    def record(seconds: float) -> None:
        with lock:
            slept.append(seconds)

    bucket = LeakyBucket(2.0, 50, clock=clock, sleep=record, safety_s=0)  # clock frozen: every slot is booked
    barrier = threading.Barrier(8)

    def worker() -> None:
        barrier.wait()
        for _ in range(10):
            bucket.acquire()

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(slept) == [0.5 * k for k in range(1, 31)]


def test_safety_margin_delays_the_schedule_once_not_the_rate(clock: FakeClock) -> None:
    """The default margin makes a waiting request go 0.1 s after its slot; the rate stays 2/s."""
    bucket = LeakyBucket(2.0, 50, clock=clock, sleep=clock.sleep)
    assert bucket.safety_s == 0.1
    for _ in range(50):
        assert bucket.acquire() == 0.0  # the burst is still immediate
    waits = [bucket.acquire() for _ in range(5)]
    assert waits == pytest.approx([0.6, 0.5, 0.5, 0.5, 0.5])
    assert clock.now == pytest.approx(1000.0 + 2.6)  # 5 requests: 2.5 s of slots + one 0.1 s margin


@pytest.mark.parametrize("rate, burst, safety", [(0, 50, 0.1), (-1, 50, 0.1), (2, 0, 0.1), (2, 50, -0.1)])
def test_nonsense_limits_are_refused(rate: float, burst: int, safety: float) -> None:
    with pytest.raises(ValueError):
        LeakyBucket(rate, burst, safety_s=safety)
