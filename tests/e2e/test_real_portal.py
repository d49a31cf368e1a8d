"""The admissions office's real portal, end to end: the portal's own deliveries go through the
intake over HTTP, one sync from the inbox, and the CRM is compared with the table in
``sandbox/sample_data/real/README.md`` — content, not counts. Then the same CRM against a second
run and a new, empty store: nothing is created twice.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from sandbox.bitrix.server import BitrixEmulator
from storage.testing import fresh_database_url

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "sandbox" / "sample_data" / "real"
BASE = "/api/v1/integration"
PROGRAMME_LINK = "UF_CRM_1755626160"
ROISTAT = "UF_CRM_1755626174"


def _samples(name: str, key: str) -> list[dict]:
    return json.loads((SAMPLES / name).read_text(encoding="utf-8"))[key]


@pytest.fixture
def portal():
    with BitrixEmulator(portal="real", user_id=169, scopes=("crm", "user", "lists"), rate_limit=None) as emulator:
        yield emulator


class RealJob:
    """Deliver packets to the intake, sync from the inbox: what an operator's container does."""

    def __init__(self, portal: BitrixEmulator, store_url: str) -> None:
        self.portal = portal
        self.store_url = store_url

    def settings(self, **overrides):
        from sync.settings import load_settings
        values = dict(survey_source="intake", database_url=self.store_url, bitrix24_webhook_url=self.portal.webhook_url,
                      field_mapping=str(ROOT / "field_mapping.json"), http_timeout_s=5)
        values.update(overrides)
        return load_settings(**values)

    def deliver(self, kind: str, packets: list[dict]) -> None:
        from intake.app import create_app
        from intake.server import make_intake_engine
        engine = make_intake_engine(self.store_url)
        try:
            with TestClient(create_app(self.settings(), engine)) as client:
                for packet in packets:
                    reply = client.post(f"{BASE}/{kind}", json=packet)
                    assert reply.status_code == 200 and reply.json()["is_successful"], reply.text
        finally:
            engine.dispose()

    def sync(self, **options):
        from sync.app import build_context, execute, options_from
        settings = self.settings()
        ctx = build_context(settings)
        try:
            return execute(ctx, options_from(settings, keep_plan=True, **options))
        finally:
            ctx.engine.dispose()


@pytest.fixture
def delivered(portal, store_url):
    job = RealJob(portal, store_url)
    job.deliver("postPoll", _samples("polls.json", "postPoll"))
    job.deliver("postAnswer", _samples("answers.json", "postAnswer"))
    return job


@pytest.fixture
def synced(delivered):
    summary = delivered.sync()
    return delivered, summary


def _contact_by_email(portal, email: str) -> list[dict]:
    return [c for c in portal.admin.contacts()
            if any(e["VALUE"].lower() == email.lower() for e in c.get("EMAIL", []))]


def _deals_of(portal, contact_id: int) -> list[dict]:
    return sorted((d for d in portal.admin.deals() if int(d.get("CONTACT_ID") or 0) == contact_id),
                  key=lambda d: int(d["ID"]))


def _comments(portal, deal_id: int) -> list[str]:
    return [c["COMMENT"] for c in portal.admin.timeline_comments("deal", int(deal_id))]


def _answer(summary, answer_id: int):
    return next(a for a in summary.plan.answers if a.answer_id == answer_id)


def _codes(summary, answer_id: int) -> set[str]:
    return {p.code for p in _answer(summary, answer_id).problems}


def _form(portal, poll_id: int) -> dict:
    forms = [e for e in portal.admin.list_elements(17) if e["CODE"] == str(poll_id)]
    assert len(forms) == 1, forms
    return forms[0]


def _prop(element: dict, name: str):
    value = element[name]
    return value[0] if isinstance(value, list) and len(value) == 1 else value


# --- poll forms ---------------------------------------------------------------------------------

def test_poll_form_of_a_registered_poll_is_owned_by_its_employee(synced):
    job, _ = synced
    form = _form(job.portal, 430131691)
    assert form["NAME"] == "Опрос абитуриентов 2025"
    assert str(_prop(form, "PROPERTY_64")) == "430131691"
    assert str(_prop(form, "PROPERTY_66")) == "23"
    assert _prop(form, "PROPERTY_65") == "https://portal.hse.ru/polls/430131691.html"


@pytest.mark.parametrize("poll_id, why", [(512004417, "inactive_owner"), (607711203, "unknown_owner")])
def test_poll_form_of_an_owner_who_cannot_own_it_goes_to_the_default_user_with_a_warning(synced, poll_id, why):
    job, summary = synced
    assert str(_prop(_form(job.portal, poll_id), "PROPERTY_66")) == "17"
    assert why in {p.code for poll in summary.plan.polls if poll.poll_id == poll_id for p in poll.problems}


def test_an_answer_to_a_poll_never_registered_makes_its_form_from_what_is_known(synced):
    job, summary = synced
    form = _form(job.portal, 999000111)
    assert form["NAME"] == "Опросная форма #999000111" and str(_prop(form, "PROPERTY_66")) == "17"
    assert "unregistered_poll" in {p.code for poll in summary.plan.polls if poll.poll_id == 999000111
                                   for p in poll.problems}
    assert _answer(summary, 814573991).outcome == "pushed"


# --- answers ------------------------------------------------------------------------------------

def test_full_answer_makes_a_contact_and_a_deal_per_programme_each_showing_the_whole_answer(synced):
    job, _ = synced
    [maria] = _contact_by_email(job.portal, "maria.ivanova@example.ru")
    assert (maria["LAST_NAME"], maria["NAME"], maria["SECOND_NAME"]) == ("Иванова", "Мария", "Сергеевна")
    assert [p["VALUE"] for p in maria["PHONE"]] == ["+79104061652"]
    deals = _deals_of(job.portal, int(maria["ID"]))
    by_programme = {int(d[PROGRAMME_LINK]): d for d in deals}
    assert set(by_programme) == {700, 701, 702}   # 702 from her later answer 814573990
    for programme in (700, 701):
        deal = by_programme[programme]
        assert (deal["UTM_SOURCE"], deal["UTM_MEDIUM"], deal["UTM_CAMPAIGN"]) == ("yandex", "cpc", "bachelor-2025")
        assert deal[ROISTAT] == "8467460"
        first = [c for c in _comments(job.portal, deal["ID"]) if "[#814573981:" in c]
        assert len(first) == 1
        assert "Школа: 52" in first[0] and "Москва" in first[0] and "utm_source: yandex" in first[0]
        assert "roistat_visit: 8467460" in first[0] and "https://ba.hse.ru/polls/430131691.html" in first[0]


def test_existing_contact_gets_the_phone_and_his_open_deal_is_enriched_not_overwritten(synced):
    job, summary = synced
    assert not [c for c in job.portal.admin.contacts() if int(c["ID"]) not in (501, 502, 503)
                and any(e["VALUE"].lower() == "ivan.petrov@example.com" for e in c.get("EMAIL", []))]
    [ivan] = [c for c in job.portal.admin.contacts() if int(c["ID"]) == 501]
    assert "+79031234567" in [p["VALUE"] for p in ivan["PHONE"]]
    [deal] = [d for d in job.portal.admin.deals() if int(d["ID"]) == 9001]
    assert deal["STAGE_ID"] == "PREPARATION" and int(deal["ASSIGNED_BY_ID"]) == 23
    assert deal["COMMENTS"] == "Звонил 12.09, перезвонить"
    assert deal["UTM_SOURCE"] == "vk" and not deal.get("UTM_MEDIUM") and not deal.get("UTM_CAMPAIGN")
    assert deal[ROISTAT] == "9000001"
    assert sum("[#814573982:" in c for c in _comments(job.portal, 9001)) == 1
    assert _answer(summary, 814573982).deals[0].deal_id == 9001


def test_a_closed_deal_is_left_alone_and_a_new_one_opened(synced):
    job, _ = synced
    [closed] = [d for d in job.portal.admin.deals() if int(d["ID"]) == 9002]
    assert closed["STAGE_ID"] == "LOSE" and not _comments(job.portal, 9002)
    economics = [d for d in _deals_of(job.portal, 501) if str(d[PROGRAMME_LINK]) == "704"]
    assert len(economics) == 2 and [int(d["STAGE_ID"] == "NEW") for d in economics if int(d["ID"]) != 9002] == [1]


def test_duplicate_contacts_use_the_lowest_and_unknown_programme_is_reported_by_name(synced):
    job, summary = synced
    assert not [c for c in job.portal.admin.contacts() if int(c["ID"]) > 503
                and any(e["VALUE"].lower() == "e.smirnova@example.org" for e in c.get("EMAIL", []))]
    deals = _deals_of(job.portal, 502)
    assert [str(d[PROGRAMME_LINK]) for d in deals] == ["706"]
    answer = _answer(summary, 814573984)
    assert {"duplicate_contacts", "unknown_programme"} <= _codes(summary, 814573984)
    assert any(p.params.get("given") == "Квантовая алхимия" for p in answer.problems)


def test_active_programme_wins_over_its_inactive_twin_and_inactive_only_is_linked_with_a_warning(synced):
    job, summary = synced
    answer = _answer(summary, 814573985)
    assert sorted(d.programme_id for d in answer.deals) == [714, 716]
    assert "inactive_programme" in _codes(summary, 814573985)


@pytest.mark.parametrize("answer_id, code", [(814573986, "missing_email"), (814573987, "invalid_email")])
def test_answers_without_a_usable_email_write_nothing_and_need_attention(synced, answer_id, code):
    _, summary = synced
    answer = _answer(summary, answer_id)
    assert code in _codes(summary, answer_id) and not answer.deals


def test_an_answer_without_programmes_opens_one_deal_and_the_next_one_reuses_it(synced):
    job, summary = synced
    [john] = [c for c in job.portal.admin.contacts() if c["NAME"] == "John" and c["LAST_NAME"] == "Smith"]
    deals = _deals_of(job.portal, int(john["ID"]))
    assert len(deals) == 1 and not deals[0].get(PROGRAMME_LINK)
    comments = _comments(job.portal, deals[0]["ID"])
    assert sum("[#814573988:" in c for c in comments) == 1 and sum("[#814573989:" in c for c in comments) == 1
    assert any("country" in c or "Страна" in c for c in comments) and any("birthdate" in c or "Дата рождения" in c
                                                                         for c in comments)


def test_a_later_answer_reuses_her_open_deal_and_opens_one_for_the_new_programme(synced):
    job, _ = synced
    [maria] = _contact_by_email(job.portal, "maria.ivanova@example.ru")
    by_programme = {int(d[PROGRAMME_LINK]): d for d in _deals_of(job.portal, int(maria["ID"]))}
    digital = by_programme[700]
    assert digital["UTM_SOURCE"] == "yandex" and digital[ROISTAT] == "8467460"     # the first answer's, kept
    assert sum("[#814573990:" in c for c in _comments(job.portal, digital["ID"])) == 1
    law = by_programme[702]
    assert (law["UTM_SOURCE"], law["UTM_MEDIUM"], law["UTM_CAMPAIGN"]) == ("vk", "social", "olymp")
    assert law[ROISTAT] == "8467999"


# --- nothing twice ------------------------------------------------------------------------------

def _crm(portal) -> tuple:
    return (sorted(c["ID"] for c in portal.admin.contacts()), sorted(d["ID"] for d in portal.admin.deals()),
            sorted(e["ID"] for e in portal.admin.list_elements(17)), len(portal.admin.timeline_comments("deal")))


def test_a_second_run_creates_nothing(synced):
    job, _ = synced
    before = _crm(job.portal)
    job.sync()
    assert _crm(job.portal) == before


def test_a_new_empty_store_against_the_synced_portal_creates_nothing(synced):
    job, _ = synced
    before = _crm(job.portal)
    with fresh_database_url("sqlite:///unused.sqlite3") as other:
        fresh = RealJob(job.portal, other)
        fresh.deliver("postPoll", _samples("polls.json", "postPoll"))
        fresh.deliver("postAnswer", _samples("answers.json", "postAnswer"))
        fresh.sync()
    assert _crm(job.portal) == before


def test_redelivery_changes_nothing_and_an_edit_adds_the_phone_and_the_new_version_once(synced):
    job, _ = synced
    answers = _samples("answers.json", "postAnswer")
    job.deliver("postAnswer", answers)
    before = _crm(job.portal)
    job.sync()
    assert _crm(job.portal) == before
    edited = copy.deepcopy(next(a for a in answers if a["header_data"]["answer_id"] == 814573981))
    edited["data"]["telephone"] = "+79105550011"
    job.deliver("postAnswer", [edited])
    job.sync()
    [maria] = _contact_by_email(job.portal, "maria.ivanova@example.ru")
    assert sorted(p["VALUE"] for p in maria["PHONE"]) == ["+79104061652", "+79105550011"]
    for deal in _deals_of(job.portal, int(maria["ID"])):
        if int(deal[PROGRAMME_LINK]) in (700, 701):
            versions = [c for c in _comments(job.portal, deal["ID"]) if "[#814573981:" in c]
            assert len(versions) == 2 and sum("изменённая версия" in c for c in versions) == 1
    assert _crm(job.portal)[:3] == before[:3]
