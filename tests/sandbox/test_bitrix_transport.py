"""Routing, auth, request parsing and envelopes of the Bitrix24 emulator (checklist items 1-5).

Every test talks real HTTP to an emulator started in-process with the rate limit off.
"""
from __future__ import annotations

import json

import pytest
import requests

from sandbox.bitrix import BitrixEmulator
from sandbox.bitrix.params import parse_str, parse_url, php_json_shape, request_params


@pytest.fixture
def portal():
    with BitrixEmulator(rate_limit=None) as emulator:
        yield emulator


@pytest.fixture
def http():
    with requests.Session() as session:
        yield session


# --- 1. routes ------------------------------------------------------------------------------

@pytest.mark.parametrize("suffix", ["profile", "profile.json", "profile/", "profile.json/", "PROFILE", "Profile.JSON"])
def test_method_route_accepts_json_suffix_trailing_slash_and_any_case(portal, http, suffix):
    reply = http.get(portal.webhook_url + suffix)
    assert reply.status_code == 200
    assert reply.json()["result"]["ID"] == "1"


def test_get_and_post_reach_the_same_method(portal, http):
    by_get = http.get(portal.webhook_url + "crm.contact.get", params={"id": 501}).json()
    by_post = http.post(portal.webhook_url + "crm.contact.get", json={"id": 501}).json()
    assert by_get["result"] == by_post["result"]
    assert by_get["result"]["NAME"] == "Иван"


def test_unknown_method_is_404_method_not_found(portal, http):
    reply = http.post(portal.webhook_url + "crm.nothing.here", json={})
    assert reply.status_code == 404
    assert reply.json() == {"error": "ERROR_METHOD_NOT_FOUND", "error_description": "Method not found!"}


def test_rest_path_without_webhook_credentials_is_no_auth_found(portal, http):
    reply = http.get(f"{portal.base_url}/rest/profile")
    assert reply.status_code == 401
    assert reply.json()["error"] == "NO_AUTH_FOUND"


# --- 2. auth and scopes --------------------------------------------------------------------

def test_wrong_secret_is_invalid_credentials(portal, http):
    reply = http.get(f"{portal.base_url}/rest/1/not-the-secret/profile")
    assert reply.status_code == 401
    assert reply.json() == {"error": "INVALID_CREDENTIALS", "error_description": "Invalid request credentials"}


def test_wrong_user_id_is_invalid_credentials(portal, http):
    reply = http.get(f"{portal.base_url}/rest/17/sandbox-secret/profile")
    assert reply.json()["error"] == "INVALID_CREDENTIALS"


def test_invalid_credentials_status_is_configurable_to_403(http):
    with BitrixEmulator(rate_limit=None, bad_credentials_status=403) as emulator:
        reply = http.get(f"{emulator.base_url}/rest/1/wrong/profile")
    assert reply.status_code == 403
    assert reply.json()["error"] == "INVALID_CREDENTIALS"


def test_invalid_credentials_change_nothing(portal, http):
    http.post(f"{portal.base_url}/rest/1/wrong/crm.deal.add", json={"fields": {"TITLE": "x"}})
    assert portal.admin.deals() == []


def test_method_outside_webhook_scopes_is_403_insufficient_scope(http):
    with BitrixEmulator(rate_limit=None, scopes=("crm",)) as emulator:
        reply = http.post(emulator.webhook_url + "user.get", json={})
        crm_reply = http.post(emulator.webhook_url + "crm.contact.list", json={})
        global_reply = http.post(emulator.webhook_url + "server.time", json={})
    assert reply.status_code == 403
    assert reply.json() == {"error": "insufficient_scope", "error_description":
                            "The request requires higher privileges than provided by the webhook token"}
    assert crm_reply.status_code == 200
    assert global_reply.status_code == 200


def test_require_https_makes_plain_http_calls_invalid_request(http):
    with BitrixEmulator(rate_limit=None, require_https=True) as emulator:
        reply = http.get(emulator.webhook_url + "profile")
    assert reply.status_code == 400
    assert reply.json() == {"error": "INVALID_REQUEST", "error_description": "Https required."}


def test_plain_http_is_served_by_default_on_loopback(portal, http):
    assert portal.webhook_url.startswith("http://127.0.0.1:")
    assert http.get(portal.webhook_url + "server.time").status_code == 200


# --- 3. parameter parsing ------------------------------------------------------------------

def test_parse_str_follows_php_brackets_append_and_plus():
    parsed = parse_str("fields[TITLE]=My+company&fields[PHONE][0][VALUE]=%2B7+916&fields[PHONE][0][VALUE_TYPE]=WORK"
                       "&select[]=ID&select[]=NAME&a.b=1&filter%5B%3EID%5D=5")
    assert parsed == {
        "fields": {"TITLE": "My company", "PHONE": {"0": {"VALUE": "+7 916", "VALUE_TYPE": "WORK"}}},
        "select": {"0": "ID", "1": "NAME"},
        "a_b": "1",
        "filter": {">ID": "5"},
    }


def test_parse_str_appends_after_the_highest_integer_key():
    assert parse_str("a[5]=x&a[]=y&a[k]=z&a[]=w") == {"a": {"5": "x", "6": "y", "k": "z", "7": "w"}}


def test_parse_url_drops_the_fragment_and_splits_the_query():
    assert parse_url("crm.deal.add?fields[TITLE]=a#b&fields[X]=1") == ("crm.deal.add", "fields[TITLE]=a")


def test_json_body_wins_over_query_string():
    params = request_params("id=1&keep=q", "POST", "application/json; charset=utf-8", b'{"id": 2}')
    assert params == {"id": 2, "keep": "q"}


def test_invalid_json_body_is_silently_empty(portal, http):
    reply = http.post(portal.webhook_url + "crm.contact.add", data=b'{"fields": {"NAME": ',
                      headers={"Content-Type": "application/json"})
    assert reply.status_code == 400
    assert reply.json() == {"error": "", "error_description": "Parameter 'fields' must be array."}


def test_form_body_with_brackets_is_parsed_like_php(portal, http):
    reply = http.post(portal.webhook_url + "crm.contact.add",
                      data="fields[NAME]=Anna+Maria&fields[EMAIL][0][VALUE]=a%2Bm@example.org",
                      headers={"Content-Type": "application/x-www-form-urlencoded"})
    contact = portal.admin.contacts()[-1]
    assert contact["ID"] == reply.json()["result"]
    assert contact["NAME"] == "Anna Maria"
    assert contact["EMAIL"][0]["VALUE"] == "a+m@example.org"


def test_non_form_content_type_body_goes_through_parse_str(portal, http):
    reply = http.post(portal.webhook_url + "crm.contact.add", data="fields[NAME]=Raw",
                      headers={"Content-Type": "text/plain"})
    assert reply.status_code == 200
    assert portal.admin.contacts()[-1]["NAME"] == "Raw"


def test_multipart_form_fields_are_parameters(portal, http):
    reply = http.post(portal.webhook_url + "crm.contact.add",
                      files={"fields[NAME]": (None, "Multi"), "fields[LAST_NAME]": (None, "Part")})
    assert reply.status_code == 200
    contact = portal.admin.contacts()[-1]
    assert (contact["NAME"], contact["LAST_NAME"]) == ("Multi", "Part")


def test_query_string_and_form_body_merge_body_keys_winning(portal, http):
    reply = http.post(portal.webhook_url + "crm.contact.get?id=999&unused=1", data="id=501",
                      headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert reply.json()["result"]["ID"] == "501"


def test_php_json_shape_lists_only_for_keys_zero_to_n():
    assert php_json_shape({}) == []
    assert php_json_shape({"0": "a", "1": "b"}) == ["a", "b"]
    assert php_json_shape({0: "a", 2: "b"}) == {"0": "a", "2": "b"}
    assert php_json_shape({"01": "a"}) == {"01": "a"}


# --- 4. parameter-name case variants -------------------------------------------------------

@pytest.mark.parametrize("key", ["fields", "FIELDS", "Fields", "arFields"])
def test_legacy_add_accepts_fields_name_variants(portal, http, key):
    reply = http.post(portal.webhook_url + "crm.deal.add", json={key: {"TITLE": f"via {key}"}})
    assert isinstance(reply.json()["result"], int)
    assert portal.admin.deals()[-1]["TITLE"] == f"via {key}"


@pytest.mark.parametrize("key", ["id", "ID"])
def test_legacy_get_accepts_id_and_ID(portal, http, key):
    assert http.post(portal.webhook_url + "crm.contact.get", json={key: 502}).json()["result"]["ID"] == "502"


@pytest.mark.parametrize("key", ["filter", "FILTER", "Filter"])
def test_legacy_list_accepts_filter_name_variants(portal, http, key):
    rows = http.post(portal.webhook_url + "crm.contact.list", json={key: {"ID": 503}}).json()["result"]
    assert [r["ID"] for r in rows] == ["503"]


@pytest.mark.parametrize("key", ["entity_type", "ENTITY_TYPE", "EntityType"])
def test_findbycomm_accepts_entity_type_name_variants(portal, http, key):
    reply = http.post(portal.webhook_url + "crm.duplicate.findbycomm",
                      json={"type": "EMAIL", "values": ["ivan.petrov@example.com"], key: "CONTACT"})
    assert reply.json()["result"] == {"CONTACT": [501]}


@pytest.mark.parametrize("key", ["entityTypeId", "ENTITY_TYPE_ID"])
def test_item_methods_accept_entity_type_id_variants(portal, http, key):
    reply = http.post(portal.webhook_url + "crm.item.get", json={key: 1040, "id": 101})
    assert reply.json()["result"]["item"]["title"] == "Data Science"


# --- 5. envelopes --------------------------------------------------------------------------

def test_success_envelope_has_result_and_time_block(portal, http):
    body = http.get(portal.webhook_url + "server.time").json()
    assert set(body) == {"result", "time"}
    assert set(body["time"]) == {"start", "finish", "duration", "processing", "date_start", "date_finish",
                                 "operating_reset_at", "operating"}
    assert body["time"]["finish"] >= body["time"]["start"]
    assert body["time"]["date_start"].endswith("+03:00")
    assert isinstance(body["time"]["operating_reset_at"], int)


def test_error_envelope_has_no_time_and_may_have_empty_code(portal, http):
    reply = http.post(portal.webhook_url + "crm.deal.get", json={"id": 0})
    assert reply.status_code == 400
    assert reply.json() == {"error": "", "error_description": "ID is not defined or invalid."}


def test_json_answers_are_utf8_json_with_rest_time_headers(portal, http):
    reply = http.get(portal.webhook_url + "crm.contact.get", params={"id": 501})
    assert reply.headers["Content-Type"] == "application/json; charset=utf-8"
    assert "X-Bitrix-Rest-Time" in reply.headers
    assert json.loads(reply.content)["result"]["LAST_NAME"] == "Петров"
