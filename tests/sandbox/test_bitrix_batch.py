"""The ``batch`` method of the Bitrix24 emulator (checklist items 9-14)."""
from __future__ import annotations

from urllib.parse import quote

import pytest
import requests

from sandbox.bitrix import BitrixEmulator
from sandbox.bitrix.batch import substitute


@pytest.fixture
def portal():
    with BitrixEmulator(rate_limit=None) as emulator:
        yield emulator


@pytest.fixture
def batch(portal):
    session = requests.Session()

    def call(cmd, halt=0, **extra):
        reply = session.post(portal.webhook_url + "batch", json={"halt": halt, "cmd": cmd, **extra})
        assert reply.status_code == 200, reply.text
        return reply.json()["result"]

    yield call
    session.close()


# --- 9. basics -----------------------------------------------------------------------------

def test_batch_runs_commands_in_order_and_reports_every_section(portal, batch):
    result = batch({"add": "crm.deal.add?fields[TITLE]=first",
                    "list": "crm.deal.list?select[]=ID&select[]=TITLE",
                    "fail": "crm.deal.get?id=999"})
    assert set(result) == {"result", "result_error", "result_total", "result_next", "result_time"}
    assert result["result"]["add"] == 1
    assert result["result"]["list"] == [{"ID": "1", "TITLE": "first"}]
    assert result["result_error"] == {"fail": {"error": "", "error_description": "Not found"}}
    assert result["result_total"] == {"list": 1}
    assert result["result_next"] == []
    assert set(result["result_time"]) == {"add", "list"}
    assert set(result["result_time"]["add"]) >= {"start", "finish", "duration", "operating", "operating_reset_at"}


def test_batch_keys_are_case_insensitive(portal):
    reply = requests.post(portal.webhook_url + "batch", json={"HALT": 1, "CMD": {
        "bad": "crm.deal.get?id=0", "never": "crm.deal.add?fields[TITLE]=x"}}).json()
    assert reply["result"]["result"] == []
    assert list(reply["result"]["result_error"]) == ["bad"]
    assert portal.admin.deals() == []


def test_batch_cmd_as_form_encoded_parameters(portal):
    # In a form body the command is itself a parameter value: encoded twice.
    body = "halt=0&cmd[c1]=" + quote("crm.contact.add?fields[NAME]=" + quote("Анна & Co"), safe="")
    reply = requests.post(portal.webhook_url + "batch", data=body,
                          headers={"Content-Type": "application/x-www-form-urlencoded"}).json()
    contact_id = reply["result"]["result"]["c1"]
    assert portal.admin.contacts()[-1] == {**portal.admin.contacts()[-1], "ID": contact_id, "NAME": "Анна & Co"}


def test_batch_command_errors_never_change_the_http_status(portal):
    reply = requests.post(portal.webhook_url + "batch", json={"cmd": {"x": "no.such.method", "y": "crm.deal.get"}})
    assert reply.status_code == 200
    assert reply.json()["result"]["result_error"] == {
        "x": {"error": "ERROR_METHOD_NOT_FOUND", "error_description": "Method not found!"},
        "y": {"error": "", "error_description": "ID is not defined or invalid."}}


def test_batch_outer_time_has_no_operating_fields(portal):
    body = requests.post(portal.webhook_url + "batch", json={"cmd": {"t": "server.time"}}).json()
    assert "operating" not in body["time"] and "operating_reset_at" not in body["time"]


def test_batch_command_method_names_are_case_insensitive(batch):
    assert batch({"t": "SERVER.TIME"})["result"]["t"].endswith("+03:00")


def test_batch_command_outside_scopes_is_insufficient_scope_with_empty_description():
    with BitrixEmulator(rate_limit=None, scopes=("crm",)) as emulator:
        result = requests.post(emulator.webhook_url + "batch", json={"cmd": {"u": "user.get"}}).json()["result"]
    assert result["result_error"] == {"u": {"error": "insufficient_scope", "error_description": ""}}


# --- 10. length cap ------------------------------------------------------------------------

def test_commands_past_the_50th_fail_with_batch_length_exceeded_and_do_not_run(portal, batch):
    cmd = {f"c{i:02d}": f"crm.deal.add?fields[TITLE]=d{i}" for i in range(53)}
    result = batch(cmd)
    assert len(result["result"]) == 50
    assert result["result_error"] == {name: {"error": "ERROR_BATCH_LENGTH_EXCEEDED",
                                             "error_description": "Max batch length exceeded"}
                                      for name in ("c50", "c51", "c52")}
    assert len(portal.admin.deals()) == 50


# --- 11. nested batch ----------------------------------------------------------------------

@pytest.mark.parametrize("inner", ["batch?cmd[a]=server.time", "upload?x=1", "download"])
def test_nested_batch_is_not_allowed(batch, inner):
    result = batch({"inner": inner})
    assert result["result_error"] == {"inner": {"error": "ERROR_BATCH_METHOD_NOT_ALLOWED",
                                                "error_description": "Method is not allowed for batch usage"}}


# --- 12. halt ------------------------------------------------------------------------------

def test_halt_stops_after_the_first_error(portal, batch):
    result = batch({"a": "crm.deal.add?fields[TITLE]=a", "b": "crm.deal.get?id=0", "c": "crm.deal.add?fields[TITLE]=c"},
                   halt=1)
    assert list(result["result"]) == ["a"]
    assert list(result["result_error"]) == ["b"]
    assert "c" not in result["result_time"]
    assert [d["TITLE"] for d in portal.admin.deals()] == ["a"]


def test_halt_zero_runs_everything(portal, batch):
    result = batch({"a": "crm.deal.add?fields[TITLE]=a", "b": "crm.deal.get?id=0", "c": "crm.deal.add?fields[TITLE]=c"},
                   halt=0)
    assert list(result["result"]) == ["a", "c"]
    assert [d["TITLE"] for d in portal.admin.deals()] == ["a", "c"]


# --- 13. $result substitution --------------------------------------------------------------

def test_batch_whole_value_reference_passes_the_raw_value(portal, batch):
    result = batch({"contact": "crm.contact.add?fields[NAME]=Chain",
                    "deal": "crm.deal.add?fields[TITLE]=D&fields[CONTACT_ID]=$result[contact]",
                    "ids": "crm.contact.list?select[]=ID&filter[NAME]=Chain",
                    "in": "crm.contact.list?select[]=NAME&filter[@ID]=$result[ids][0]"})
    assert portal.admin.deals()[0]["CONTACT_ID"] == result["result"]["contact"]
    # $result[ids][0] is a whole row (an array) and arrives as one: filter[@ID] = {"ID": "504"}.
    assert result["result"]["in"] == [{"ID": result["result"]["ids"][0]["ID"], "NAME": "Chain"}]


def test_batch_embedded_reference_is_string_replaced(portal, batch):
    result = batch({"c": "crm.contact.add?fields[NAME]=X",
                    "d": "crm.deal.add?fields[TITLE]=Deal for $result[c] here",
                    "e": "crm.deal.add?fields[TITLE]=Row $result[rows][0] stays"})
    titles = [d["TITLE"] for d in portal.admin.deals()]
    assert titles[0] == f"Deal for {result['result']['c']} here"
    # An embedded reference to something that is not a string/number is left as text.
    assert titles[1] == "Row $result[rows][0] stays"


def test_batch_reference_to_failed_command_substitutes_deepest_level(portal, batch):
    result = batch({"ok": "crm.contact.add?fields[NAME]=Fine",
                    "bad": "crm.contact.add?fields[NAME]=Bad&fields[EMAIL][0][VALUE]=broken",
                    "deal": "crm.deal.add?fields[TITLE]=Orphan&fields[CONTACT_ID]=$result[bad]"})
    assert "bad" in result["result_error"]
    # $result[bad] walks no further than the whole result map {"ok": 504}: a non-empty array,
    # which the integer field turns into 1 -- a deal bound to the wrong contact, as on a real portal.
    assert portal.admin.deals()[0]["CONTACT_ID"] == 1


def test_batch_reference_to_later_command_is_not_resolved(portal, batch):
    batch({"first": "crm.deal.add?fields[TITLE]=$result[second]", "second": "crm.contact.add?fields[NAME]=Later"})
    # Only earlier commands exist: the walk stops at the (empty) result map, an array -> "".
    assert portal.admin.deals()[0]["TITLE"] == "Сделка #1"


def test_batch_next_total_error_and_time_references(portal, batch):
    portal.admin.add_deals([{"TITLE": f"d{i}"} for i in range(60)])
    result = batch({"page": "crm.deal.list?select[]=ID",
                    "next": "crm.deal.list?select[]=ID&start=$next[page]",
                    "fail": "crm.deal.get?id=0",
                    "echo": "crm.deal.add?fields[TITLE]=$total[page] / $error[fail][error_description]"
                            "&fields[COMMENTS]=$time[page][start]",
                    "glued": "crm.deal.add?fields[TITLE]=$total[page]/$error[fail][error_description]"})
    assert result["result"]["next"][0] == {"ID": "51"}
    echo, glued = portal.admin.deals()[-2:]
    assert echo["TITLE"] == "60 / ID is not defined or invalid."
    assert echo["COMMENTS"] == repr(result["result_time"]["page"]["start"])
    # The reference runs to the next whitespace: "/$error[...]" is read as more path and swallowed.
    assert glued["TITLE"] == "60"


def test_substitute_follows_process_batch_element():
    store = {"result": {"c": [{"ID": "7", "EMPTY": None}], "n": 5}, "next": {}, "total": {}, "time": {}, "error": {}}
    assert substitute("$result[c][0][ID]", store) == "7"
    assert substitute("$result[c][0]", store) == {"ID": "7", "EMPTY": None}
    assert substitute("$result[c][9][ID]", store) == [{"ID": "7", "EMPTY": None}]
    assert substitute("$result[c][0][EMPTY]", store) == {"ID": "7", "EMPTY": None}
    assert substitute("id-$result[n] and $result[c][0][ID]", store) == "id-5 and 7"
    assert substitute("$result[n]tail", store) == 5
    assert substitute("$RESULT[n]", store) is None
    assert substitute("$result", store) == "$result"


# --- 14. PHP JSON shapes -------------------------------------------------------------------

def test_batch_list_cmd_gives_list_shaped_sections(batch):
    result = batch(["server.time", "scope"])
    assert isinstance(result["result"], list) and result["result"][1] == ["crm", "user"]
    assert result["result_error"] == []
    assert isinstance(result["result_time"], list)


def test_batch_numeric_names_with_a_gap_become_objects(batch):
    result = batch(["server.time", "crm.deal.get?id=0", "scope"])
    assert result["result"] == {"0": result["result"]["0"], "2": ["crm", "user"]}
    assert result["result_error"] == {"1": {"error": "", "error_description": "ID is not defined or invalid."}}


def test_batch_numeric_string_names_behave_like_ints(batch):
    result = batch({"0": "scope", "1": "scope"})
    assert result["result"] == [["crm", "user"], ["crm", "user"]]
