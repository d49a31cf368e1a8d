"""Every row of sandbox/sample_data/README.md, synced into the sandbox, comes out as stated there."""
from __future__ import annotations

import pytest

from sandbox import Sandbox
from tests.conftest import Job


@pytest.fixture(scope="module")
def synced(module_store_url):
    """One real sync of the sample data; the tests below read the CRM and the ledger it left."""
    with Sandbox(portal="smart", answers=0, rate_limit=None) as box:
        job = Job(box, module_store_url)
        summary = job.run()
        yield box, job, summary


def deals_of(box, answer_id):
    return sorted((d for d in box.bitrix.admin.deals() if str(d.get("UF_CRM_ANSWER_ID")) == str(answer_id)),
                  key=lambda d: int(d["ID"]))


def contacts_with(box, email):
    return [c for c in box.bitrix.admin.contacts()
            if any(e["VALUE"].strip().lower() == email for e in c.get("EMAIL", []))]


def problems(job, answer_id):
    row = job.ledger().get_answer(answer_id)
    return row, {p["code"] for p in row.problems or []}


def test_run_ends_needing_attention_for_the_bad_answers(synced):
    _, _, summary = synced
    assert summary.outcome == "needs_attention"


def test_814573981_existing_contact_501_reused_with_two_deals(synced):
    box, job, _ = synced
    deals = deals_of(box, 814573981)
    assert [str(d["PARENT_ID_1040"]) for d in deals] == ["100", "101"]
    assert {str(d["CONTACT_ID"]) for d in deals} == {"501"}
    assert deals[0]["UTM_SOURCE"] == "yandex" and deals[0]["UTM_CAMPAIGN"] == "master-2025"
    assert "_ga=GA1.2.1234567890.1697000000" in deals[0]["UF_CRM_COOKIES"]
    assert len(contacts_with(box, "ivan.petrov@example.com")) == 1
    assert job.ledger().get_answer(814573981).status == "pushed"


def test_814573982_new_contact_with_phone_in_e164(synced):
    box, _, _ = synced
    (contact,) = contacts_with(box, "new.applicant@mail.ru")
    assert [p["VALUE"] for p in contact["PHONE"]] == ["+79031234567"]
    assert len(deals_of(box, 814573982)) == 1


def test_814573983_lowest_of_duplicate_contacts_reused_and_noted(synced):
    box, job, _ = synced
    (deal,) = deals_of(box, 814573983)
    assert str(deal["CONTACT_ID"]) == "502"
    assert len(contacts_with(box, "e.smirnova@example.org")) == 2  # no third one
    _, codes = problems(job, 814573983)
    assert "duplicate_contacts" in codes


def test_814573990_normalised_programme_gets_deal_unknown_one_needs_attention(synced):
    box, job, _ = synced
    (deal,) = deals_of(box, 814573990)
    assert str(deal["PARENT_ID_1040"]) == "100"
    row, codes = problems(job, 814573990)
    assert {"programme_normalised", "unknown_programme"} <= codes
    assert row.status == "needs_attention"


@pytest.mark.parametrize("answer_id,code", [(814573991, "missing_email"), (814573992, "invalid_email")])
def test_answers_without_usable_email_are_quarantined(synced, answer_id, code):
    box, job, _ = synced
    assert deals_of(box, answer_id) == []
    row, codes = problems(job, answer_id)
    assert row.status == "needs_attention" and code in codes


def test_814573993_same_person_reuses_contact_created_for_814573982(synced):
    box, _, _ = synced
    (contact,) = contacts_with(box, "new.applicant@mail.ru")
    (deal,) = deals_of(box, 814573993)
    assert str(deal["CONTACT_ID"]) == str(contact["ID"])


def test_814573994_emoji_name_no_programme_unknown_level(synced):
    box, job, _ = synced
    (contact,) = contacts_with(box, "emoji@example.com")
    assert contact["NAME"] == "Имя 🎓" and contact["LAST_NAME"] == "О'Коннор-Щукина"
    (deal,) = deals_of(box, 814573994)
    assert not deal.get("PARENT_ID_1040") and not deal.get("UF_CRM_LEVEL")
    row, codes = problems(job, 814573994)
    assert "unknown_enum_value" in codes and row.status == "pushed"


def test_814573995_edit_updates_instead_of_duplicating(synced):
    box, job, _ = synced
    before = deals_of(box, 814573995)
    assert len(before) == 2
    box.survey.admin.edit_answer(814573995, {"answers": [
        {"code": "email", "value": "edited@example.com"}, {"code": "first_name", "value": "Пётр"},
        {"code": "programs", "value": ["Экономика", "Data Science", "Психология"]}]})
    summary = job.run()
    after = deals_of(box, 814573995)
    assert len(after) == 3 and {d["ID"] for d in before} <= {d["ID"] for d in after}
    assert summary.counts.get("deals_updated", 0) >= 2
    assert len(contacts_with(box, "edited@example.com")) == 1


def test_914000001_inactive_owner_poll_form_goes_to_default_user(synced):
    box, job, _ = synced
    forms = [i for i in box.bitrix.admin.items(1036) if int(i["ufCrm6PollId"]) == 430131702]
    assert len(forms) == 1 and int(forms[0]["assignedById"]) == 17
    (deal,) = deals_of(box, 914000001)
    assert str(deal["PARENT_ID_1036"]) == str(forms[0]["id"])
    assert str(deal["ASSIGNED_BY_ID"]) == "17"


def test_second_run_creates_nothing(synced):
    box, job, _ = synced
    before = box.bitrix.admin.dump()
    job.run()
    after = box.bitrix.admin.dump()
    assert len(after["contacts"]) == len(before["contacts"])
    assert len(after["deals"]) == len(before["deals"])
