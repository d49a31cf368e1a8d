"""CRM methods of the Bitrix24 emulator: shapes, lists, filters, fields, multi-fields,
duplicates, smart processes and helpers (checklist items 6 and 15-25)."""
from __future__ import annotations

import time

import pytest
import requests

from sandbox.bitrix import BitrixEmulator


@pytest.fixture
def portal():
    with BitrixEmulator(rate_limit=None) as emulator:
        yield emulator


class Client:
    """Just enough of a webhook client for the tests: POST JSON, return (status, body)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.session = requests.Session()

    def __call__(self, method: str, params: dict | None = None) -> dict:
        reply = self.session.post(self.url + method, json=params or {})
        body = reply.json()
        body["_status"] = reply.status_code
        return body

    def ok(self, method: str, params: dict | None = None):
        body = self(method, params)
        assert body["_status"] == 200, body
        return body["result"]


@pytest.fixture
def b24(portal):
    client = Client(portal.webhook_url)
    yield client
    client.session.close()


# --- 6. value types ------------------------------------------------------------------------

def test_legacy_rows_are_strings_and_add_returns_int_update_true(b24):
    deal_id = b24.ok("crm.deal.add", {"fields": {"TITLE": "Типы", "OPPORTUNITY": 19999.99, "CATEGORY_ID": 4,
                                                 "ASSIGNED_BY_ID": 17, "UF_CRM_LEVEL": 46, "UF_CRM_CONSENT": "Y"}})
    assert isinstance(deal_id, int)
    assert b24.ok("crm.deal.update", {"id": deal_id, "fields": {"TITLE": "Типы 2"}}) is True
    row = b24.ok("crm.deal.get", {"id": deal_id})
    assert row["ID"] == str(deal_id)
    assert row["OPPORTUNITY"] == "19999.99"
    assert row["CATEGORY_ID"] == "4"
    assert row["STAGE_ID"] == "C4:NEW"
    assert row["ASSIGNED_BY_ID"] == "17"
    assert row["UF_CRM_LEVEL"] == "46"
    assert row["UF_CRM_CONSENT"] == "1"
    assert row["COMPANY_ID"] is None
    assert row["DATE_CREATE"][-6:] == "+03:00"


def test_item_rows_are_typed(b24):
    item = b24.ok("crm.item.add", {"entityTypeId": 1036, "fields": {"title": "Опрос", "ufCrm6PollId": "77"}})["item"]
    assert item["id"] == 1 and isinstance(item["id"], int)
    assert item["ufCrm6PollId"] == 77
    assert item["createdBy"] == 1
    assert item["entityTypeId"] == 1036


# --- 15. lists and paging ------------------------------------------------------------------

def test_list_pages_by_50_with_total_and_next_only_when_more(portal, b24):
    portal.admin.add_deals([{"TITLE": f"D{i}"} for i in range(120)])
    first = b24("crm.deal.list", {"select": ["ID"]})
    assert (len(first["result"]), first["total"], first["next"]) == (50, 120, 50)
    third = b24("crm.deal.list", {"select": ["ID"], "start": 100})
    assert (len(third["result"]), third["total"]) == (20, 120)
    assert "next" not in third
    assert third["result"][0]["ID"] == "101"


def test_legacy_list_start_is_rounded_down_to_a_page(portal, b24):
    portal.admin.add_deals([{"TITLE": f"D{i}"} for i in range(120)])
    body = b24("crm.deal.list", {"select": ["ID"], "start": 75})
    assert (body["result"][0]["ID"], body["next"]) == ("51", 100)
    items = b24("crm.item.list", {"entityTypeId": 2, "select": ["id"], "start": 75})
    assert items["result"]["items"][0]["id"] == 76, "crm.item.list takes the offset as is"


def test_list_start_minus_one_skips_count_and_next(portal, b24):
    portal.admin.add_deals([{"TITLE": f"D{i}"} for i in range(60)])
    body = b24("crm.deal.list", {"select": ["ID"], "start": -1, "filter": {">ID": 5}, "order": {"ID": "ASC"}})
    assert body["total"] == 0
    assert "next" not in body
    assert [r["ID"] for r in body["result"]][:2] == ["6", "7"]
    assert len(body["result"]) == 50


def test_list_empty_result_still_has_total(b24):
    body = b24("crm.deal.list", {"filter": {"ORIGIN_ID": "nothing"}})
    assert body["result"] == [] and body["total"] == 0


def test_list_honours_order(portal, b24):
    portal.admin.add_deals([{"TITLE": t} for t in ("b", "c", "a")])
    rows = b24.ok("crm.deal.list", {"order": {"TITLE": "DESC"}, "select": ["TITLE"]})
    assert [r["TITLE"] for r in rows] == ["c", "b", "a"]
    rows = b24.ok("crm.deal.list", {"order": {"ID": "DESC"}, "select": ["ID"]})
    assert [r["ID"] for r in rows] == ["3", "2", "1"]


# --- 16. filter operators ------------------------------------------------------------------

@pytest.fixture
def five_deals(portal):
    portal.admin.add_deals([{"TITLE": "Alpha one", "OPPORTUNITY": 10}, {"TITLE": "Beta", "OPPORTUNITY": 20},
                            {"TITLE": "alpha two", "OPPORTUNITY": 30}, {"TITLE": "Gamma", "OPPORTUNITY": 40},
                            {"TITLE": "Delta", "OPPORTUNITY": 50, "SOURCE_ID": "WEB"}])


@pytest.mark.parametrize("filt, ids", [
    ({"ID": 2}, [2]),
    ({"=ID": 2}, [2]),
    ({"!ID": 2}, [1, 3, 4, 5]),
    ({"!=ID": 2}, [1, 3, 4, 5]),
    ({">ID": 3}, [4, 5]),
    ({">=ID": 3}, [3, 4, 5]),
    ({"<ID": 3}, [1, 2]),
    ({"<=ID": 3}, [1, 2, 3]),
    ({"@ID": [1, 4]}, [1, 4]),
    ({"!@ID": [1, 4]}, [2, 3, 5]),
    ({">OPPORTUNITY": "25", "<OPPORTUNITY": 45}, [3, 4]),
    ({"%TITLE": "alpha"}, [1, 3]),
    ({"=%TITLE": "Alpha%"}, [1, 3]),
    ({"%=TITLE": "%ta"}, [2, 5]),
    ({"SOURCE_ID": "WEB"}, [5]),
    ({"SOURCE_ID": ""}, [1, 2, 3, 4]),
    ({"NOT_A_FIELD": "x"}, [1, 2, 3, 4, 5]),
])
def test_filter_operators(five_deals, b24, filt, ids):
    rows = b24.ok("crm.deal.list", {"filter": filt, "select": ["ID"]})
    assert [int(r["ID"]) for r in rows] == ids


def test_multifield_filter_is_exact_match_only(portal, b24):
    exact = b24.ok("crm.contact.list", {"filter": {"EMAIL": "E.Smirnova@Example.org"}, "select": ["ID"]})
    other_case = b24.ok("crm.contact.list", {"filter": {"EMAIL": "e.smirnova@example.org"}, "select": ["ID"]})
    like = b24.ok("crm.contact.list", {"filter": {"%EMAIL": "smirnova"}, "select": ["ID"]})
    assert [r["ID"] for r in exact] == ["502"]
    assert [r["ID"] for r in other_case] == ["503"]
    assert like == []


# --- 17. select ----------------------------------------------------------------------------

def test_select_star_excludes_multifields_and_user_fields(b24):
    row = b24.ok("crm.contact.list", {"filter": {"ID": 502}, "select": ["*"]})[0]
    assert "NAME" in row and "EMAIL" not in row and "PHONE" not in row
    assert "UF_CRM_CONTACT_SOURCE_POLL" not in row


def test_select_uf_mask_and_named_multifields(b24):
    row = b24.ok("crm.contact.list", {"filter": {"ID": 502}, "select": ["UF_*", "EMAIL", "PHONE"]})[0]
    assert set(row) == {"ID", "UF_CRM_CONTACT_SOURCE_POLL", "EMAIL", "PHONE"}
    assert row["EMAIL"] == [{"ID": "2", "VALUE_TYPE": "HOME", "VALUE": "E.Smirnova@Example.org", "TYPE_ID": "EMAIL"}]
    assert row["PHONE"][0]["VALUE"] == "+79161112233"


def test_default_select_is_star_plus_user_fields(b24):
    row = b24.ok("crm.deal.list", {"filter": {}})
    assert row == []
    b24.ok("crm.deal.add", {"fields": {"TITLE": "x"}})
    row = b24.ok("crm.deal.list", {})[0]
    assert "UF_CRM_LEVEL" in row and "TITLE" in row and "CONTACT_IDS" not in row


def test_deal_list_neither_selects_nor_filters_contact_ids(b24):
    b24.ok("crm.deal.add", {"fields": {"TITLE": "a", "CONTACT_IDS": [501, 502]}})
    b24.ok("crm.deal.add", {"fields": {"TITLE": "b"}})
    rows = b24.ok("crm.deal.list", {"select": ["ID", "CONTACT_IDS", "CONTACT_ID"], "filter": {"CONTACT_IDS": 999}})
    assert [set(r) for r in rows] == [{"ID", "CONTACT_ID"}, {"ID", "CONTACT_ID"}]
    assert rows[0]["CONTACT_ID"] == "501"


# --- 18. writes: dropped fields, immutables ------------------------------------------------

def test_unknown_and_read_only_fields_are_silently_dropped(portal, b24):
    deal_id = b24.ok("crm.deal.add", {"fields": {"TITLE": "t", "NO_SUCH": "x", "DATE_CREATE": "2001-01-01T00:00:00+03:00",
                                                 "ID": 999, "title": "lower-case is unknown", "BEGINDATE": "not a date"}})
    deal = portal.admin.deals()[-1]
    assert deal["ID"] == deal_id != 999
    assert deal["TITLE"] == "t"
    assert "NO_SUCH" not in deal
    assert not deal["DATE_CREATE"].startswith("2001")
    assert deal["BEGINDATE"] != "not a date"


def test_category_is_immutable_on_deal_update(portal, b24):
    deal_id = b24.ok("crm.deal.add", {"fields": {"TITLE": "t", "CATEGORY_ID": 4}})
    assert b24.ok("crm.deal.update", {"id": deal_id, "fields": {"CATEGORY_ID": 0, "STAGE_ID": "C4:WON"}}) is True
    row = b24.ok("crm.deal.get", {"id": deal_id})
    assert (row["CATEGORY_ID"], row["STAGE_ID"], row["CLOSED"]) == ("4", "C4:WON", "Y")


def test_contact_ids_on_update_replace_the_set(b24):
    deal_id = b24.ok("crm.deal.add", {"fields": {"TITLE": "t", "CONTACT_IDS": [501, 502]}})
    b24.ok("crm.deal.update", {"id": deal_id, "fields": {"CONTACT_IDS": [503]}})
    items = b24.ok("crm.deal.contact.items.get", {"id": deal_id})
    assert [i["CONTACT_ID"] for i in items] == [503]
    assert b24.ok("crm.deal.get", {"id": deal_id})["CONTACT_ID"] == "503"


def test_deal_relations_utm_and_external_keys_are_stored(b24):
    fields = {"TITLE": "t", "PARENT_ID_1036": 5, "PARENT_ID_1040": 101, "UTM_SOURCE": "google", "UTM_CAMPAIGN": "x",
              "ORIGINATOR_ID": "survey-sync", "ORIGIN_ID": "814573981:101", "UF_CRM_ANSWER_ID": "814573981",
              "SOURCE_ID": "WEBFORM", "CONTACT_ID": 501}
    deal_id = b24.ok("crm.deal.add", {"fields": fields})
    row = b24.ok("crm.deal.get", {"id": deal_id})
    assert {k: row[k] for k in fields} == {k: str(v) for k, v in fields.items()}


# --- 19. multi-fields ----------------------------------------------------------------------

def test_multifield_update_appends_without_id(portal, b24):
    b24.ok("crm.contact.update", {"id": 501, "fields": {"EMAIL": [{"VALUE": "second@example.com"}]}})
    emails = portal.admin.contacts()[0]["EMAIL"]
    assert [e["VALUE"] for e in emails] == ["ivan.petrov@example.com", "second@example.com"]
    assert emails[1]["VALUE_TYPE"] == "WORK"


def test_multifield_update_with_id_changes_that_value(portal, b24):
    mf_id = b24.ok("crm.contact.get", {"id": 501})["EMAIL"][0]["ID"]
    b24.ok("crm.contact.update", {"id": 501, "fields": {"EMAIL": [{"ID": mf_id, "VALUE": "new@example.com",
                                                                   "VALUE_TYPE": "HOME"}]}})
    assert portal.admin.contacts()[0]["EMAIL"] == [
        {"ID": int(mf_id), "VALUE_TYPE": "HOME", "VALUE": "new@example.com", "TYPE_ID": "EMAIL"}]


@pytest.mark.parametrize("entry", [{"DELETE": "Y", "VALUE": "kept?"}, {"VALUE": ""}, {}])
def test_multifield_id_with_delete_or_empty_value_removes_it(portal, b24, entry):
    mf_id = b24.ok("crm.contact.get", {"id": 502})["PHONE"][0]["ID"]
    b24.ok("crm.contact.update", {"id": 502, "fields": {"PHONE": [dict(entry, ID=mf_id)]}})
    assert "PHONE" not in portal.admin.contacts()[1]
    assert b24.ok("crm.contact.get", {"id": 502})["HAS_PHONE"] == "N"


def test_multifield_blank_values_skipped_values_trimmed_and_capped(portal, b24):
    long_value = "x" * 300
    contact_id = b24.ok("crm.contact.add", {"fields": {"NAME": "M", "PHONE": [
        {"VALUE": "   "}, {"VALUE": "  +7 903 123-45-67  ", "VALUE_TYPE": "MOBILE"}, {"VALUE": long_value}]}})
    phones = b24.ok("crm.contact.get", {"id": contact_id})["PHONE"]
    assert [(p["VALUE"], p["VALUE_TYPE"]) for p in phones] == [("+7 903 123-45-67", "MOBILE"), ("x" * 250, "WORK")]


def test_invalid_email_on_contact_add_is_error_core(portal, b24):
    body = b24("crm.contact.add", {"fields": {"NAME": "Bad", "EMAIL": [{"VALUE": "not-an-email"}]}})
    assert body["_status"] == 400
    assert body["error"] == "ERROR_CORE"
    assert "not-an-email" in body["error_description"]
    assert len(portal.admin.contacts()) == 3


def test_contact_without_names_gets_a_default_name(b24):
    contact_id = b24.ok("crm.contact.add", {"fields": {"EMAIL": [{"VALUE": "anon@example.com"}]}})
    assert b24.ok("crm.contact.get", {"id": contact_id})["NAME"] == "Без имени"


# --- 20. legacy errors ---------------------------------------------------------------------

@pytest.mark.parametrize("method, params, description", [
    ("crm.deal.add", {"fields": "TITLE"}, "Parameter 'fields' must be array."),
    ("crm.deal.add", {}, "Parameter 'fields' must be array."),
    ("crm.deal.update", {"id": "abc", "fields": {}}, "ID is not defined or invalid."),
    ("crm.deal.update", {"id": 4242, "fields": {"TITLE": "x"}}, "Not found"),
    ("crm.deal.get", {"id": 4242}, "Not found"),
    ("crm.contact.update", {"id": 4242, "fields": {"NAME": "x"}}, "Contact is not found"),
    ("crm.contact.update", {"id": 501}, "Parameter 'fields' must be array."),
    ("crm.contact.get", {}, "ID is not defined or invalid."),
    ("crm.deal.list", {"filter": "ID=1"}, "Parameter 'filter' must be array."),
    ("crm.deal.list", {"order": "ID"}, "Parameter 'order' must be array."),
])
def test_legacy_errors_are_400_with_empty_code(b24, method, params, description):
    body = b24(method, params)
    assert (body["_status"], body["error"], body["error_description"]) == (400, "", description)


# --- 21. crm.duplicate.findbycomm ----------------------------------------------------------

def test_findbycomm_is_case_insensitive_and_oldest_first(b24):
    result = b24.ok("crm.duplicate.findbycomm", {"type": "EMAIL", "values": ["  E.SMIRNOVA@example.ORG "],
                                                 "entity_type": "CONTACT"})
    assert result == {"CONTACT": [502, 503]}


def test_findbycomm_without_hits_is_an_empty_list(b24):
    assert b24.ok("crm.duplicate.findbycomm", {"type": "EMAIL", "values": ["nobody@example.com"]}) == []


def test_findbycomm_phone_compares_digits_only(b24):
    result = b24.ok("crm.duplicate.findbycomm", {"type": "PHONE", "values": ["+7 (916) 111-22-33"]})
    assert result == {"CONTACT": [502]}


def test_findbycomm_processes_at_most_20_values_and_20_hits_per_value(portal, b24):
    portal.admin.add_contacts([{"NAME": f"Twin {i}", "EMAIL": "twin@example.com"} for i in range(25)])
    portal.admin.add_contacts([{"NAME": "Late", "EMAIL": "late@example.com"}])
    twins = b24.ok("crm.duplicate.findbycomm", {"type": "EMAIL", "values": ["twin@example.com"]})["CONTACT"]
    assert twins == list(range(504, 524))
    values = [f"filler{i}@example.com" for i in range(20)] + ["late@example.com"]
    assert b24.ok("crm.duplicate.findbycomm", {"type": "EMAIL", "values": values}) == []


def test_findbycomm_sees_contacts_created_and_changed_through_the_api(b24):
    contact_id = b24.ok("crm.contact.add", {"fields": {"NAME": "N", "EMAIL": [{"VALUE": "Fresh@Example.com"}]}})
    assert b24.ok("crm.duplicate.findbycomm", {"type": "EMAIL", "values": ["fresh@example.com"]}) == {
        "CONTACT": [contact_id]}
    mf_id = b24.ok("crm.contact.get", {"id": contact_id})["EMAIL"][0]["ID"]
    b24.ok("crm.contact.update", {"id": contact_id, "fields": {"EMAIL": [{"ID": mf_id, "DELETE": "Y"}]}})
    assert b24.ok("crm.duplicate.findbycomm", {"type": "EMAIL", "values": ["fresh@example.com"]}) == []


@pytest.mark.parametrize("params, description", [
    ({"values": ["a@b.c"]}, "Communication type is not defined."),
    ({"type": "FAX", "values": ["1"]}, "Communication type 'FAX' is not supported in current context."),
    ({"type": "EMAIL"}, "Communication values is not defined."),
    ({"type": "EMAIL", "values": "a@b.c"}, "Communication values is not defined."),
    ({"type": "EMAIL", "values": ["a@b.c"], "entity_type": "DEAL"}, "Deal is not supported in current context."),
])
def test_findbycomm_validation_errors(b24, params, description):
    body = b24("crm.duplicate.findbycomm", params)
    assert (body["_status"], body["error_description"]) == (400, description)


# --- 22. crm.item.* ------------------------------------------------------------------------

def test_item_add_get_update_list_shapes(b24):
    added = b24("crm.item.add", {"entityTypeId": 1036, "fields": {"title": "Form", "ufCrm6PollId": 42,
                                                                  "ufCrm6Language": "ru", "noSuchField": 1}})
    assert set(added) == {"result", "time", "_status"}
    item = added["result"]["item"]
    got = b24.ok("crm.item.get", {"entityTypeId": 1036, "id": item["id"]})["item"]
    assert got == item and "noSuchField" not in got
    updated = b24.ok("crm.item.update", {"entityTypeId": 1036, "id": item["id"], "fields": {"ufCrm6Status": "open"}})
    assert updated["item"]["ufCrm6Status"] == "open"
    listed = b24("crm.item.list", {"entityTypeId": 1036, "filter": {"ufCrm6PollId": 42}})
    assert listed["result"]["items"][0]["id"] == item["id"]
    assert listed["total"] == 1 and "next" not in listed


def test_item_list_pages_and_selects(b24):
    body = b24("crm.item.list", {"entityTypeId": 1040, "select": ["id", "ufCrm8Code"], "order": {"id": "DESC"}})
    assert body["total"] == 25 and "next" not in body
    assert body["result"]["items"][0] == {"id": 124, "ufCrm8Code": "P124", "entityTypeId": 1040}


def test_item_use_original_uf_names(b24):
    item = b24.ok("crm.item.get", {"entityTypeId": 1040, "id": 100, "useOriginalUfNames": "Y"})["item"]
    assert item["UF_CRM_8_CODE"] == "P100" and "ufCrm8Code" not in item
    rows = b24.ok("crm.item.list", {"entityTypeId": 1040, "filter": {"UF_CRM_8_CODE": "P101"},
                                    "useOriginalUfNames": "Y"})["items"]
    assert [r["id"] for r in rows] == [101]


def test_item_list_select_uf_mask(b24):
    rows = b24.ok("crm.item.list", {"entityTypeId": 1040, "select": ["UF_*"], "filter": {"id": 100}})["items"]
    assert rows == [{"id": 100, "ufCrm8Code": "P100", "entityTypeId": 1040}]


def test_item_update_of_a_contact_refuses_to_blank_both_names(b24):
    body = b24("crm.item.update", {"entityTypeId": 3, "id": 501, "fields": {"name": "", "lastName": " "}})
    assert (body["_status"], body["error"]) == (400, "CRM_FIELD_ERROR_REQUIRED")
    assert b24.ok("crm.contact.get", {"id": 501})["NAME"] == "Иван"


def test_bad_entity_type_id_is_smart_process_not_found(b24):
    body = b24("crm.item.list", {"entityTypeId": 9999})
    assert (body["_status"], body["error"], body["error_description"]) == (400, "NOT_FOUND", "Smart process not found")


def test_item_list_bad_filter_field_is_invalid_arg_value(b24):
    body = b24("crm.item.list", {"entityTypeId": 1040, "filter": {"nope": 1}})
    assert (body["_status"], body["error"]) == (400, "INVALID_ARG_VALUE")
    assert body["error_description"] == "Invalid filter: field 'nope' is not allowed in filter"


@pytest.mark.parametrize("fields", [{"ufCrm6PollId": 1}, {"title": "no poll id"}, {"title": "", "ufCrm6PollId": 1}])
def test_item_missing_required_field_is_crm_field_error_required(portal, b24, fields):
    body = b24("crm.item.add", {"entityTypeId": 1036, "fields": fields})
    assert (body["_status"], body["error"]) == (400, "CRM_FIELD_ERROR_REQUIRED")
    assert portal.admin.items(1036) == []


def test_item_batch_import_gives_per_item_results(portal, b24):
    result = b24.ok("crm.item.batchImport", {"entityTypeId": 1036, "data": [
        {"title": "A", "ufCrm6PollId": 1}, {"title": "B"}, {"title": "C", "ufCrm6PollId": 3}]})
    assert result["items"][0] == {"item": {"id": 1}}
    assert result["items"][1]["error"] == "CRM_FIELD_ERROR_REQUIRED"
    assert result["items"][2] == {"item": {"id": 2}}
    assert [i["title"] for i in portal.admin.items(1036)] == ["A", "C"]


def test_item_batch_import_refuses_more_than_the_limit(b24):
    body = b24("crm.item.batchImport", {"entityTypeId": 1036, "data": [{"title": "x", "ufCrm6PollId": i}
                                                                      for i in range(21)]})
    assert (body["_status"], body["error"]) == (400, "MAX_IMPORT_BATCH_SIZE_EXCEEDED")


def test_item_methods_also_serve_deals_and_contacts(portal, b24):
    deal = b24.ok("crm.item.add", {"entityTypeId": 2, "fields": {"title": "Via item", "categoryId": 4,
                                                                 "contactIds": [501], "originId": "x:1"}})["item"]
    assert (deal["categoryId"], deal["stageId"], deal["contactIds"]) == (4, "C4:NEW", [501])
    legacy = b24.ok("crm.deal.get", {"id": deal["id"]})
    assert (legacy["TITLE"], legacy["CONTACT_ID"], legacy["ORIGIN_ID"]) == ("Via item", "501", "x:1")
    moved = b24.ok("crm.item.update", {"entityTypeId": 2, "id": deal["id"], "fields": {"categoryId": 0}})["item"]
    assert (moved["categoryId"], moved["stageId"]) == (0, "NEW")
    contact = b24.ok("crm.item.get", {"entityTypeId": 3, "id": 502})["item"]
    assert contact["name"] == "Елена" and contact["fm"][0]["typeId"] == "EMAIL"


# --- 23. field descriptors -----------------------------------------------------------------

def test_deal_fields_describe_standard_and_user_fields(b24):
    fields = b24.ok("crm.deal.fields")
    assert fields["CATEGORY_ID"] == {"type": "crm_category", "isRequired": False, "isReadOnly": False,
                                     "isImmutable": True, "isMultiple": False, "isDynamic": False,
                                     "title": "Воронка"}
    assert fields["STAGE_ID"]["statusType"] == "DEAL_STAGE"
    assert fields["SOURCE_ID"]["statusType"] == "SOURCE"
    assert fields["ASSIGNED_BY_ID"]["type"] == "user"
    assert fields["CONTACT_ID"]["type"] == "crm_contact"
    assert fields["PARENT_ID_1040"]["type"] == "crm_entity"
    assert fields["ORIGIN_ID"]["type"] == fields["UTM_SOURCE"]["type"] == "string"
    level = fields["UF_CRM_LEVEL"]
    assert level["type"] == "enumeration" and level["isDynamic"] is True
    assert level["items"][0] == {"ID": "45", "VALUE": "Бакалавриат"}
    assert level["listLabel"] == "Уровень образования"


def test_contact_fields_have_multifields(b24):
    fields = b24.ok("crm.contact.fields")
    assert fields["EMAIL"]["type"] == "crm_multifield" and fields["EMAIL"]["isMultiple"] is True
    assert {"NAME", "LAST_NAME", "SECOND_NAME", "PHONE", "UF_CRM_CONTACT_SOURCE_POLL"} <= set(fields)


def test_item_fields_are_wrapped_with_upper_names(b24):
    fields = b24.ok("crm.item.fields", {"entityTypeId": 1036})["fields"]
    assert fields["ufCrm6PollId"]["upperName"] == "UF_CRM_6_POLL_ID"
    assert fields["ufCrm6PollId"]["isRequired"] is True
    assert fields["title"]["upperName"] == "TITLE"


def test_enumeration_value_outside_the_list_is_dropped(b24):
    deal_id = b24.ok("crm.deal.add", {"fields": {"TITLE": "t", "UF_CRM_LEVEL": "Бакалавриат"}})
    assert b24.ok("crm.deal.get", {"id": deal_id})["UF_CRM_LEVEL"] is None


# --- 24. external keys ---------------------------------------------------------------------

def test_deals_filter_by_originator_and_origin_id_without_uniqueness(b24):
    for origin in ("a:1", "a:1", "b:1"):
        b24.ok("crm.deal.add", {"fields": {"TITLE": origin, "ORIGINATOR_ID": "survey-sync", "ORIGIN_ID": origin}})
    b24.ok("crm.deal.add", {"fields": {"TITLE": "other", "ORIGINATOR_ID": "other", "ORIGIN_ID": "a:1"}})
    rows = b24.ok("crm.deal.list", {"filter": {"ORIGINATOR_ID": "survey-sync", "ORIGIN_ID": "a:1"}, "select": ["ID"]})
    assert [r["ID"] for r in rows] == ["1", "2"]
    rows = b24.ok("crm.deal.list", {"filter": {"ORIGINATOR_ID": "survey-sync", "@ORIGIN_ID": ["a:1", "b:1"]},
                                    "select": ["ID", "ORIGIN_ID"]})
    assert [r["ORIGIN_ID"] for r in rows] == ["a:1", "a:1", "b:1"]
    items = b24.ok("crm.item.list", {"entityTypeId": 2, "filter": {"originatorId": "other", "originId": "a:1"}})
    assert [i["id"] for i in items["items"]] == [4]


def test_contacts_filter_by_origin_id(b24):
    b24.ok("crm.contact.add", {"fields": {"NAME": "o", "ORIGINATOR_ID": "survey", "ORIGIN_ID": "resp-1"}})
    rows = b24.ok("crm.contact.list", {"filter": {"ORIGINATOR_ID": "survey", "ORIGIN_ID": "resp-1"}})
    assert [r["NAME"] for r in rows] == ["o"]


def test_lookups_stay_fast_at_200000_deals(portal, b24):
    portal.admin.add_deals([{"ORIGINATOR_ID": "survey-sync", "ORIGIN_ID": f"{i}:101"} for i in range(200_000)])
    portal.admin.add_contacts([{"NAME": f"C{i}", "EMAIL": f"c{i}@example.com"} for i in range(2000)])
    b24.ok("crm.item.add", {"entityTypeId": 1036, "fields": {"title": "poll", "ufCrm6PollId": 99}})
    started = time.perf_counter()
    for i in range(0, 200_000, 10_000):
        rows = b24.ok("crm.deal.list", {"filter": {"ORIGINATOR_ID": "survey-sync", "ORIGIN_ID": f"{i}:101"},
                                        "select": ["ID"]})
        assert rows == [{"ID": str(i + 1)}]
    many = b24.ok("crm.deal.list", {"filter": {"@ORIGIN_ID": [f"{i}:101" for i in range(150_000, 150_050)]},
                                    "select": ["ID"]})
    assert len(many) == 50
    hits = b24.ok("crm.duplicate.findbycomm", {"type": "EMAIL", "values": [f"C{i}@example.com" for i in range(20)]})
    assert len(hits["CONTACT"]) == 20
    assert b24.ok("crm.item.list", {"entityTypeId": 1036, "filter": {"ufCrm6PollId": 99}})["items"][0]["id"] == 1
    page = b24("crm.deal.list", {"filter": {">ID": 199_900}, "order": {"ID": "ASC"}, "start": -1, "select": ["ID"]})
    assert page["result"][0]["ID"] == "199901"
    assert time.perf_counter() - started < 3.0


# --- 25. helpers ---------------------------------------------------------------------------

def test_server_time_is_iso_with_offset(b24):
    assert b24.ok("server.time").endswith("+03:00")


def test_profile_and_scope(b24):
    assert b24.ok("profile") == {"ID": "1", "ADMIN": True, "NAME": "Анна", "LAST_NAME": "Администратор",
                                 "PERSONAL_GENDER": "", "TIME_ZONE": "", "TIME_ZONE_OFFSET": 10800}
    assert b24.ok("scope") == ["crm", "user"]
    assert "lists" in b24.ok("scope", {"full": "true"})


def test_profile_is_empty_when_the_webhook_owner_is_inactive():
    with BitrixEmulator(rate_limit=None, user_id=31) as emulator:
        reply = requests.get(emulator.webhook_url + "profile").json()
    assert reply["result"] == []


def test_user_get_filters_by_email_and_active_in_filter_or_top_level(b24):
    by_filter = b24("user.get", {"FILTER": {"EMAIL": "left.company@hse.ru", "ACTIVE": True}})
    assert by_filter["result"] == [] and by_filter["total"] == 0
    top_level = b24("user.get", {"EMAIL": "M.Ivanova@hse.ru"})
    assert [u["ID"] for u in top_level["result"]] == ["23"] and top_level["total"] == 1
    inactive = b24.ok("user.get", {"filter": {"ACTIVE": False}})
    assert [u["ID"] for u in inactive] == ["31"]
    assert b24("user.get", {})["total"] == 4


def test_status_list_serves_sources_and_stages(b24):
    sources = b24("crm.status.list", {"filter": {"ENTITY_ID": "SOURCE"}})
    assert [r["STATUS_ID"] for r in sources["result"]] == ["WEB", "CALL", "EMAIL", "WEBFORM", "OTHER"]
    assert sources["total"] == 5
    stages = b24.ok("crm.status.list", {"filter": {"ENTITY_ID": "DEAL_STAGE_4"}})
    assert [r["STATUS_ID"] for r in stages] == ["C4:NEW", "C4:PREPARATION", "C4:WON", "C4:LOSE"]
    assert stages[2]["SEMANTICS"] == "S" and stages[0]["CATEGORY_ID"] == "4"
    default = b24.ok("crm.status.list", {"filter": {"ENTITY_ID": "DEAL_STAGE"}})
    assert [r["STATUS_ID"] for r in default] == ["NEW", "PREPARATION", "WON", "LOSE"]


def test_category_list_for_deals(b24):
    body = b24("crm.category.list", {"entityTypeId": 2})
    assert [(c["id"], c["name"]) for c in body["result"]["categories"]] == [(0, "Общая"), (4, "Приёмная кампания")]
    assert body["total"] == 2
