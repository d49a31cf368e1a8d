"""INTAKE_CHECK_EMPLOYEE: one user.get by e-mail; unknown or inactive refused, a CRM that does not answer noted."""
from __future__ import annotations

import threading

import pytest

from core.errors import RetriableError
from storage.inbox import InboxStore
from sync.clients.bitrix24 import Bitrix24Client
from tests.intake.conftest import sample_polls

ACTIVE, INACTIVE, UNKNOWN = sample_polls()  # m.ivanova (active), left.company (inactive), nobody (unknown)
WEBHOOK = "https://portal.example.com/rest/1/not-used-secret/"


@pytest.fixture(scope="module")
def portal():
    from sandbox.bitrix import BitrixEmulator
    emulator = BitrixEmulator(rate_limit=None).start()
    yield emulator
    emulator.stop()


@pytest.fixture
def checking(make_intake, portal):
    crm = Bitrix24Client(portal.webhook_url, timeout=3, max_attempts=1)
    return make_intake(intake_check_employee=True, crm=crm, bitrix24_webhook_url=portal.webhook_url)


def test_an_active_employee_registers_the_poll(checking, engine):
    reply = checking.post("postPoll", ACTIVE)
    assert reply.status_code == 200 and reply.json()["is_successful"] is True
    [version] = InboxStore(engine).poll_versions(poll_id=ACTIVE["poll_id"])
    assert version.note is None


@pytest.mark.parametrize("poll, reason, words", [
    (INACTIVE, "employee_inactive", "left.company@hse.ru"),
    (UNKNOWN, "employee_unknown", "nobody@hse.ru"),
    ({"poll_id": 1, "poll_name": "x"}, "employee_missing", "e-mail"),
])
def test_an_unknown_or_inactive_employee_is_refused_with_the_reason(poll, reason, words, checking, engine):
    reply = checking.post("postPoll", poll)
    body = reply.json()
    assert body["is_successful"] is False and body["reason"] == reason and words in body["message"]
    assert body["poll_id"] == poll["poll_id"]
    assert InboxStore(engine).poll_versions(poll_id=poll["poll_id"]) == []
    assert InboxStore(engine).refusals()[0].reason == reason


class DownCRM:
    def call(self, method, params=None):
        raise RetriableError("Bitrix24 user.get failed: connection refused", system="bitrix24")


class SlowCRM:
    def __init__(self) -> None:
        self.release = threading.Event()

    def call(self, method, params=None):
        self.release.wait(10)
        return []


@pytest.mark.parametrize("crm_kind", ["down", "slow"])
def test_a_crm_that_does_not_answer_does_not_cost_the_registration(crm_kind, make_intake, engine):
    crm = DownCRM() if crm_kind == "down" else SlowCRM()
    intake = make_intake(intake_check_employee=True, intake_check_timeout_s=0.3, crm=crm, bitrix24_webhook_url=WEBHOOK)
    try:
        reply = intake.post("postPoll", UNKNOWN)
    finally:
        if isinstance(crm, SlowCRM):
            crm.release.set()
    assert reply.status_code == 200 and reply.json()["is_successful"] is True
    [version] = InboxStore(engine).poll_versions(poll_id=UNKNOWN["poll_id"])
    assert version.note.startswith("employee check skipped")


def test_answers_are_never_checked(make_intake, engine):
    intake = make_intake(intake_check_employee=True, crm=DownCRM(), bitrix24_webhook_url=WEBHOOK)
    from tests.intake.conftest import sample_answers
    assert intake.post("postAnswer", sample_answers()[0]).json()["is_successful"] is True
