"""The emulator serving the admissions office's real portal (sandbox/real-portal.json,
real-portal.md): portal choice, deals and their user fields, stage semantics, timeline
comments, users, required contact fields, and crm.item.batchImport's multi-fields."""
from __future__ import annotations

import pytest
import requests

from sandbox.bitrix import BitrixEmulator
from sandbox.bitrix.state import REAL_PORTAL_PATH

from tests.sandbox.test_bitrix_lists import Client


@pytest.fixture
def portal():
    with BitrixEmulator(rate_limit=None, portal="real", user_id=169, scopes=("crm", "user", "lists")) as emulator:
        yield emulator


@pytest.fixture
def b24(portal):
    client = Client(portal.webhook_url)
    yield client
    client.session.close()


# --- choosing the portal -------------------------------------------------------------------

def test_smart_process_portal_is_still_the_default_and_loads_by_name():
    for kwargs in ({}, {"portal": "smart"}, {"portal_path": "smart"}):
        with BitrixEmulator(rate_limit=None, **kwargs) as emulator:
            assert set(emulator.crm.smart_processes) == {1036, 1040}
            assert [p["id"] for p in emulator.admin.items(1040)][:2] == [100, 101]
            assert emulator.crm.lists.lists == {}
            assert emulator.admin.deals() == []


@pytest.mark.parametrize("kwargs", [{"portal": "real"}, {"portal": str(REAL_PORTAL_PATH)},
                                    {"portal_path": "real"}, {"portal_path": REAL_PORTAL_PATH}])
def test_real_portal_loads_by_name_or_path(kwargs):
    with BitrixEmulator(rate_limit=None, **kwargs) as emulator:
        assert set(emulator.crm.lists.lists) == {17, 18}
        assert emulator.crm.smart_processes == {}
        assert [d["ID"] for d in emulator.admin.deals()] == [9001, 9002]


# --- deals ---------------------------------------------------------------------------------

def test_deal_fields_describe_the_real_user_fields(b24):
    fields = b24.ok("crm.deal.fields")
    programme = fields["UF_CRM_1755626160"]
    assert (programme["type"], programme["isMultiple"], programme["settings"]) == ("iblock_element", False,
                                                                                   {"IBLOCK_ID": 18})
    assert programme["formLabel"] == "Образовательная программа"
    assert fields["UF_CRM_1755626174"]["type"] == "string"
    assert fields["UF_CRM_1724343017173"]["items"] == [{"ID": "26", "VALUE": "9"}, {"ID": "27", "VALUE": "10"},
                                                       {"ID": "28", "VALUE": "11"}]
    assert fields["UF_CRM_1749202066455"]["type"] == "boolean"
    assert "UF_CRM_ANSWER_ID" not in fields


def test_seeded_contacts_and_deals(b24):
    deal = b24.ok("crm.deal.get", {"id": 9001})
    assert (deal["CONTACT_ID"], deal["STAGE_ID"], deal["STAGE_SEMANTIC_ID"], deal["CLOSED"]) == (
        "501", "PREPARATION", "P", "N")
    assert (deal["UF_CRM_1755626160"], deal["UTM_SOURCE"], deal["ASSIGNED_BY_ID"]) == ("700", "vk", "23")
    assert deal["COMMENTS"] == "Звонил 12.09, перезвонить"
    lost = b24.ok("crm.deal.get", {"id": 9002})
    assert (lost["STAGE_ID"], lost["STAGE_SEMANTIC_ID"], lost["CLOSED"]) == ("LOSE", "F", "Y")
    contacts = b24.ok("crm.contact.list", {"select": ["ID", "SECOND_NAME", "EMAIL"]})
    assert [c["ID"] for c in contacts] == ["501", "502", "503"]


def test_new_deal_gets_the_first_stage_of_pipeline_0_and_ids_after_the_seeds(b24):
    deal_id = b24.ok("crm.deal.add", {"fields": {"TITLE": "Новая", "CONTACT_ID": 501, "UF_CRM_1755626160": 704}})
    assert deal_id == 9003
    deal = b24.ok("crm.deal.get", {"id": deal_id})
    assert (deal["CATEGORY_ID"], deal["STAGE_ID"], deal["UF_CRM_1755626160"]) == ("0", "NEW", "704")


def test_deal_list_by_contact_ids_and_stage_semantics(b24):
    won = b24.ok("crm.deal.add", {"fields": {"TITLE": "Выиграна", "CONTACT_ID": 502, "STAGE_ID": "WON"}})
    other = b24.ok("crm.deal.add", {"fields": {"TITLE": "Чужая", "CONTACT_ID": 503}})

    def ids(filt: dict) -> list[str]:
        return [r["ID"] for r in b24.ok("crm.deal.list", {"filter": filt, "select": ["ID"], "order": {"ID": "ASC"}})]

    assert ids({"@CONTACT_ID": [501, 502]}) == ["9001", "9002", str(won)]
    assert ids({"@CONTACT_ID": [501, 502], "STAGE_SEMANTIC_ID": "P"}) == ["9001"]
    assert ids({"@CONTACT_ID": ["501", "502"], "!STAGE_SEMANTIC_ID": "P"}) == ["9002", str(won)]
    assert ids({"@CONTACT_ID": [501, 502, 503], "STAGE_SEMANTIC_ID": ["S", "F"]}) == ["9002", str(won)]
    assert ids({"CONTACT_ID": 503, "CATEGORY_ID": 0}) == [str(other)]


def test_deal_list_filters_by_programme_and_pages(portal, b24):
    portal.admin.add_deals([{"TITLE": f"D{i}", "CONTACT_ID": 501, "UF_CRM_1755626160": 706} for i in range(60)])
    first = b24("crm.deal.list", {"filter": {"UF_CRM_1755626160": 706, "CONTACT_ID": 501}, "select": ["ID"]})
    assert (len(first["result"]), first["total"], first["next"]) == (50, 60, 50)
    assert [r["ID"] for r in b24.ok("crm.deal.list", {"filter": {"UF_CRM_1755626160": "700"}})] == ["9001"]


def test_stage_statuses_carry_the_portal_semantics(b24):
    rows = b24.ok("crm.status.list", {"filter": {"ENTITY_ID": "DEAL_STAGE"}})
    assert [(r["STATUS_ID"], r["SEMANTICS"]) for r in rows] == [
        ("NEW", None), ("PREPARATION", None), ("EXECUTING", None), ("WON", "S"), ("LOSE", "F")]


@pytest.mark.parametrize("sent, stored", [
    ("1", "1"), ("0", "0"), (1, "1"), (0, "0"), (True, "1"), (False, "0"), ("Y", "1"), ("", "0"),
    ("N", "1"),        # PHP: a non-empty string other than "0" is true (bitrix24-rest.md §10)
    ("false", "1"),
])
def test_boolean_user_fields_are_stored_as_php_casts_them(b24, sent, stored):
    deal_id = b24.ok("crm.deal.add", {"fields": {"TITLE": "Паспорт", "UF_CRM_1749202066455": sent}})
    assert b24.ok("crm.deal.get", {"id": deal_id})["UF_CRM_1749202066455"] == stored


def test_boolean_n_reaches_the_real_portal_through_a_batch_query_string_as_yes(b24):
    # A client that encodes False as "N" in a batch command stores "yes" on this portal.
    reply = b24.ok("batch", {"cmd": {"d": "crm.deal.add?fields[TITLE]=x&fields[UF_CRM_1750854360610]=N"}})
    assert b24.ok("crm.deal.get", {"id": reply["result"]["d"]})["UF_CRM_1750854360610"] == "1"


def test_smart_portal_keeps_reading_n_as_no():
    with BitrixEmulator(rate_limit=None) as emulator:
        client = Client(emulator.webhook_url)
        deal_id = client.ok("crm.deal.add", {"fields": {"TITLE": "x", "UF_CRM_CONSENT": "N"}})
        assert client.ok("crm.deal.get", {"id": deal_id})["UF_CRM_CONSENT"] == "0"


# --- timeline comments ---------------------------------------------------------------------

def test_timeline_comment_add_get_and_list(portal, b24):
    first = b24.ok("crm.timeline.comment.add", {"fields": {"ENTITY_ID": 9001, "ENTITY_TYPE": "deal",
                                                           "COMMENT": "Ответ 814573982"}})
    second = b24.ok("crm.timeline.comment.add", {"fields": {"ENTITY_ID": "9001", "ENTITY_TYPE": "DEAL",
                                                            "COMMENT": "Ответ 814573990"}})
    b24.ok("crm.timeline.comment.add", {"fields": {"ENTITY_ID": 9002, "ENTITY_TYPE": "deal", "COMMENT": "Другая"}})
    assert isinstance(first, int) and second == first + 1
    got = b24.ok("crm.timeline.comment.get", {"id": first})
    assert {k: got[k] for k in ("ID", "ENTITY_ID", "ENTITY_TYPE", "AUTHOR_ID", "COMMENT")} == {
        "ID": str(first), "ENTITY_ID": "9001", "ENTITY_TYPE": "deal", "AUTHOR_ID": "169", "COMMENT": "Ответ 814573982"}
    assert got["CREATED"][-6:] == "+03:00"
    body = b24("crm.timeline.comment.list", {"filter": {"ENTITY_ID": 9001, "ENTITY_TYPE": "deal"},
                                             "select": ["ID", "COMMENT"]})
    assert body["result"] == [{"ID": str(first), "COMMENT": "Ответ 814573982"},
                              {"ID": str(second), "COMMENT": "Ответ 814573990"}]
    assert body["total"] == 2
    assert [c["COMMENT"] for c in portal.crm.dump_timeline_comments("deal", 9001)] == [
        "Ответ 814573982", "Ответ 814573990"]
    assert len(portal.crm.dump_timeline_comments()) == 3


def test_timeline_comment_list_pages_by_50(b24):
    for i in range(55):
        b24.ok("crm.timeline.comment.add", {"fields": {"ENTITY_ID": 9001, "ENTITY_TYPE": "deal", "COMMENT": f"c{i}"}})
    first = b24("crm.timeline.comment.list", {"filter": {"ENTITY_ID": 9001, "ENTITY_TYPE": "deal"}})
    assert (len(first["result"]), first["total"], first["next"]) == (50, 55, 50)
    rest = b24("crm.timeline.comment.list", {"filter": {"ENTITY_ID": 9001, "ENTITY_TYPE": "deal"}, "start": 50})
    assert [c["COMMENT"] for c in rest["result"]] == [f"c{i}" for i in range(50, 55)] and "next" not in rest


@pytest.mark.parametrize("params, description", [
    ({"FIELDS": {"ENTITY_ID": 9001, "ENTITY_TYPE": "deal", "COMMENT": "x"}},
     "Parameter 'fields' must be array (only the lower-case key 'fields' is accepted)."),
    ({"fields": {"ENTITY_TYPE": "deal", "COMMENT": "x"}}, "ENTITY_ID is not defined or invalid."),
    ({"fields": {"ENTITY_ID": 9001, "ENTITY_TYPE": "smart", "COMMENT": "x"}}, "ENTITY_TYPE is not defined or invalid."),
    ({"fields": {"ENTITY_ID": 123456, "ENTITY_TYPE": "deal", "COMMENT": "x"}}, "Not found"),
    ({"fields": {"ENTITY_ID": 9001, "ENTITY_TYPE": "deal", "COMMENT": "  "}}, "Empty comment message."),
])
def test_timeline_comment_add_errors(portal, b24, params, description):
    assert b24.error("crm.timeline.comment.add", params) == (400, "", description)
    assert portal.crm.dump_timeline_comments() == []


def test_timeline_comment_list_needs_the_owner_and_get_of_unknown_is_not_found(b24):
    assert b24.error("crm.timeline.comment.list", {"filter": {"ENTITY_TYPE": "deal"}})[2] == \
        "ENTITY_ID is not defined or invalid."
    assert b24.error("crm.timeline.comment.get", {"id": 999}) == (400, "", "Not found")


# --- users ---------------------------------------------------------------------------------

def test_user_get_by_email_and_id_shows_the_inactive_user(b24):
    [left] = b24.ok("user.get", {"FILTER": {"EMAIL": "left.company@hse.ru"}})
    assert (left["ID"], left["ACTIVE"]) == ("31", False)
    assert b24.ok("user.get", {"FILTER": {"EMAIL": "left.company@hse.ru", "ACTIVE": True}}) == []
    assert b24.ok("user.get", {"ID": 23})[0]["EMAIL"] == "m.ivanova@hse.ru"
    assert b24.ok("user.get", {"FILTER": {"EMAIL": "nobody@hse.ru"}}) == []


def test_the_webhook_belongs_to_user_169(b24):
    me = b24.ok("profile")
    assert (me["ID"], me["NAME"]) == ("169", "Интеграция")


# --- contacts: required fields -------------------------------------------------------------

def test_contact_fields_flag_names_required_and_have_no_user_fields(b24):
    fields = b24.ok("crm.contact.fields")
    assert {n for n, d in fields.items() if d["isRequired"]} == {"NAME", "SECOND_NAME", "LAST_NAME"}
    assert not any(d["isDynamic"] for d in fields.values())


def test_required_contact_fields_are_not_enforced_by_default(b24):
    contact_id = b24.ok("crm.contact.add", {"fields": {"NAME": "John", "LAST_NAME": "Smith"}})
    assert b24.ok("crm.contact.get", {"id": contact_id})["SECOND_NAME"] is None


def test_enforced_required_fields_refuse_the_contact(portal, b24):
    portal.crm.enforce_required = True
    assert b24.error("crm.contact.add", {"fields": {"NAME": "John", "LAST_NAME": "Smith",
                                                    "EMAIL": [{"VALUE": "john@example.com"}]}}) == (
        400, "ERROR_CORE", 'Не заполнено обязательное поле "Отчество"<br />')
    assert [c["ID"] for c in portal.admin.contacts()] == [501, 502, 503]
    contact_id = b24.ok("crm.contact.add", {"fields": {"NAME": "Мария", "SECOND_NAME": "Сергеевна",
                                                       "LAST_NAME": "Иванова"}})
    # An update may leave required fields out, but may not blank one.
    assert b24.ok("crm.contact.update", {"id": contact_id, "fields": {"POST": "Абитуриент"}}) is True
    assert b24.error("crm.contact.update", {"id": contact_id, "fields": {"LAST_NAME": ""}})[2] == \
        'Не заполнено обязательное поле "Фамилия"<br />'
    result = b24.ok("crm.item.batchImport", {"entityTypeId": 3, "data": [{"name": "A", "lastName": "B"}]})
    assert result["items"][0]["error"] == "CRM_FIELD_ERROR_REQUIRED"


# --- crm.item.batchImport and multi-fields (review issue 11) -------------------------------

def test_batch_import_ignores_fm_and_takes_documented_email_and_phone(portal, b24):
    result = b24.ok("crm.item.batchImport", {"entityTypeId": 3, "data": [
        {"name": "Fm", "lastName": "Only", "fm": [{"typeId": "EMAIL", "valueType": "WORK", "value": "fm@example.com"}]},
        {"name": "Doc", "lastName": "Form", "EMAIL": [{"VALUE": "doc@example.com", "VALUE_TYPE": "WORK"}],
         "PHONE": [{"VALUE": "+79104061652", "VALUE_TYPE": "MOBILE"}]}]})
    fm_id, doc_id = (item["item"]["id"] for item in result["items"])
    contacts = {c["ID"]: c for c in portal.admin.contacts()}
    assert "EMAIL" not in contacts[fm_id] and contacts[fm_id]["HAS_EMAIL"] == "N"
    assert [e["VALUE"] for e in contacts[doc_id]["EMAIL"]] == ["doc@example.com"]
    assert [(p["VALUE"], p["VALUE_TYPE"]) for p in contacts[doc_id]["PHONE"]] == [("+79104061652", "MOBILE")]
    assert b24.ok("crm.duplicate.findbycomm", {"type": "EMAIL", "values": ["fm@example.com"]}) == []


def test_item_add_still_takes_fm():
    with BitrixEmulator(rate_limit=None) as emulator:
        client = Client(emulator.webhook_url)
        item = client.ok("crm.item.add", {"entityTypeId": 3, "fields": {
            "name": "Fm", "fm": [{"typeId": "EMAIL", "valueType": "WORK", "value": "fm@example.com"}]}})["item"]
        assert [f["value"] for f in item["fm"]] == ["fm@example.com"]


def test_batch_import_on_the_smart_portal_also_ignores_fm():
    with BitrixEmulator(rate_limit=None) as emulator:
        reply = requests.post(emulator.webhook_url + "crm.item.batchImport", json={"entityTypeId": 3, "data": [
            {"name": "Fm", "fm": [{"typeId": "EMAIL", "valueType": "WORK", "value": "fm@example.com"}]}]}).json()
        contact_id = reply["result"]["items"][0]["item"]["id"]
        assert "EMAIL" not in {c["ID"]: c for c in emulator.admin.contacts()}[contact_id]
