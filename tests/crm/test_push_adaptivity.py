"""Batch size and concurrency follow how long the portal takes per batch (issue 14).

A fake client answers every batch at once and reports a portal duration computed from
the commands it carries; nothing sleeps. What each test asserts is what the next
batches looked like after the portal reported slow or fast ones.
"""
from __future__ import annotations

import threading
from types import SimpleNamespace

import pytest

from core.errors import AmbiguousWriteError
from sync.crm.push import BatchSizer, push_commands
from sync.plan.models import Command, Ref


class FakePortal:
    """Creates what it is asked to; the portal's duration of a batch is ``seconds_per_command(n) × n``."""

    def __init__(self, seconds_per_command, *, lose: set[int] = frozenset()) -> None:
        self.seconds_per_command = seconds_per_command
        self.lose = lose                       # batch numbers (1-based) whose reply is lost
        self.sent: list[dict] = []
        self.next_id = 100
        self.lock = threading.Lock()
        self.in_flight = 0
        self.most_in_flight = 0

    def batch(self, commands, *, halt=False, idempotent):
        with self.lock:
            self.sent.append(dict(commands))
            number = len(self.sent)
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            if number in self.lose:
                raise AmbiguousWriteError("read timed out", system="bitrix24", code="TIMEOUT")
            outcomes = {}
            with self.lock:
                for name, (method, params) in commands.items():
                    self.next_id += 1
                    outcomes[name] = SimpleNamespace(ok=True, result=self.next_id, error=None, error_description=None,
                                                     disposition="ok")
            duration = self.seconds_per_command(number, len(commands)) * len(commands)
            return SimpleNamespace(outcomes=outcomes, duration_s=duration)
        finally:
            with self.lock:
                self.in_flight -= 1


def contacts_with_deals(n: int, deals_each: int = 2) -> list[Command]:
    commands = []
    for i in range(n):
        commands.append(Command(name=f"ca_{i}", method="crm.contact.add", kind="contact_add", answer_ids=[i],
                                params={"fields": {"NAME": f"n{i}"}}))
        for d in range(deals_each):
            commands.append(Command(name=f"da_{i}_{d}", method="crm.deal.add", kind="deal_add", answer_ids=[i],
                                    depends_on=[f"ca_{i}"], params={"fields": {"CONTACT_ID": Ref(command=f"ca_{i}")}}))
    return commands


def sizes(portal: FakePortal) -> list[int]:
    return [len(b) for b in portal.sent]


def test_slow_batches_make_the_next_ones_smaller_and_fewer_at_once():
    # 0.8 s a command: a full batch of 48 takes 38 s on the portal, past the 20 s threshold.
    portal = FakePortal(lambda number, n: 0.8)
    sizer = BatchSizer(50, 3)
    results = push_commands(portal, contacts_with_deals(200), sizer=sizer)
    assert all(r.state == "ok" for r in results.values()) and len(results) == 600
    assert sizes(portal)[0] > 20
    # After the first slow replies, batches carry what takes about 10 s at that pace.
    assert sizer.size == 12 and sizer.concurrency == 1
    assert max(sizes(portal)[6:]) <= 12
    # Every command was sent exactly once, in whatever batches.
    names = [name for batch in portal.sent for name in batch]
    assert sorted(names) == sorted(c.name for c in contacts_with_deals(200))


def test_a_deal_is_sent_with_its_contact_or_after_it_whatever_the_batch_size():
    portal = FakePortal(lambda number, n: 0.8 if number <= 2 else 0.01)
    push_commands(portal, contacts_with_deals(300, deals_each=3), sizer=BatchSizer(50, 3))
    sent_before: set[str] = set()
    for batch in portal.sent:
        for name, (method, params) in batch.items():
            if method == "crm.deal.add":
                contact = params["fields"]["CONTACT_ID"]
                contact_name = "ca_" + name.split("_")[1]
                if isinstance(contact, str):   # chained inside the batch: the contact must be in it
                    assert contact == f"$result[{contact_name}]" and contact_name in batch
                else:                          # a real id: the contact went out earlier
                    assert isinstance(contact, int) and contact_name in sent_before
        sent_before |= set(batch)


def test_fast_batches_grow_back_to_the_configured_size_and_concurrency():
    # Slow at first (a busy portal), then quick: the batches come back to 50, three at once.
    portal = FakePortal(lambda number, n: 1.0 if number <= 2 else 0.02)
    sizer = BatchSizer(50, 3)
    push_commands(portal, contacts_with_deals(1000, deals_each=1), sizer=sizer)
    assert min(sizes(portal)) <= 10
    assert (sizer.size, sizer.concurrency) == (50, 3)
    assert sizes(portal)[-3] == 50
    shrunk_then_grew = [c[:2] for c in sizer.changes]
    assert shrunk_then_grew[0][0] < 50 and shrunk_then_grew[-1] == (50, 3)


def test_a_lost_batch_halves_size_and_concurrency():
    portal = FakePortal(lambda number, n: 0.01, lose={1})
    sizer = BatchSizer(50, 4)
    results = push_commands(portal, contacts_with_deals(10, deals_each=0) * 1, sizer=sizer, batch_size=50)
    assert all(r.state == "unknown" for r in results.values())
    assert (sizer.size, sizer.concurrency) == (25, 2)


def test_batches_under_the_threshold_change_nothing():
    portal = FakePortal(lambda number, n: 0.3)   # 15 s for 50: slow-ish but under 20 s
    sizer = BatchSizer(50, 3)
    push_commands(portal, contacts_with_deals(300, deals_each=1), sizer=sizer)
    assert sizer.changes == [] and set(sizes(portal)) == {50}


def test_a_short_tail_batch_does_not_count_as_proof_of_speed():
    sizer = BatchSizer(50, 3)
    sizer.observe(40.0, 50)                     # slow: 0.8 s a command → 12 a batch
    assert (sizer.size, sizer.concurrency) == (12, 1)
    for _ in range(10):
        sizer.observe(0.1, 3)                   # quick, but only 3 commands each
    assert (sizer.size, sizer.concurrency) == (12, 1)
    for _ in range(3):
        sizer.observe(1.0, 12)
    assert (sizer.size, sizer.concurrency) == (18, 2)


def test_never_below_the_minimum_nor_above_the_configuration():
    sizer = BatchSizer(30, 2)
    sizer.observe(59.0, 30)
    sizer.observe(59.0, 10)
    assert sizer.size == 5 and sizer.concurrency == 1
    for _ in range(60):
        sizer.observe(0.5, sizer.size)
    assert (sizer.size, sizer.concurrency) == (30, 2)


def test_a_stop_lets_the_batch_in_flight_finish_and_sends_no_more():
    stop = threading.Event()
    portal = FakePortal(lambda number, n: 0.01)
    settled = []

    def on_batch(results):
        settled.extend(results)
        stop.set()

    results = push_commands(portal, contacts_with_deals(100, deals_each=1), stop=stop, on_batch=on_batch,
                            sizer=BatchSizer(50, 1))
    assert len(portal.sent) == 1 and len(results) == 50 == len(settled)


def test_concurrency_one_sends_one_batch_at_a_time():
    portal = FakePortal(lambda number, n: 0.01)
    push_commands(portal, contacts_with_deals(200), sizer=BatchSizer(50, 1))
    assert portal.most_in_flight == 1


@pytest.mark.parametrize("kwargs", [{"slow_s": 5.0}, {"fast_s": 0.0}, {"target_s": 30.0}])
def test_thresholds_out_of_order_are_refused(kwargs):
    with pytest.raises(ValueError):
        BatchSizer(50, 3, **kwargs)
