"""Clients written for the real Bitrix24 work against the emulator unchanged.

* fast_bitrix24 accepts a plain ``http://127.0.0.1`` webhook as is (its URL check only wants
  a scheme, host and path). Its own throttling knobs (``requests_per_second``,
  ``request_pool_size``) are raised so the test does not wait, and the emulator's bucket is off.
* b24pysdk always builds ``https://{domain}/rest/...`` URLs, so the emulator serves HTTPS
  with a throw-away loopback certificate and requests trusts it via ``REQUESTS_CA_BUNDLE``;
  the domain is ``127.0.0.1:{port}``.
"""
from __future__ import annotations

import warnings

import pytest
from b24pysdk import BitrixWebhook, Client
from b24pysdk.errors import (BitrixAPIInvalidCredentials, BitrixAPIOperationTimeLimit, BitrixAPIQueryLimitExceeded,
                             BitrixResponse302JSONDecodeError)
from fast_bitrix24 import Bitrix

from sandbox.bitrix import BitrixEmulator, make_loopback_cert, server_context


# --- fast_bitrix24 -------------------------------------------------------------------------

@pytest.fixture
def portal():
    with BitrixEmulator(rate_limit=None) as emulator:
        yield emulator


@pytest.fixture
def fast(portal):
    return Bitrix(portal.webhook_url, verbose=False, requests_per_second=1000.0, request_pool_size=1000)


def test_fast_bitrix24_get_all_pages_through_every_contact(portal, fast):
    portal.admin.add_contacts([{"NAME": f"Person {i}", "EMAIL": f"p{i}@example.com"} for i in range(230)])
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # fast_bitrix24 warns when count != total
        rows = fast.get_all("crm.contact.list", {"select": ["ID", "NAME", "EMAIL"]})
    assert len(rows) == 233
    assert len({r["ID"] for r in rows}) == 233
    assert portal.admin.counters()["by_method"] == {"crm.contact.list": 1, "batch": 1}


def test_fast_bitrix24_creates_deals_in_bulk_through_batches(portal, fast):
    items = [{"fields": {"TITLE": f"Deal {i}", "ORIGINATOR_ID": "survey-sync", "ORIGIN_ID": f"{i}:101",
                         "CATEGORY_ID": 4, "CONTACT_ID": 501}} for i in range(120)]
    ids = fast.call("crm.deal.add", items)
    deals = portal.admin.deals()
    assert len(ids) == len(set(ids)) == 120
    assert sorted(d["ID"] for d in deals) == sorted(ids)
    assert {d["ORIGIN_ID"] for d in deals} == {f"{i}:101" for i in range(120)}
    assert portal.admin.counters()["batch_commands"] == 120


def test_fast_bitrix24_raw_batch_with_result_chaining(portal, fast):
    result = fast.call_batch({"halt": 0, "cmd": {
        "contact": "crm.contact.add?fields[NAME]=Chained",
        "deal": "crm.deal.add?fields[TITLE]=D&fields[CONTACT_ID]=$result[contact]"}})
    assert portal.admin.deals()[0]["CONTACT_ID"] == result["contact"]


def test_fast_bitrix24_get_by_id(portal, fast):
    found = fast.get_by_ID("crm.contact.get", [501, 503])
    assert {k: v["NAME"] for k, v in found.items()} == {"501": "Иван", "503": "Елена"}


# --- b24pysdk ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def loopback_cert(tmp_path_factory):
    return make_loopback_cert(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def tls_portal(loopback_cert, monkeypatch):
    cert, key = loopback_cert
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert))
    with BitrixEmulator(rate_limit=None, tls=server_context(cert, key)) as emulator:
        yield emulator


@pytest.fixture
def webhook(tls_portal):
    return BitrixWebhook(domain=f"127.0.0.1:{tls_portal.port}", webhook_token="1/sandbox-secret")


def test_b24pysdk_single_calls(tls_portal, webhook):
    client = Client(webhook)
    assert client.profile().result["ID"] == "1"
    tls_portal.admin.add_deals([{"TITLE": f"D{i}"} for i in range(3)])
    response = client.crm.deal.list(select=["ID", "TITLE"]).response
    assert [d["TITLE"] for d in response.result] == ["D0", "D1", "D2"]
    assert webhook.call_method("crm.deal.get", {"id": 2})["result"]["TITLE"] == "D1"


def test_b24pysdk_batch_with_result_reference(tls_portal, webhook):
    reply = webhook.call_batch({
        "contact": ("crm.contact.add", {"fields": {"NAME": "SDK", "EMAIL": [{"VALUE": "sdk@example.com",
                                                                             "VALUE_TYPE": "WORK"}]}}),
        "deal": ("crm.deal.add", {"fields": {"TITLE": "SDK deal", "CONTACT_ID": "$result[contact]"}}),
        "check": ("crm.duplicate.findbycomm", {"type": "EMAIL", "values": ["SDK@example.com"]}),
    })
    result = reply["result"]
    assert result["result_error"] == []
    assert result["result"]["check"] == {"CONTACT": [result["result"]["contact"]]}
    assert tls_portal.admin.deals()[0]["CONTACT_ID"] == result["result"]["contact"]


def test_b24pysdk_list_helpers_page_through_everything(tls_portal, webhook):
    tls_portal.admin.add_deals([{"TITLE": f"D{i}"} for i in range(120)])
    listed = webhook.call_list("crm.deal.list", {"select": ["ID"]})
    fast = list(webhook.call_list_fast("crm.deal.list", {"select": ["ID"]})["result"])
    assert [d["ID"] for d in listed["result"]] == [d["ID"] for d in fast] == [str(i) for i in range(1, 121)]


def test_b24pysdk_maps_emulator_errors_to_its_exceptions(tls_portal, webhook):
    wrong = BitrixWebhook(domain=f"127.0.0.1:{tls_portal.port}", webhook_token="1/not-the-secret")
    with pytest.raises(BitrixAPIInvalidCredentials):
        wrong.call_method("profile")
    tls_portal.admin.charge_operating("crm.deal.list", 1000)
    with pytest.raises(BitrixAPIOperationTimeLimit):
        webhook.call_method("crm.deal.list")


def test_b24pysdk_recognises_a_moved_portal_and_a_query_limit(tls_portal, webhook, monkeypatch):
    tls_portal.admin.set_faults(script=[{"kind": "redirect_302", "location": "https://moved.example.org/rest/"}])
    webhook._AUTO_CHANGED_DOMAIN = False  # report the move instead of re-sending to the new host
    with pytest.raises(BitrixResponse302JSONDecodeError) as moved:
        webhook.call_method("profile")
    assert moved.value.new_domain == "moved.example.org"
    tls_portal.admin.set_rate_limit(1.0, 1)
    webhook.call_method("server.time")
    monkeypatch.setattr("time.sleep", lambda s: None)  # b24pysdk's retry pause for 503
    with pytest.raises(BitrixAPIQueryLimitExceeded):
        webhook.call_method("server.time", max_retries=1)
