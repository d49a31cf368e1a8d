"""Which deal an answer's programme lands on, and what the planner writes there, on the real
portal's mapping (universal lists, deal reuse "open", timeline summaries) and its variants."""
from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

from sync.mapping import FieldMapping, load_mapping
from sync.plan.build import AnswerInput, build_answer_plan, build_poll_plan
from sync.plan.models import (AnswerLookups, CrmContact, CrmDeal, PollContext, PollLookups, Programme, Ref)
from sync.plan.summary import answer_version
from sync.source.models import Answer, Poll

ROOT = Path(__file__).resolve().parents[2]
REAL = load_mapping(ROOT / "field_mapping.json")
LINK = "UF_CRM_1755626160"
ROISTAT = "UF_CRM_1755626174"
PROGRAMMES = [Programme(id=700, title="Цифровой юрист"), Programme(id=701, title="Античность"),
              Programme(id=714, title="Журналистика"), Programme(id=715, title="Журналистика", active=False),
              Programme(id=716, title="Философия", active=False)]
POLL = PollContext(poll_id=430131691, poll_name="Опрос абитуриентов", item_id=None, owner_id=23)
IVAN = CrmContact(id=501, name="Иван", last_name="Петров", emails=["ivan.petrov@example.com"])


def variant(**deal) -> FieldMapping:
    raw = json.loads((ROOT / "field_mapping.json").read_text(encoding="utf-8"))
    raw["deal"].update(deal)
    return FieldMapping.model_validate(raw)


def answer(answer_id=1, *, programmes=("Цифровой юрист",), email="ivan.petrov@example.com", utm=None,
           cookies=None, phone=None, **data) -> Answer:
    values = {"email": email, "firstname": "Иван", "lastname": "Петров", "educational_program_1": list(programmes)}
    if phone:
        values["telephone"] = phone
    values.update(data)
    items = [{"code": k, "value": v} for k, v in values.items()]
    stamp = datetime(2025, 10, 22, 11, 40, tzinfo=timezone.utc).isoformat()
    return Answer.model_validate({"answer_id": answer_id, "poll_id": POLL.poll_id, "created_at": stamp,
                                  "updated_at": stamp, "answers": items,
                                  "utm": utm if utm is not None else {"utm_source": "yandex", "utm_medium": "cpc"},
                                  "cookies": cookies if cookies is not None else {"roistat_visit": "8467460"},
                                  "meta": {"url": "https://ba.hse.ru/polls/430131691.html"}})


def plan(*answers, lookups: AnswerLookups | None = None, mapping: FieldMapping = REAL, known=None, edited=False):
    inputs = [AnswerInput(answer=a, content_hash="c" * 64, known_deal_ids=(known or {}).get(a.answer_id, {}),
                          edited=edited) for a in answers]
    lookups = lookups or AnswerLookups(programmes=PROGRAMMES)
    return build_answer_plan(inputs, polls={POLL.poll_id: POLL}, lookups=lookups, mapping=mapping)


def with_deals(*deals: CrmDeal, contacts=(IVAN,)) -> AnswerLookups:
    by_contact: dict[int, list[int]] = {}
    for d in deals:
        by_contact.setdefault(d.contact_id, []).append(d.id)
    by_origin = {d.origin_id: d.id for d in deals if d.originator_id == REAL.source_name and d.origin_id}
    return AnswerLookups(programmes=PROGRAMMES, deals={d.id: d for d in deals}, deals_by_contact=by_contact,
                         deals_by_origin=by_origin,
                         contacts_by_email={c.emails[0]: [c] for c in contacts})


def commands(p, method):
    return [c for c in p.commands if c.method == method]


def test_the_contacts_open_deal_for_the_programme_is_reused_filled_and_annotated_not_overwritten():
    manager = CrmDeal(id=9001, contact_id=501, open=True, programme_id=700,
                      fields={"UTM_SOURCE": "vk", ROISTAT: None, "UTM_MEDIUM": None})
    p = plan(answer(), lookups=with_deals(manager))
    assert not commands(p, "crm.deal.add")
    [update] = commands(p, "crm.deal.update")
    # The UTM group is one attribution: one of it set → none of it touched; empty Roistat filled.
    assert update.params["id"] == 9001 and update.params["fields"] == {ROISTAT: "8467460"}
    [summary] = commands(p, "crm.timeline.comment.add")
    assert summary.params["fields"]["ENTITY_ID"] == 9001 and "[#1:" in summary.params["fields"]["COMMENT"]
    assert p.answers[0].deals[0].action == "reuse"


def test_a_closed_deal_is_left_alone_in_open_mode_but_reused_in_any_mode():
    closed = CrmDeal(id=9002, contact_id=501, open=False, programme_id=700)
    open_plan = plan(answer(), lookups=with_deals(closed))
    assert [c.params["fields"][LINK] for c in commands(open_plan, "crm.deal.add")] == [700]
    any_plan = plan(answer(), lookups=with_deals(closed), mapping=variant(reuse="any"))
    assert not commands(any_plan, "crm.deal.add") and any_plan.answers[0].deals[0].deal_id == 9002


def test_never_mode_makes_a_deal_per_answer_even_when_the_contact_has_one_open():
    manager = CrmDeal(id=9001, contact_id=501, open=True, programme_id=700)
    p = plan(answer(), lookups=with_deals(manager), mapping=variant(reuse="never"))
    [add] = commands(p, "crm.deal.add")
    assert add.params["fields"]["ORIGIN_ID"] == "1:700" and add.params["fields"]["ORIGINATOR_ID"] == REAL.source_name


def test_two_answers_of_one_run_for_one_new_contact_and_programme_make_one_deal_with_both_summaries():
    p = plan(answer(1, email="new@example.ru"), answer(2, email="new@example.ru", cookies={}),
             lookups=AnswerLookups(programmes=PROGRAMMES))
    [add] = commands(p, "crm.deal.add")
    summaries = commands(p, "crm.timeline.comment.add")
    assert [s.params["fields"]["ENTITY_ID"] for s in summaries] == [Ref(command=add.name)] * 2
    assert sorted(add.answer_ids) == [1, 2]
    assert [d.command for a in p.answers for d in a.deals] == [add.name, add.name]


def test_the_deal_an_answer_created_follows_its_edit_clearing_what_the_new_version_no_longer_says():
    mine = CrmDeal(id=9100, contact_id=501, originator_id=REAL.source_name, origin_id="1:700", programme_id=700,
                   fields={"UTM_SOURCE": "yandex", "UTM_MEDIUM": "cpc", ROISTAT: "8467460"},
                   summaries={f"1:{'0' * 8}"})
    p = plan(answer(utm={"utm_source": "vk"}, cookies={}), lookups=with_deals(mine), edited=True)
    [update] = commands(p, "crm.deal.update")
    fields = update.params["fields"]
    assert fields["UTM_SOURCE"] == "vk" and fields["UTM_MEDIUM"] == "" and fields[ROISTAT] == ""
    assert "CONTACT_ID" not in fields        # unchanged contact: not re-sent (it can drop a manager's links)
    [summary] = commands(p, "crm.timeline.comment.add")
    assert "изменённая версия" in summary.params["fields"]["COMMENT"]


def test_a_summary_already_on_the_deal_is_not_written_again():
    a = answer()
    mine = CrmDeal(id=9100, contact_id=501, originator_id=REAL.source_name, origin_id="1:700", programme_id=700,
                   summaries={f"1:{answer_version(a)}"})
    p = plan(a, lookups=with_deals(mine))
    assert not commands(p, "crm.timeline.comment.add")


def test_a_fill_in_of_an_existing_contact_is_a_command_the_answer_needs():
    p = plan(answer(phone="+79031234567"), lookups=with_deals())
    [update] = commands(p, "crm.contact.update")
    assert update.params["fields"]["PHONE"][0]["VALUE"] == "+79031234567" and update.answer_ids == [1]


def test_summaries_to_comments_append_to_what_the_deal_holds():
    mapping = variant(summary={"to": "comments", "language": "ru"})
    manager = CrmDeal(id=9001, contact_id=501, open=True, programme_id=700, fields={"COMMENTS": "Звонил 12.09"})
    p = plan(answer(), lookups=with_deals(manager), mapping=mapping)
    [update] = commands(p, "crm.deal.update")
    assert update.params["fields"]["COMMENTS"].startswith("Звонил 12.09\n\n") and "[#1:" in update.params[
        "fields"]["COMMENTS"]
    assert not commands(p, "crm.timeline.comment.add")


def test_booleans_go_as_1_or_0_and_long_values_whole_while_short_columns_are_cut_and_reported():
    mapping = variant(fields={**REAL.deal.fields, "UF_CRM_1749202066455": "meta:mailingListSubscription",
                              "UF_CRM_1750158605607": "question:hse_school"})
    long_school = "Ш" * 5000
    a = answer(hse_school=long_school, lastname="Я" * 60)
    a.meta["mailingListSubscription"] = False
    p = plan(a, lookups=AnswerLookups(programmes=PROGRAMMES), mapping=mapping)
    [add] = commands(p, "crm.deal.add")
    assert add.params["fields"]["UF_CRM_1749202066455"] == 0
    assert add.params["fields"]["UF_CRM_1750158605607"] == long_school
    cuts = [pr.params for pr in p.answers[0].problems if pr.code == "value_cut"]
    assert {"field": "last_name", "length": 60, "kept": 50} in cuts


def test_active_programme_wins_and_an_inactive_only_one_is_linked_with_a_warning():
    p = plan(answer(programmes=["Журналистика", "философия"], email="x@example.ru"),
             lookups=AnswerLookups(programmes=PROGRAMMES))
    assert [c.params["fields"][LINK] for c in commands(p, "crm.deal.add")] == [714, 716]
    assert "inactive_programme" in {pr.code for pr in p.answers[0].problems}


def test_poll_form_in_a_list_is_read_merged_and_written_whole():
    poll = Poll.model_validate({"poll_id": 430131691, "poll_name": "Новое имя", "employee_email": "m@hse.ru",
                                "created_at": "2025-01-01T00:00:00+00:00", "updated_at": "2025-01-02T00:00:00+00:00"})
    element = {"ID": "55", "CODE": "430131691", "NAME": "Старое имя", "PROPERTY_64": {"1": "430131691"},
               "PROPERTY_74": {"9": "700"}}
    p = build_poll_plan([(poll, "h", None)], PollLookups(items_by_poll={430131691: 55},
                                                         elements_by_poll={430131691: element}), REAL)
    [update] = p.commands
    assert update.method == "lists.element.update" and update.params["ELEMENT_ID"] == 55
    assert update.params["ELEMENT_CODE"] == "430131691"
    fields = update.params["FIELDS"]
    assert fields["NAME"] == "Новое имя" and fields["PROPERTY_74"] == "700" and fields["PROPERTY_64"] == "430131691"
    assert fields["PROPERTY_66"] == 17   # m@hse.ru unknown → the default user
