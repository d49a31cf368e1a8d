"""Universal lists on the real portal (real-portal.md §1; bitrix24-rest.md §6.9, §10):
lists.get, lists.field.get and lists.element.{get,add,update,delete}."""
from __future__ import annotations

import pytest
import requests

from sandbox.bitrix import BitrixEmulator

POLLS = {"IBLOCK_TYPE_ID": "lists", "IBLOCK_ID": 17}
PROGRAMMES = {"IBLOCK_TYPE_ID": "lists", "IBLOCK_ID": 18}


@pytest.fixture
def portal():
    with BitrixEmulator(rate_limit=None, portal="real", user_id=169, scopes=("crm", "user", "lists")) as emulator:
        yield emulator


class Client:
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

    def error(self, method: str, params: dict | None = None) -> tuple[int, str, str]:
        body = self(method, params)
        assert "result" not in body, body
        return body["_status"], body["error"], body["error_description"]


@pytest.fixture
def b24(portal):
    client = Client(portal.webhook_url)
    yield client
    client.session.close()


def poll_fields(poll_id: str = "430131691", **extra) -> dict:
    fields = {"NAME": "Опрос абитуриентов 2023", "PROPERTY_64": poll_id,
              "PROPERTY_65": f"https://portal.hse.ru/polls/{poll_id}.html", "PROPERTY_66": "23"}
    fields.update(extra)
    return fields


def add_poll(b24, poll_id: str = "430131691", **extra) -> int:
    return b24.ok("lists.element.add", {**POLLS, "ELEMENT_CODE": poll_id, "FIELDS": poll_fields(poll_id, **extra)})


# --- lists.get / lists.field.get -----------------------------------------------------------

def test_lists_get_describes_the_polls_and_programmes_lists(b24):
    body = b24("lists.get", {"IBLOCK_TYPE_ID": "lists"})
    assert [(r["ID"], r["CODE"], r["NAME"]) for r in body["result"]] == [
        ("17", "POLLS", "Опросные формы"), ("18", "EDUCATIONALPROGRAMS", "Образовательные программы")]
    assert body["total"] == 2
    assert [r["ID"] for r in b24.ok("lists.get", {"IBLOCK_TYPE_ID": "lists", "IBLOCK_CODE": "POLLS"})] == ["17"]


def test_lists_methods_need_the_iblock_type(b24):
    assert b24.error("lists.get") == (400, "ERROR_REQUIRED_PARAMETERS_MISSING",
                                      'Required parameter "IBLOCK_TYPE_ID" is missing')
    assert b24.error("lists.element.get", {"IBLOCK_ID": 18})[1] == "ERROR_REQUIRED_PARAMETERS_MISSING"


def test_unknown_list_or_wrong_type_is_iblock_not_found(b24):
    assert b24.error("lists.element.get", {"IBLOCK_TYPE_ID": "lists", "IBLOCK_ID": 99}) == (
        400, "ERROR_IBLOCK_NOT_FOUND", "Iblock not found")
    assert b24.error("lists.field.get", {"IBLOCK_TYPE_ID": "bitrix_processes", "IBLOCK_ID": 18})[1] == \
        "ERROR_IBLOCK_NOT_FOUND"


def test_field_get_gives_types_required_flags_codes_links_and_list_values(b24):
    polls = b24.ok("lists.field.get", POLLS)
    assert list(polls) == ["NAME", "PROPERTY_64", "PROPERTY_65", "PROPERTY_66", "PROPERTY_74"]
    assert (polls["NAME"]["TYPE"], polls["NAME"]["IS_REQUIRED"]) == ("NAME", "Y")
    assert {k: polls["PROPERTY_64"][k] for k in ("ID", "CODE", "TYPE", "IS_REQUIRED")} == {
        "ID": "64", "CODE": "POLL_ID", "TYPE": "S", "IS_REQUIRED": "Y"}
    assert (polls["PROPERTY_66"]["TYPE"], polls["PROPERTY_66"]["CODE"]) == ("S:employee", "REPONSIBLE_EMPLOYEE_ID")
    link = polls["PROPERTY_74"]
    assert (link["TYPE"], link["PROPERTY_TYPE"], link["LINK_IBLOCK_ID"], link["IS_REQUIRED"]) == ("E:EList", "E", "18", "N")
    status = b24.ok("lists.field.get", {**PROGRAMMES, "FIELD_ID": "PROPERTY_72"})
    assert list(status) == ["PROPERTY_72"]
    assert status["PROPERTY_72"]["TYPE"] == "L"
    assert status["PROPERTY_72"]["DISPLAY_VALUES_FORM"] == {"56": "Активная", "57": "Неактивная"}
    assert status["PROPERTY_72"]["DEFAULT_VALUE"] == "57"


# --- lists.element.get ---------------------------------------------------------------------

def test_element_rows_carry_code_and_property_values_keyed_by_value_id(b24):
    row = b24.ok("lists.element.get", {**PROGRAMMES, "ELEMENT_ID": 714})[0]
    assert (row["ID"], row["IBLOCK_ID"], row["NAME"], row["CODE"]) == ("714", "18", "Журналистика", "JOU-01")
    for prop, value in (("PROPERTY_73", "JOU-01"), ("PROPERTY_72", "56")):
        assert isinstance(row[prop], dict) and len(row[prop]) == 1
        value_id, stored = next(iter(row[prop].items()))
        assert value_id.isdigit() and stored == value
    # Properties without a value are not in the row at all.
    assert "PROPERTY_67" not in row and "PROPERTY_70" not in row


def test_seeded_programmes_include_duplicate_and_inactive_names(b24):
    rows = b24.ok("lists.element.get", PROGRAMMES)
    by_id = {r["ID"]: r for r in rows}
    assert len(rows) == 17 and list(by_id) == [str(i) for i in range(700, 717)]
    status = {i: next(iter(by_id[i]["PROPERTY_72"].values())) for i in ("714", "715", "716")}
    assert status == {"714": "56", "715": "57", "716": "57"}
    assert by_id["714"]["NAME"] == by_id["715"]["NAME"] == "Журналистика"
    assert by_id["716"]["NAME"] == "Философия"
    assert b24.ok("lists.element.get", POLLS) == []


@pytest.mark.parametrize("filt, ids", [
    ({"=CODE": "AN-01"}, ["701"]),
    ({"PROPERTY_73": "EC-02"}, ["705"]),
    ({"PROPERTY_EDUCATIONAL_PROGRAM_ID": "EC-02"}, ["705"]),   # by the property's code
    ({"=NAME": "Журналистика"}, ["714", "715"]),
    ({"=NAME": "журналистика"}, []),                          # "=" is exact
    ({"NAME": "журналистика"}, ["714", "715"]),               # no operator: case-insensitive pattern
    ({"NAME": "Юриспруденция%"}, ["702", "703"]),
    ({"%NAME": "ЭКОНОМ"}, ["704", "705"]),
    ({"PROPERTY_72": "57"}, ["715", "716"]),
    ({"=NAME": "Журналистика", "PROPERTY_72": "56"}, ["714"]),
    ({"@ID": [700, 716]}, ["700", "716"]),
    ({">=ID": 715}, ["715", "716"]),
    ({"!PROPERTY_72": "56"}, ["715", "716"]),
])
def test_element_get_filters(b24, filt, ids):
    rows = b24.ok("lists.element.get", {**PROGRAMMES, "FILTER": filt})
    assert [r["ID"] for r in rows] == ids


def test_element_get_by_element_code_and_unknown_filter_field(b24):
    assert [r["ID"] for r in b24.ok("lists.element.get", {**PROGRAMMES, "ELEMENT_CODE": "PHI-00"})] == ["716"]
    assert b24.error("lists.element.get", {**PROGRAMMES, "FILTER": {"=COLOUR": "red"}}) == (
        400, "ERROR_ARGUMENT", "Filter field not allowed: COLOUR")


def test_element_get_orders_by_element_order(b24):
    rows = b24.ok("lists.element.get", {**PROGRAMMES, "FILTER": {"PROPERTY_72": "56"},
                                        "ELEMENT_ORDER": {"NAME": "desc"}})
    names = [r["NAME"] for r in rows]
    assert names == sorted(names, key=str.lower, reverse=True)
    ids = [r["ID"] for r in b24.ok("lists.element.get", {**PROGRAMMES, "ELEMENT_ORDER": {"ID": "DESC"}})]
    assert ids[:2] == ["716", "715"]
    # An unknown field or direction is ignored: back to ID ascending.
    ids = [r["ID"] for r in b24.ok("lists.element.get", {**PROGRAMMES, "ELEMENT_ORDER": {"NAME": "sideways"}})]
    assert ids[:2] == ["700", "701"]


def test_element_get_pages_by_50_with_total_and_next(b24):
    for i in range(60):
        add_poll(b24, str(500000000 + i))
    first = b24("lists.element.get", POLLS)
    assert (len(first["result"]), first["total"], first["next"]) == (50, 60, 50)
    second = b24("lists.element.get", {**POLLS, "start": 50})
    assert (len(second["result"]), second["total"]) == (10, 60) and "next" not in second
    assert {r["CODE"] for r in first["result"] + second["result"]} == {str(500000000 + i) for i in range(60)}


def test_no_match_is_a_bare_empty_list_without_total(b24):
    body = b24("lists.element.get", {**POLLS, "FILTER": {"=CODE": "nothing"}})
    assert body["result"] == [] and "total" not in body and "next" not in body


# --- lists.element.add ---------------------------------------------------------------------

def test_element_add_returns_the_id_and_the_code_reads_back(portal, b24):
    eid = add_poll(b24)
    assert isinstance(eid, int) and eid > 716   # one id sequence for all lists
    row = b24.ok("lists.element.get", {**POLLS, "FILTER": {"=CODE": "430131691"}})[0]
    assert (row["ID"], row["CODE"], row["NAME"]) == (str(eid), "430131691", "Опрос абитуриентов 2023")
    assert list(row["PROPERTY_64"].values()) == ["430131691"]
    assert list(row["PROPERTY_66"].values()) == ["23"]
    assert row["CREATED_BY"] == "169"
    assert portal.crm.dump_list_elements(17) == [{
        "ID": eid, "NAME": "Опрос абитуриентов 2023", "CODE": "430131691", "CREATED_BY": 169, "MODIFIED_BY": 169,
        "PROPERTY_64": ["430131691"], "PROPERTY_65": ["https://portal.hse.ru/polls/430131691.html"],
        "PROPERTY_66": ["23"], "PROPERTY_74": []}]


def test_element_add_requires_element_code(b24):
    assert b24.error("lists.element.add", {**POLLS, "FIELDS": poll_fields()}) == (
        400, "ERROR_REQUIRED_PARAMETERS_MISSING", 'Required parameter "ELEMENT_CODE" is missing')


def test_element_code_is_unique_within_a_list(portal, b24):
    add_poll(b24)
    status, code, description = b24.error("lists.element.add", {**POLLS, "ELEMENT_CODE": "430131691",
                                                                "FIELDS": poll_fields(NAME="Второй раз")})
    assert (status, code, description) == (400, "ERROR_ELEMENT_ALREADY_EXISTS", "Element already exists")
    assert [e["NAME"] for e in portal.crm.dump_list_elements(17)] == ["Опрос абитуриентов 2023"]
    # The same code in another list is no conflict.
    assert b24.ok("lists.element.add", {**PROGRAMMES, "ELEMENT_CODE": "430131691",
                                        "FIELDS": {"NAME": "Код как у опроса", "PROPERTY_73": "X-1"}}) > 0


@pytest.mark.parametrize("missing, title", [
    ("PROPERTY_64", "ID Опросной формы"),
    ("PROPERTY_66", "Ответственный за опросную форму"),
])
def test_element_add_refuses_a_missing_required_property(portal, b24, missing, title):
    fields = poll_fields()
    del fields[missing]
    assert b24.error("lists.element.add", {**POLLS, "ELEMENT_CODE": "430131691", "FIELDS": fields}) == (
        400, "ERROR_ELEMENT_FIELD_VALUE", f'The field "{title}" is required')
    assert portal.crm.dump_list_elements(17) == []


def test_several_missing_required_fields_report_the_last_one(b24):
    body = b24.error("lists.element.add", {**POLLS, "ELEMENT_CODE": "1", "FIELDS": {"NAME": "Только имя"}})
    assert body[2] == 'The field "Ответственный за опросную форму" is required'
    assert b24.error("lists.element.add", {**POLLS, "ELEMENT_CODE": "1", "FIELDS": {"PROPERTY_64": "1"}})[2] == \
        'Required parameter "NAME" is missing'


def test_element_add_accepts_n0_values_and_lower_case_keys(b24):
    eid = b24.ok("lists.element.add", {"iblock_type_id": "lists", "iblock_code": "POLLS", "element_code": "77",
                                       "fields": {"name": "Опрос 77", "property_64": {"n0": "77"},
                                                  "PROPERTY_65": ["https://x/77"], "PROPERTY_66": 23,
                                                  "PROPERTY_74": "714"}})
    row = b24.ok("lists.element.get", {**POLLS, "ELEMENT_ID": eid})[0]
    assert [list(row[p].values()) for p in ("PROPERTY_64", "PROPERTY_65", "PROPERTY_66", "PROPERTY_74")] == [
        ["77"], ["https://x/77"], ["23"], ["714"]]


def test_list_property_keeps_only_a_known_enum_id(b24):
    eid = b24.ok("lists.element.add", {**PROGRAMMES, "ELEMENT_CODE": "NEW-01",
                                       "FIELDS": {"NAME": "Новая", "PROPERTY_73": "NEW-01", "PROPERTY_72": "99"}})
    assert "PROPERTY_72" not in b24.ok("lists.element.get", {**PROGRAMMES, "ELEMENT_ID": eid})[0]


def test_element_add_works_inside_batch_with_php_query_encoding(portal, b24):
    query = ("IBLOCK_TYPE_ID=lists&IBLOCK_ID=17&ELEMENT_CODE=31337&FIELDS[NAME]=%D0%9E%D0%BF%D1%80%D0%BE%D1%81"
             "&FIELDS[PROPERTY_64]=31337&FIELDS[PROPERTY_65]=u&FIELDS[PROPERTY_66]=17")
    result = b24.ok("batch", {"cmd": {"add": "lists.element.add?" + query, "again": "lists.element.add?" + query}})
    assert isinstance(result["result"]["add"], int)
    assert result["result_error"]["again"]["error"] == "ERROR_ELEMENT_ALREADY_EXISTS"
    assert [e["CODE"] for e in portal.crm.dump_list_elements(17)] == ["31337"]


# --- lists.element.update / delete ---------------------------------------------------------

def test_update_overwrites_the_element_properties_not_sent_are_cleared(portal, b24):
    eid = add_poll(b24, PROPERTY_74="714")
    assert b24.ok("lists.element.update", {**POLLS, "ELEMENT_CODE": "430131691",
                                           "FIELDS": poll_fields(NAME="Переименован")}) is True
    row = b24.ok("lists.element.get", {**POLLS, "ELEMENT_ID": eid})[0]
    assert row["NAME"] == "Переименован"
    assert "PROPERTY_74" not in row          # the programme link was not sent: gone
    assert portal.crm.dump_list_elements(17)[0]["PROPERTY_74"] == []


def test_update_without_a_required_property_is_refused_and_changes_nothing(portal, b24):
    add_poll(b24)
    assert b24.error("lists.element.update", {**POLLS, "ELEMENT_CODE": "430131691",
                                              "FIELDS": {"NAME": "Только имя"}})[1] == "ERROR_ELEMENT_FIELD_VALUE"
    assert portal.crm.dump_list_elements(17)[0]["NAME"] == "Опрос абитуриентов 2023"


def test_read_merge_write_keeps_every_value(b24):
    eid = add_poll(b24, PROPERTY_74="714")
    row = b24.ok("lists.element.get", {**POLLS, "ELEMENT_ID": eid})[0]
    fields = {key: value for key, value in row.items() if key == "NAME" or key.startswith("PROPERTY_")}
    fields["PROPERTY_66"] = "17"             # the one change
    b24.ok("lists.element.update", {**POLLS, "ELEMENT_CODE": row["CODE"], "FIELDS": fields})
    after = b24.ok("lists.element.get", {**POLLS, "ELEMENT_ID": eid})[0]
    assert list(after["PROPERTY_66"].values()) == ["17"]
    assert list(after["PROPERTY_74"].values()) == ["714"]
    # An unchanged value keeps its value id: the row is rewritten, not re-created.
    assert after["PROPERTY_64"] == row["PROPERTY_64"]


def test_update_by_element_id_alone_clears_the_code(b24):
    eid = add_poll(b24)
    b24.ok("lists.element.update", {**POLLS, "ELEMENT_ID": eid, "FIELDS": poll_fields()})
    assert b24.ok("lists.element.get", {**POLLS, "ELEMENT_ID": eid})[0]["CODE"] is None
    assert b24.ok("lists.element.get", {**POLLS, "FILTER": {"=CODE": "430131691"}}) == []


def test_update_and_delete_of_an_unknown_element_are_element_not_found(b24):
    for method in ("lists.element.update", "lists.element.delete"):
        assert b24.error(method, {**POLLS, "ELEMENT_CODE": "nope", "FIELDS": poll_fields()}) == (
            400, "ERROR_ELEMENT_NOT_FOUND", "Element not found")
    assert b24.error("lists.element.update", {**POLLS, "FIELDS": poll_fields()})[1] == \
        "ERROR_REQUIRED_PARAMETERS_MISSING"


def test_delete_removes_the_element_and_frees_its_code(portal, b24):
    add_poll(b24)
    assert b24.ok("lists.element.delete", {**POLLS, "ELEMENT_CODE": "430131691"}) is True
    assert portal.crm.dump_list_elements(17) == []
    assert add_poll(b24) > 0


def test_lists_methods_need_the_lists_scope():
    with BitrixEmulator(rate_limit=None, portal="real") as emulator:
        reply = requests.post(emulator.webhook_url + "lists.element.get", json=PROGRAMMES)
        assert (reply.status_code, reply.json()["error"]) == (403, "insufficient_scope")


def test_reset_restores_the_seeded_lists(portal, b24):
    add_poll(b24)
    b24.ok("lists.element.delete", {**PROGRAMMES, "ELEMENT_ID": 700})
    portal.admin.reset()
    assert portal.crm.dump_list_elements(17) == []
    assert portal.crm.dump_list_elements(18)[0]["ID"] == 700
