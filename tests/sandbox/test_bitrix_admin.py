"""Admin API (in-process and over HTTP), counters, seeding and concurrency of the Bitrix24 emulator."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from sandbox.bitrix import BitrixEmulator


@pytest.fixture
def portal():
    with BitrixEmulator(rate_limit=None) as emulator:
        yield emulator


def test_portal_is_seeded_from_the_repo_portal_json(portal):
    contacts = portal.admin.contacts()
    assert [c["ID"] for c in contacts] == [501, 502, 503]
    assert contacts[1]["EMAIL"] == [{"ID": 2, "VALUE_TYPE": "HOME", "VALUE": "E.Smirnova@Example.org",
                                     "TYPE_ID": "EMAIL"}]
    programmes = portal.admin.items(1040)
    assert [p["id"] for p in programmes] == list(range(100, 125))
    assert programmes[0]["ufCrm8Code"] == "P100"
    assert portal.admin.items(1036) == [] and portal.admin.deals() == []


def test_dump_holds_contacts_deals_and_items_per_entity_type(portal):
    portal.admin.add_deals([{"TITLE": "x", "CONTACT_ID": 501}])
    state = portal.admin.dump()
    assert set(state) == {"contacts", "deals", "items"}
    assert set(state["items"]) == {"1036", "1040"}
    assert state["deals"][0]["CONTACT_IDS"] == [501]


def test_add_contacts_accepts_entries_or_a_plain_email(portal):
    ids = portal.admin.add_contacts([
        {"NAME": "A", "EMAIL": "a@example.com", "ORIGIN_ID": "r1"},
        {"NAME": "B", "EMAIL": [{"VALUE": "b@example.com", "VALUE_TYPE": "HOME"}], "PHONE": "+7 900 000-00-00"}])
    assert ids == [504, 505]
    reply = requests.post(portal.webhook_url + "crm.duplicate.findbycomm",
                          json={"type": "EMAIL", "values": ["A@example.com", "b@example.com"]}).json()
    assert reply["result"] == {"CONTACT": [504, 505]}
    assert portal.admin.contacts()[-1]["PHONE"][0]["VALUE"] == "+7 900 000-00-00"


def test_counters_count_requests_commands_and_rejections(portal):
    http = requests.Session()
    http.get(portal.webhook_url + "server.time")
    http.post(portal.webhook_url + "batch", json={"cmd": {"a": "crm.deal.add?fields[TITLE]=x", "b": "scope",
                                                          "c": "crm.deal.add?fields[TITLE]=y"}})
    http.get(f"{portal.base_url}/rest/1/wrong/server.time")
    assert portal.admin.counters() == {
        "requests": 3, "by_method": {"server.time": 2, "batch": 1},
        "batch_commands": 3, "commands_by_method": {"crm.deal.add": 2, "scope": 1},
        "rejected": {"INVALID_CREDENTIALS": 1}, "faults_fired": {}}
    portal.admin.reset_counters()
    assert portal.admin.counters()["requests"] == 0


def test_reset_goes_back_to_the_seeded_portal(portal):
    requests.post(portal.webhook_url + "crm.contact.add", json={"fields": {"NAME": "tmp"}})
    portal.admin.add_deals([{"TITLE": "tmp"}])
    portal.admin.reset()
    assert [c["ID"] for c in portal.admin.contacts()] == [501, 502, 503]
    assert portal.admin.deals() == []
    assert requests.post(portal.webhook_url + "crm.contact.add", json={"fields": {"NAME": "n"}}).json()["result"] == 504


def test_admin_over_http(portal):
    base = f"{portal.base_url}/_admin"
    assert requests.post(f"{base}/contacts", json={"contacts": [{"NAME": "H", "EMAIL": "h@example.com"}]}).json() == {
        "ids": [504]}
    assert requests.post(f"{base}/deals", json=[{"TITLE": "via http"}]).json() == {"ids": [1]}
    state = requests.get(f"{base}/state").json()
    assert state["contacts"][-1]["NAME"] == "H" and state["deals"][0]["TITLE"] == "via http"
    requests.get(portal.webhook_url + "server.time")
    assert requests.get(f"{base}/counters").json()["by_method"] == {"server.time": 1}
    assert requests.post(f"{base}/counters/reset").json() == {"ok": True}
    assert requests.get(f"{base}/counters").json()["requests"] == 0
    assert requests.post(f"{base}/reset").json() == {"ok": True}
    assert requests.get(f"{base}/state").json()["deals"] == []
    assert requests.get(f"{base}/nothing").status_code == 404


def test_operating_limit_and_slow_delay_over_http(portal):
    base = f"{portal.base_url}/_admin"
    assert requests.post(f"{base}/operating-limit", json={"limit_s": 0.5, "scale": 1e7}).json() == {
        "limit_s": 0.5, "scale": 1e7}
    assert requests.post(portal.webhook_url + "crm.deal.list", json={}).status_code == 200
    assert requests.post(portal.webhook_url + "crm.deal.list", json={}).status_code == 429
    assert requests.post(f"{base}/faults", json={"slow_s": 0.05}).json()["slow_s"] == 0.05


def test_concurrent_clients_see_consistent_state(portal):
    def worker(n: int) -> list[int]:
        with requests.Session() as http:
            ids = []
            for b in range(5):
                cmd = {f"c{i}": f"crm.contact.add?fields[NAME]=w{n}-{b}-{i}&fields[EMAIL][0][VALUE]=w{n}b{b}i{i}@x.org"
                       for i in range(10)}
                result = http.post(portal.webhook_url + "batch", json={"cmd": cmd}).json()["result"]
                ids.extend(result["result"].values())
            return ids

    with ThreadPoolExecutor(max_workers=8) as pool:
        all_ids = [i for ids in pool.map(worker, range(8)) for i in ids]
    assert len(all_ids) == len(set(all_ids)) == 400
    assert len(portal.admin.contacts()) == 403
    listed = requests.post(portal.webhook_url + "crm.contact.list", json={"select": ["ID"]}).json()
    assert listed["total"] == 403
    hits = requests.post(portal.webhook_url + "crm.duplicate.findbycomm",
                         json={"type": "EMAIL", "values": ["w7b4i9@x.org"]}).json()["result"]["CONTACT"]
    assert len(hits) == 1


def test_https_serving_with_a_loopback_certificate(tmp_path):
    from sandbox.bitrix import make_loopback_cert, server_context

    cert, key = make_loopback_cert(tmp_path)
    with BitrixEmulator(rate_limit=None, tls=server_context(cert, key), require_https=True) as emulator:
        assert emulator.webhook_url.startswith("https://127.0.0.1:")
        reply = requests.get(emulator.webhook_url + "profile", verify=str(cert))
    assert reply.status_code == 200 and reply.json()["result"]["ID"] == "1"
