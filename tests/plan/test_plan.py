"""The planner as a pure function: answers + look-ups + mapping → commands and problems."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from sync.mapping import load_mapping
from sync.source.models import Answer, Poll
from sync.plan.build import AnswerInput, build_answer_plan, build_poll_plan
from sync.plan.models import AnswerLookups, CrmContact, CrmUser, PollContext, PollLookups, Programme, Ref

ROOT = Path(__file__).resolve().parents[2]
PORTAL = json.loads((ROOT / "sandbox" / "portal.json").read_text(encoding="utf-8"))
SAMPLES = {a["answer_id"]: a for a in json.loads((ROOT / "sandbox/sample_data/answers.json").read_text())["answers"]}
MAPPING = load_mapping(ROOT / "examples" / "field_mapping.smart-processes.json")
PROGRAMMES = [Programme(id=i["id"], title=i["title"]) for i in PORTAL["smart_processes"][1]["items"]]
POLLS = {430131691: PollContext(poll_id=430131691, poll_name="Опрос абитуриентов 2023", item_id=7, owner_id=1),
         430131702: PollContext(poll_id=430131702, poll_name="Master's open day 2025", item_id=8, owner_id=17)}
EXISTING = {
    "ivan.petrov@example.com": [CrmContact(id=501, name="Иван", last_name="Петров",
                                           emails=["ivan.petrov@example.com"])],
    "e.smirnova@example.org": [CrmContact(id=503, name="Елена", last_name="Смирнова", emails=["e.smirnova@example.org"]),
                               CrmContact(id=502, name="Елена", last_name="Смирнова", emails=["E.Smirnova@Example.org"],
                                          phones=["+79161112233"])],
}


def plan_for(*answer_ids, lookups=None, known=None, extra=()):
    answers = [AnswerInput(answer=Answer.model_validate(SAMPLES[i]), known_deal_ids=(known or {}).get(i, {}))
               for i in answer_ids]
    answers += [AnswerInput(answer=Answer.model_validate(a)) for a in extra]
    lookups = lookups or AnswerLookups(programmes=PROGRAMMES, contacts_by_email=EXISTING)
    return build_answer_plan(answers, polls=POLLS, lookups=lookups, mapping=MAPPING)


def codes(answer_plan):
    return {p.code for p in answer_plan.problems}


def test_existing_contact_reused_and_one_deal_per_programme():
    plan = plan_for(814573981)
    deals = [c for c in plan.commands if c.method == "crm.deal.add"]
    assert [d.params["fields"]["PARENT_ID_1040"] for d in deals] == [100, 101]
    assert all(d.params["fields"]["CONTACT_ID"] == 501 for d in deals)
    fields = deals[0].params["fields"]
    assert fields["CATEGORY_ID"] == 4 and fields["STAGE_ID"] == "C4:NEW" and fields["SOURCE_ID"] == "WEBFORM"
    assert fields["ASSIGNED_BY_ID"] == 1 and fields["PARENT_ID_1036"] == 7
    assert fields["UTM_SOURCE"] == "yandex" and fields["UTM_TERM"] == "юрист"
    assert fields["UF_CRM_COOKIES"] == "_ga=GA1.2.1234567890.1697000000; _ym_uid=1697000000123456789"
    assert fields["UF_CRM_LEVEL"] == "46" and fields["UF_CRM_CONSENT"] == 1  # booleans as 1/0: "N" is truthy in PHP
    assert fields["ORIGINATOR_ID"] == "survey-platform" and fields["ORIGIN_ID"] == "814573981:100"
    assert fields["TITLE"] == "Цифровой юрист — Петров Иван"
    assert not any(c.method == "crm.contact.add" for c in plan.commands)


def test_existing_contact_gets_only_empty_fields_and_a_new_phone_added():
    plan = plan_for(814573981)
    update = next(c for c in plan.commands if c.method == "crm.contact.update")
    assert update.params["id"] == 501
    assert update.params["fields"] == {"SECOND_NAME": "Сергеевич",
                                       "PHONE": [{"VALUE": "+79161234567", "VALUE_TYPE": "MOBILE"}]}


def test_new_respondent_phone_normalised_to_e164():
    plan = plan_for(814573982)
    add = next(c for c in plan.commands if c.method == "crm.contact.add")
    assert add.params["fields"]["PHONE"] == [{"VALUE": "+79031234567", "VALUE_TYPE": "MOBILE"}]
    assert add.params["fields"]["EMAIL"] == [{"VALUE": "new.applicant@mail.ru", "VALUE_TYPE": "WORK"}]


def test_duplicate_crm_contacts_lowest_id_chosen_and_noted():
    plan = plan_for(814573983)
    deal = next(c for c in plan.commands if c.method == "crm.deal.add")
    assert deal.params["fields"]["CONTACT_ID"] == 502
    assert "duplicate_contacts" in codes(plan.answers[0])


def test_programme_with_doubled_space_resolves_and_unknown_one_needs_attention():
    plan = plan_for(814573990)
    answer = plan.answers[0]
    assert [d.programme_id for d in answer.deals] == [100]
    assert {"programme_normalised", "unknown_programme"} <= codes(answer)
    assert answer.needs_attention


@pytest.mark.parametrize("answer_id,code", [(814573991, "missing_email"), (814573992, "invalid_email")])
def test_answer_without_usable_email_is_quarantined_with_reason(answer_id, code):
    plan = plan_for(answer_id)
    assert plan.commands == []
    assert code in codes(plan.answers[0]) and plan.answers[0].needs_attention


def test_two_answers_of_one_person_share_one_new_contact():
    plan = plan_for(814573982, 814573993)
    adds = [c for c in plan.commands if c.method == "crm.contact.add"]
    assert len(adds) == 1
    deals = [c for c in plan.commands if c.method == "crm.deal.add"]
    assert {d.params["fields"]["CONTACT_ID"] for d in deals} == {Ref(command=adds[0].name)}
    # the contact precedes its deals so one batch can chain them
    names = [c.name for c in plan.commands]
    assert names.index(adds[0].name) < min(names.index(d.name) for d in deals)


def test_no_programme_gives_one_deal_without_link_and_unknown_level_noted():
    plan = plan_for(814573994)
    deal = next(c for c in plan.commands if c.method == "crm.deal.add")
    assert "PARENT_ID_1040" not in deal.params["fields"] and "UF_CRM_LEVEL" not in deal.params["fields"]
    assert deal.params["fields"]["ORIGIN_ID"] == "814573994:0"
    assert {"no_programme", "unknown_enum_value"} <= codes(plan.answers[0])
    assert not plan.answers[0].needs_attention


def test_edited_answer_updates_known_deals_and_creates_new_programme_deal():
    plan = plan_for(814573995, known={814573995: {"104": 9001}})
    by_method = {c.method: c for c in plan.commands if c.method.startswith("crm.deal")}
    assert by_method["crm.deal.update"].params["id"] == 9001
    assert "STAGE_ID" not in by_method["crm.deal.update"].params["fields"]  # a manager's stage is kept
    assert by_method["crm.deal.add"].params["fields"]["PARENT_ID_1040"] == 101


def test_deal_found_by_external_key_is_updated_not_created():
    lookups = AnswerLookups(programmes=PROGRAMMES, contacts_by_email=EXISTING,
                            deals_by_origin={"814573981:100": 77, "814573981:101": 78})
    plan = plan_for(814573981, lookups=lookups)
    assert sorted(c.params["id"] for c in plan.commands if c.method == "crm.deal.update") == [77, 78]
    assert not any(c.method == "crm.deal.add" for c in plan.commands)


def test_all_programmes_unknown_needs_attention_and_writes_nothing():
    raw = dict(SAMPLES[814573982], answer_id=1, answers=[{"code": "email", "value": "x@example.com"},
                                                         {"code": "programs", "value": ["Алхимия"]}])
    plan = plan_for(extra=[raw])
    assert plan.commands == [] and "all_programmes_unknown" in codes(plan.answers[0])


def test_alias_from_mapping_resolves_programme():
    raw = dict(SAMPLES[814573982], answer_id=2, answers=[{"code": "email", "value": "y@example.com"},
                                                         {"code": "programs", "value": ["Цифровое право"]}])
    plan = plan_for(extra=[raw])
    assert plan.answers[0].deals[0].programme_id == 103 and "programme_alias" in codes(plan.answers[0])


def test_unknown_poll_needs_attention():
    raw = dict(SAMPLES[814573982], answer_id=3, poll_id=999)
    plan = plan_for(extra=[raw])
    assert plan.commands == [] and "unknown_poll" in codes(plan.answers[0])


def test_hostile_values_do_not_crash_the_planner():
    raw = dict(SAMPLES[814573982], answer_id=4, answers=[
        {"code": "email", "value": "z@example.com"}, {"code": "first_name", "value": "Я" * 10_000},
        {"code": "last_name", "value": {"nested": True}}, {"code": "programs", "value": 42},
        {"code": "phone", "value": True}, {"code": "level", "value": ["a"]}])
    plan = plan_for(extra=[raw])
    add = next(c for c in plan.commands if c.method == "crm.contact.add")
    assert len(add.params["fields"]["NAME"]) == 50
    assert {"value_cut", "invalid_value", "invalid_phone"} <= codes(plan.answers[0])


def test_inactive_poll_owner_falls_back_to_default_user_with_warning():
    poll = Poll.model_validate(json.loads((ROOT / "sandbox/sample_data/polls.json").read_text())["polls"][1])
    users = PollLookups(users_by_email={"left.company@hse.ru": CrmUser(id=31, email="left.company@hse.ru",
                                                                       active=False)})
    plan = build_poll_plan([(poll, "h", None)], users, MAPPING)
    assert plan.polls[0].owner_id == 17 and plan.polls[0].problems[0].code == "inactive_owner"
    fields = plan.commands[0].params["fields"]
    assert fields["ufCrm6PollId"] == 430131702 and fields["assignedById"] == 17 and plan.commands[0].method == "crm.item.add"


def test_planner_never_plans_two_creates_for_one_answer_id():
    raw = dict(SAMPLES[814573982])
    edited = dict(raw, updated_at="2025-10-21T09:15:02+03:00",
                  answers=[*raw["answers"][:-1], {"code": "consent", "value": False}])
    plan = plan_for(extra=[raw, edited])
    assert len(plan.answers) == 1
    assert len([c for c in plan.commands if c.method == "crm.deal.add"]) == 1
