"""The survey-platform emulator behaves like the contract says, hazards included.

Everything goes through real HTTP with ``requests`` against an emulator started
in-process; the emulator's clock is frozen and moved by the tests, the rate limiter's
clock is a fake, so nothing here waits for real more than a fraction of a second.
"""
from __future__ import annotations

import json
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

import jsonschema_rs
import pytest
import requests
import yaml

from sandbox.faults import FaultInjector
from sandbox.survey import FAULT_KINDS, Dataset, SurveyEmulator, build_dataset
from sandbox.survey.clock import parse_rfc3339

ROOT = Path(__file__).resolve().parents[2]
OPENAPI = ROOT / "sandbox" / "survey-platform-openapi.yaml"
SAMPLES = ROOT / "sandbox" / "sample_data"
TOKEN = "sandbox-token"
MSK = timezone(timedelta(hours=3))
# After every sample record (the newest is 2025-10-21T08:00:00+03:00).
T0 = datetime(2025, 10, 22, 12, 0, tzinfo=timezone.utc)
SAMPLE_POLL = 430131691
EN_POLL = 430131702


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def emulator():
    with SurveyEmulator(rate_limit_per_s=0) as emu:
        emu.admin.set_clock(T0)
        yield emu


@pytest.fixture
def api():
    with requests.Session() as session:
        session.headers["Authorization"] = f"Bearer {TOKEN}"
        yield session


def get(session: requests.Session, emu: SurveyEmulator, path: str, **params) -> requests.Response:
    return session.get(emu.base_url + path, params=params, timeout=5)


def list_all(session: requests.Session, emu: SurveyEmulator, path: str, **params) -> list[dict]:
    """Follow next_cursor to the end; fail on any non-200."""
    items, cursor = [], None
    for _ in range(10_000):
        response = get(session, emu, path, **params, **({"cursor": cursor} if cursor else {}))
        assert response.status_code == 200, response.text
        page = response.json()
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return items
    raise AssertionError("listing never ended")


def answer_ids(items: list[dict]) -> list[int]:
    return [item["answer_id"] for item in items]


def new_answer(answer_id: int, updated_at: str, *, poll_id: int = SAMPLE_POLL, email: str = "x@example.com") -> dict:
    return {"answer_id": answer_id, "poll_id": poll_id, "created_at": updated_at, "updated_at": updated_at,
            "answers": [{"code": "email", "value": email}]}


def openapi_validator(name: str):
    spec = yaml.safe_load(OPENAPI.read_text(encoding="utf-8"))
    return jsonschema_rs.Draft202012Validator({"$ref": f"#/components/schemas/{name}",
                                              "components": spec["components"]})


# --- transport and auth ------------------------------------------------------------------

def test_base_url_serves_the_api_under_api_v1(emulator, api):
    assert emulator.base_url.startswith("http://127.0.0.1:") and emulator.base_url.endswith("/api/v1")
    assert get(api, emulator, "/polls").status_code == 200
    assert api.get(emulator.root_url + "/polls", timeout=5).status_code == 404


def test_missing_token_is_401(emulator):
    response = requests.get(emulator.base_url + "/polls", timeout=5)
    assert response.status_code == 401
    assert response.json()["error"] == "unauthorized" and response.json()["message"]
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("header", ["Bearer wrong-token", f"Basic {TOKEN}", TOKEN, "Bearer"])
def test_wrong_token_is_401(emulator, header):
    response = requests.get(emulator.base_url + f"/polls/{SAMPLE_POLL}/answers",
                            headers={"Authorization": header}, timeout=5)
    assert response.status_code == 401
    assert response.json()["error"] == "unauthorized"


def test_custom_token_is_the_only_one_accepted():
    with SurveyEmulator(token="s3cret", rate_limit_per_s=0) as emu:
        ok = requests.get(emu.base_url + "/polls", headers={"Authorization": "bearer s3cret"}, timeout=5)
        default = requests.get(emu.base_url + "/polls", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5)
    assert (ok.status_code, default.status_code) == (200, 401)
    assert emu.token == "s3cret"


def test_non_get_method_is_405(emulator, api):
    response = api.post(emulator.base_url + "/polls", json={}, timeout=5)
    assert response.status_code == 405
    assert response.headers["Allow"] == "GET"


def test_unknown_endpoint_is_404(emulator, api):
    for path in ("/nope", "/polls/abc/answers", f"/polls/{SAMPLE_POLL}/answers/", "/polls/-1/answers"):
        response = get(api, emulator, path)
        assert response.status_code == 404, path
        assert response.json()["error"] == "not_found"


# --- polls -------------------------------------------------------------------------------

def test_polls_are_listed_in_updated_at_then_poll_id_order(emulator, api):
    emulator.admin.add_poll({"poll_id": 430131600, "poll_name": "Tie", "poll_language": "ru",
                             "employee_email": "priem@hse.ru", "created_at": "2025-10-06T08:30:00+03:00",
                             "updated_at": "2025-10-06T05:30:00Z"})  # same instant as poll 430131702
    polls = list_all(api, emulator, "/polls", limit=1)
    assert [p["poll_id"] for p in polls] == [SAMPLE_POLL, 430131600, EN_POLL]


def test_sample_polls_are_served_verbatim(emulator, api):
    expected = json.loads((SAMPLES / "polls.json").read_text(encoding="utf-8"))["polls"]
    assert list_all(api, emulator, "/polls") == expected


def test_polls_updated_since_is_inclusive(emulator, api):
    polls = list_all(api, emulator, "/polls", updated_since="2025-10-06T08:30:00+03:00")
    assert [p["poll_id"] for p in polls] == [EN_POLL]


def test_poll_edit_moves_its_updated_at(emulator, api):
    emulator.admin.edit_poll(SAMPLE_POLL, {"poll_name": "Опрос абитуриентов 2024", "employee_email": "priem@hse.ru"})
    polls = list_all(api, emulator, "/polls")
    assert [p["poll_id"] for p in polls] == [EN_POLL, SAMPLE_POLL]
    assert polls[-1]["poll_name"] == "Опрос абитуриентов 2024"
    assert polls[-1]["updated_at"] == "2025-10-22T15:00:00+03:00"  # the clock's now, in the poll's offset


# --- query validation --------------------------------------------------------------------

@pytest.mark.parametrize("path,limit", [
    ("/polls", "0"), ("/polls", "201"), ("/polls", "abc"), ("/polls", "-1"), ("/polls", ""), ("/polls", "1.5"),
    (f"/polls/{SAMPLE_POLL}/answers", "501"), (f"/polls/{SAMPLE_POLL}/answers", "0"),
    (f"/polls/{SAMPLE_POLL}/answers", "ten"),
])
def test_bad_limit_is_400(emulator, api, path, limit):
    response = get(api, emulator, path, limit=limit)
    assert response.status_code == 400
    assert response.json()["error"] == "bad_request"
    assert "limit" in response.json()["message"]


def test_limit_accepts_the_maximum(emulator, api):
    assert get(api, emulator, "/polls", limit=200).status_code == 200
    assert get(api, emulator, f"/polls/{SAMPLE_POLL}/answers", limit=500).status_code == 200


def test_limit_defaults_to_100():
    with SurveyEmulator(answers=250, seed=3, rate_limit_per_s=0) as emu, requests.Session() as session:
        session.headers["Authorization"] = f"Bearer {TOKEN}"
        poll = max(emu.admin.polls(), key=lambda p: len(emu.admin.all_answers(p["poll_id"])))
        page = get(session, emu, f"/polls/{poll['poll_id']}/answers").json()
    assert len(page["items"]) == 100 and page["next_cursor"]


@pytest.mark.parametrize("value", [
    "2025-10-20T09:15:02",  # naive: names no instant
    "2025-10-20 09:15:02 03:00",  # what an unencoded '+' becomes
    "yesterday", "2025-13-01T00:00:00Z", "2025-10-20T09:15:02+25:00", "",
])
def test_bad_updated_since_is_400(emulator, api, value):
    response = get(api, emulator, f"/polls/{SAMPLE_POLL}/answers", updated_since=value)
    assert response.status_code == 400
    assert response.json()["error"] == "bad_request"
    assert "updated_since" in response.json()["message"]


@pytest.mark.parametrize("cursor", ["garbage", "!!!", "eyJwb3MiOjF9", "a" * 80])
def test_malformed_cursor_is_400(emulator, api, cursor):
    response = get(api, emulator, f"/polls/{SAMPLE_POLL}/answers", cursor=cursor)
    assert response.status_code == 400
    assert response.json()["error"] == "bad_request"


def test_tampered_cursor_is_400(emulator, api):
    cursor = get(api, emulator, f"/polls/{SAMPLE_POLL}/answers", limit=2).json()["next_cursor"]
    tampered = cursor[:-2] + ("AA" if cursor[-2:] != "AA" else "BB")
    assert get(api, emulator, f"/polls/{SAMPLE_POLL}/answers", cursor=tampered).status_code == 400


def test_cursor_of_another_listing_is_400(emulator, api):
    cursor = get(api, emulator, f"/polls/{SAMPLE_POLL}/answers", limit=2).json()["next_cursor"]
    for path in (f"/polls/{EN_POLL}/answers", "/polls"):
        response = get(api, emulator, path, cursor=cursor)
        assert response.status_code == 400, path
        assert response.json()["error"] == "bad_request"


# --- answers: content, order, paging -----------------------------------------------------

def test_sample_answers_are_served_verbatim(emulator, api):
    expected = json.loads((SAMPLES / "answers.json").read_text(encoding="utf-8"))["answers"]
    served = list_all(api, emulator, f"/polls/{SAMPLE_POLL}/answers") + list_all(api, emulator,
                                                                                 f"/polls/{EN_POLL}/answers")
    assert sorted(served, key=lambda a: a["answer_id"]) == sorted(expected, key=lambda a: a["answer_id"])
    assert served[0]["updated_at"] == "2025-10-20T09:15:02+03:00"  # the record's own offset


def test_answers_are_ordered_by_instant_not_by_string(emulator, api):
    # As strings these sort the other way round: "…T06:30:00Z" < "…T08:30:00+03:00" < "…T10:00:00+05:00".
    emulator.admin.add_answer(new_answer(900000001, "2025-10-22T06:30:00Z"))
    emulator.admin.add_answer(new_answer(900000002, "2025-10-22T08:30:00+03:00"))
    emulator.admin.add_answer(new_answer(900000003, "2025-10-22T10:00:00+05:00"))
    items = list_all(api, emulator, f"/polls/{SAMPLE_POLL}/answers", updated_since="2025-10-22T00:00:00Z")
    assert answer_ids(items) == [900000003, 900000002, 900000001]
    assert [a["updated_at"] for a in items] == ["2025-10-22T10:00:00+05:00", "2025-10-22T08:30:00+03:00",
                                                "2025-10-22T06:30:00Z"]


def test_updated_since_is_inclusive(emulator, api):
    items = list_all(api, emulator, f"/polls/{SAMPLE_POLL}/answers", updated_since="2025-10-20T09:15:02+03:00")
    assert answer_ids(items)[:3] == [814573981, 814573982, 814573983]
    same_instant_in_utc = list_all(api, emulator, f"/polls/{SAMPLE_POLL}/answers",
                                   updated_since="2025-10-20T06:15:02Z")
    assert same_instant_in_utc == items
    later = list_all(api, emulator, f"/polls/{SAMPLE_POLL}/answers", updated_since="2025-10-20T06:15:02.000001Z")
    assert answer_ids(later)[0] == 814573990


def test_page_boundary_inside_timestamp_tie_loses_nothing(emulator, api):
    tie = "2025-10-20T12:00:00+03:00"
    for answer_id in range(900000010, 900000017):
        emulator.admin.add_answer(new_answer(answer_id, tie))
    everything = answer_ids(emulator.admin.all_answers(SAMPLE_POLL))
    for limit in (1, 2, 3, 4, 5):
        pages, cursor, seen = 0, None, []
        while True:
            page = get(api, emulator, f"/polls/{SAMPLE_POLL}/answers", limit=limit,
                       **({"cursor": cursor} if cursor else {})).json()
            seen += answer_ids(page["items"])
            pages += 1
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == everything, f"limit={limit}"
        assert pages == -(-len(everything) // limit)  # no empty trailing page either


def test_tied_answers_are_ordered_by_answer_id(emulator, api):
    items = get(api, emulator, f"/polls/{SAMPLE_POLL}/answers", limit=3).json()["items"]
    assert answer_ids(items) == [814573981, 814573982, 814573983]
    assert len({a["updated_at"] for a in items}) == 1


def test_next_cursor_is_null_on_the_last_page(emulator, api):
    page = get(api, emulator, f"/polls/{EN_POLL}/answers").json()
    assert answer_ids(page["items"]) == [914000001]
    assert page["next_cursor"] is None
    empty = get(api, emulator, f"/polls/{EN_POLL}/answers", updated_since="2030-01-01T00:00:00Z").json()
    assert empty == {"items": [], "next_cursor": None}


def test_full_listing_of_a_generated_dataset_sees_every_answer_once():
    with SurveyEmulator(answers=3000, seed=11, rate_limit_per_s=0) as emu, requests.Session() as session:
        session.headers["Authorization"] = f"Bearer {TOKEN}"
        seen = 0
        for poll in list_all(session, emu, "/polls"):
            served = list_all(session, emu, f"/polls/{poll['poll_id']}/answers", limit=37)
            truth = emu.admin.all_answers(poll["poll_id"])
            assert served == truth
            keys = [(parse_rfc3339(a["updated_at"]), a["answer_id"]) for a in served]
            assert keys == sorted(keys)
            seen += len(served)
        assert seen == 3000 + len(json.loads((SAMPLES / "answers.json").read_text(encoding="utf-8"))["answers"])


def test_get_one_answer(emulator, api):
    response = get(api, emulator, f"/polls/{SAMPLE_POLL}/answers/814573993")
    assert response.status_code == 200
    assert response.json()["answers"][0] == {"code": "email", "value": "  NEW.APPLICANT@MAIL.RU "}
    assert response.headers["Content-Type"].startswith("application/json")


def test_answer_of_another_poll_or_unknown_is_404(emulator, api):
    for path in (f"/polls/{EN_POLL}/answers/814573993", f"/polls/{SAMPLE_POLL}/answers/1",
                 "/polls/1/answers/814573993"):
        response = get(api, emulator, path)
        assert response.status_code == 404, path
        assert response.json()["error"] == "not_found"


def test_unknown_poll_answers_404(emulator, api):
    response = get(api, emulator, "/polls/999999999/answers")
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


def test_served_answers_conform_to_the_answer_schema(api):
    validator = openapi_validator("Answer")
    samples = json.loads((SAMPLES / "answers.json").read_text(encoding="utf-8"))["answers"]
    with SurveyEmulator(answers=400, seed=5, rate_limit_per_s=0) as emu:
        served = [answer for poll in list_all(api, emu, "/polls")
                  for answer in list_all(api, emu, f"/polls/{poll['poll_id']}/answers", limit=500)]
    # An empty listing would validate nothing: every sample and every generated answer must be there.
    assert len(served) == len(samples) + 400
    assert {a["answer_id"] for a in samples} <= set(answer_ids(served))
    for answer in served:
        validator.validate(answer)
    # ...and the schema must be able to say no.
    assert not validator.is_valid({k: v for k, v in served[0].items() if k != "answer_id"})


# --- late visibility ---------------------------------------------------------------------

def test_answer_invisible_until_visibility_lag_passes(api):
    with SurveyEmulator(rate_limit_per_s=0, visibility_lag_s=300) as emu:
        emu.admin.set_clock("2025-10-22T12:00:00Z")
        emu.admin.add_answer(new_answer(900000100, "2025-10-22T15:00:00+03:00"))
        path = f"/polls/{SAMPLE_POLL}/answers"

        emu.admin.advance_clock(299)
        assert 900000100 not in answer_ids(list_all(api, emu, path))
        assert get(api, emu, f"{path}/900000100").status_code == 404

        emu.admin.advance_clock(1)
        assert answer_ids(list_all(api, emu, path))[-1] == 900000100
        assert get(api, emu, f"{path}/900000100").status_code == 200


def test_visibility_lag_hides_the_newest_answers_of_a_listing(api):
    with SurveyEmulator(rate_limit_per_s=0, visibility_lag_s=300) as emu:
        emu.admin.set_clock("2025-10-20T10:08:00+03:00")  # visible: updated up to 10:03:00 inclusive
        visible = answer_ids(list_all(api, emu, f"/polls/{SAMPLE_POLL}/answers"))
        assert visible == [814573981, 814573982, 814573983, 814573990, 814573991, 814573992]
        assert answer_ids(emu.admin.all_answers(SAMPLE_POLL, visible_only=True)) == visible


def test_spread_lag_makes_answers_visible_out_of_order(api):
    with SurveyEmulator(rate_limit_per_s=0, visibility_lag_s=300, visibility_lag_mode="spread", seed=2) as emu:
        start = datetime(2025, 10, 23, 9, 0, tzinfo=MSK)
        for offset in range(40):
            stamp = (start + timedelta(seconds=offset)).isoformat()
            emu.admin.add_answer(new_answer(900000200 + offset, stamp))
        emu.admin.set_clock(start + timedelta(seconds=100))
        visible = set(answer_ids(list_all(api, emu, f"/polls/{SAMPLE_POLL}/answers",
                                          updated_since=start.isoformat())))
        ids = list(range(900000200, 900000240))
        assert visible and len(visible) < 40
        # Some answer is visible while an older one is not: the hazard a look-back guards against.
        assert any(b in visible and a not in visible for a, b in zip(ids, ids[1:], strict=False))
        emu.admin.advance_clock(300)
        assert len(list_all(api, emu, f"/polls/{SAMPLE_POLL}/answers", updated_since=start.isoformat())) == 40


def test_late_arrival_is_missed_without_look_back_and_found_with_it(emulator, api):
    path = f"/polls/{SAMPLE_POLL}/answers"
    emulator.admin.add_answer(new_answer(900000301, "2025-10-22T15:00:00+03:00"), lag_s=240)
    emulator.admin.add_answer(new_answer(900000302, "2025-10-22T15:00:10+03:00"), lag_s=0)
    emulator.admin.set_clock("2025-10-22T12:00:20Z")
    first = list_all(api, emulator, path)
    assert answer_ids(first)[-1] == 900000302 and 900000301 not in answer_ids(first)
    watermark = first[-1]["updated_at"]

    emulator.admin.advance_clock(600)
    without_look_back = answer_ids(list_all(api, emulator, path, updated_since=watermark))
    look_back = (parse_rfc3339(watermark) - timedelta(minutes=10)).isoformat()
    with_look_back = answer_ids(list_all(api, emulator, path, updated_since=look_back))
    assert 900000301 not in without_look_back
    assert 900000301 in with_look_back


# --- edits and deletions -----------------------------------------------------------------

def test_edit_moves_answer_to_end_of_listing(emulator, api):
    path = f"/polls/{SAMPLE_POLL}/answers"
    before = list_all(api, emulator, path)
    assert answer_ids(before)[0] == 814573981
    emulator.admin.edit_answer(814573981, {"answers": {"phone": "+7 (916) 765-43-21"}})
    after = list_all(api, emulator, path)
    assert answer_ids(after) == answer_ids(before)[1:] + [814573981]
    edited = after[-1]
    assert edited["updated_at"] == "2025-10-22T15:00:00+03:00"  # now, in the record's own offset
    assert edited["created_at"] == before[0]["created_at"]
    assert {"code": "phone", "value": "+7 (916) 765-43-21"} in edited["answers"]
    assert edited["utm"] == before[0]["utm"]
    # A client resuming from its watermark sees the edit again, same id, new content.
    again = list_all(api, emulator, path, updated_since=before[-1]["updated_at"])
    assert answer_ids(again)[-1] == 814573981


def test_edit_with_a_full_answer_and_explicit_updated_at(emulator, api):
    answer = emulator.admin.answer(914000001)
    answer["answers"][0]["value"] = "new.address@uni.edu"
    del answer["utm"]
    emulator.admin.edit_answer(914000001, {**answer, "utm": None}, updated_at="2025-10-07T10:00:00+03:00")
    served = get(api, emulator, f"/polls/{EN_POLL}/answers/914000001").json()
    assert served["updated_at"] == "2025-10-07T10:00:00+03:00"
    assert served["answers"][0]["value"] == "new.address@uni.edu"
    assert "utm" not in served


def test_edit_cannot_move_an_answer_to_another_poll(emulator):
    with pytest.raises(ValueError):
        emulator.admin.edit_answer(914000001, {"poll_id": SAMPLE_POLL})


def test_deleted_answer_is_gone(emulator, api):
    emulator.admin.delete_answer(814573990)
    assert get(api, emulator, f"/polls/{SAMPLE_POLL}/answers/814573990").status_code == 404
    assert 814573990 not in answer_ids(list_all(api, emulator, f"/polls/{SAMPLE_POLL}/answers"))


def test_deleted_poll_answers_404(emulator, api):
    cursor = get(api, emulator, f"/polls/{SAMPLE_POLL}/answers", limit=2).json()["next_cursor"]
    emulator.admin.delete_poll(SAMPLE_POLL)
    for response in (get(api, emulator, f"/polls/{SAMPLE_POLL}/answers"),
                     get(api, emulator, f"/polls/{SAMPLE_POLL}/answers", cursor=cursor),
                     get(api, emulator, f"/polls/{SAMPLE_POLL}/answers/814573981")):
        assert response.status_code == 404
        assert response.json()["error"] == "not_found"
    assert [p["poll_id"] for p in list_all(api, emulator, "/polls")] == [EN_POLL]
    assert get(api, emulator, f"/polls/{EN_POLL}/answers").status_code == 200  # the rest goes on
    assert all(a["poll_id"] == EN_POLL for a in emulator.admin.all_answers())


def test_archived_poll_is_listed_and_still_lists_answers(emulator, api):
    emulator.admin.edit_poll(EN_POLL, {"status": "archived"})
    polls = {p["poll_id"]: p for p in list_all(api, emulator, "/polls")}
    assert polls[EN_POLL]["status"] == "archived"
    assert answer_ids(list_all(api, emulator, f"/polls/{EN_POLL}/answers")) == [914000001]


# --- rate limit --------------------------------------------------------------------------

def test_rate_limit_answers_429_with_retry_after(api):
    monotonic = FakeMonotonic()
    with SurveyEmulator(rate_limit_per_s=3, monotonic=monotonic) as emu:
        statuses = [get(api, emu, "/polls").status_code for _ in range(3)]
        limited = get(api, emu, "/polls")
        assert statuses == [200, 200, 200]
        assert limited.status_code == 429
        assert limited.json()["error"] == "rate_limited"
        assert limited.headers["Retry-After"].isdigit() and int(limited.headers["Retry-After"]) >= 1
        monotonic.now += 1.0
        assert get(api, emu, "/polls").status_code == 200
        assert emu.admin.counters()["statuses"] == {"200": 4, "429": 1}


def test_rate_limit_default_is_ten_per_second(api):
    monotonic = FakeMonotonic()
    with SurveyEmulator(monotonic=monotonic) as emu:
        statuses = Counter(get(api, emu, "/polls").status_code for _ in range(12))
    assert statuses == {200: 10, 429: 2}


def test_rate_limit_does_not_count_unauthorized_requests(api):
    monotonic = FakeMonotonic()
    with SurveyEmulator(rate_limit_per_s=2, monotonic=monotonic) as emu:
        for _ in range(5):
            assert requests.get(emu.base_url + "/polls", timeout=5).status_code == 401
        assert [get(api, emu, "/polls").status_code for _ in range(3)] == [200, 200, 429]


def test_rate_limit_zero_disables_it_and_can_be_changed_live(emulator, api):
    assert {get(api, emulator, "/polls").status_code for _ in range(25)} == {200}
    emulator.admin.configure(rate_limit_per_s=0.1)  # one request, then one every 10 s
    responses = [get(api, emulator, "/polls") for _ in range(2)]
    assert [r.status_code for r in responses] == [200, 429]
    assert int(responses[1].headers["Retry-After"]) >= 9


# --- transient faults --------------------------------------------------------------------

def test_fault_script_drops_next_request(emulator, api):
    emulator.admin.set_faults(script=[{"kind": "drop"}])
    with pytest.raises(requests.ConnectionError):
        get(api, emulator, "/polls")
    assert get(api, emulator, "/polls").status_code == 200
    counters = emulator.admin.counters()
    assert counters["faults"] == {"drop": 1}
    assert counters["by_endpoint"]["listPolls"] == {"dropped": 1, "200": 1}


@pytest.mark.parametrize("kind,status,content_type", [
    ("http_502", 502, "text/html"), ("http_503", 503, "application/json"), ("http_504", 504, "text/plain"),
])
def test_fault_script_answers_a_server_error_once(emulator, api, kind, status, content_type):
    emulator.admin.set_faults(script=[{"kind": kind, "times": 2}])
    first, second, third = (get(api, emulator, f"/polls/{SAMPLE_POLL}/answers") for _ in range(3))
    assert (first.status_code, second.status_code, third.status_code) == (status, status, 200)
    assert first.headers["Content-Type"].startswith(content_type)


def test_fault_429_carries_retry_after(emulator, api):
    emulator.admin.set_faults(script=[{"kind": "http_429"}])
    response = get(api, emulator, "/polls")
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "1"
    assert response.json()["error"] == "rate_limited"


def test_slow_fault_delays_the_response(emulator, api):
    emulator.admin.set_faults(script=[{"kind": "slow", "times": 2}], slow_s=0.3)
    with pytest.raises(requests.Timeout):
        api.get(emulator.base_url + "/polls", timeout=0.1)
    started = time.monotonic()
    assert get(api, emulator, "/polls").status_code == 200  # slow, but an answer
    assert time.monotonic() - started >= 0.3


def test_fault_script_can_target_one_operation(emulator, api):
    emulator.admin.set_faults(script=[{"kind": "http_503", "method": "getAnswer"}])
    assert get(api, emulator, "/polls").status_code == 200
    assert get(api, emulator, f"/polls/{SAMPLE_POLL}/answers").status_code == 200
    assert get(api, emulator, f"/polls/{SAMPLE_POLL}/answers/814573981").status_code == 503
    assert get(api, emulator, f"/polls/{SAMPLE_POLL}/answers/814573981").status_code == 200


def test_fault_rates_are_reproducible_for_a_seed(api):
    def statuses(seed: int) -> list[int]:
        with SurveyEmulator(rate_limit_per_s=0) as emu:
            emu.admin.set_faults(rates={"http_503": 0.3, "http_502": 0.2}, seed=seed)
            return [get(api, emu, "/polls").status_code for _ in range(30)]

    first = statuses(7)
    assert first == statuses(7)
    assert {200, 502, 503} <= set(first)
    assert first != statuses(8)


def test_an_injected_fault_injector_is_used(api):
    faults = FaultInjector(seed=1, rates={"http_504": 1.0})
    with SurveyEmulator(rate_limit_per_s=0, faults=faults) as emu:
        assert get(api, emu, "/polls").status_code == 504
        faults.clear()
        assert get(api, emu, "/polls").status_code == 200
    assert faults.fired["http_504"] == 1


def test_unknown_fault_kind_is_rejected(emulator):
    with pytest.raises(ValueError, match="unknown fault kinds"):
        emulator.admin.set_faults(rates={"http_500": 0.1})
    assert set(FAULT_KINDS) == {"drop", "slow", "http_502", "http_503", "http_504", "http_429", "cursor_expired"}


def test_latency_is_added_to_every_response(api):
    with SurveyEmulator(rate_limit_per_s=0, latency_ms=150) as emu:
        for call in (lambda: get(api, emu, "/polls"), lambda: requests.get(emu.base_url + "/polls", timeout=5)):
            started = time.monotonic()
            call()
            assert time.monotonic() - started >= 0.15


# --- cursor expiry -----------------------------------------------------------------------

def test_cursor_older_than_ttl_is_expired(emulator, api):
    path = f"/polls/{SAMPLE_POLL}/answers"
    cursor = get(api, emulator, path, limit=2).json()["next_cursor"]
    emulator.admin.advance_clock(900)
    assert get(api, emulator, path, limit=2, cursor=cursor).status_code == 200
    emulator.admin.advance_clock(1)
    response = get(api, emulator, path, limit=2, cursor=cursor)
    assert response.status_code == 400
    assert response.json()["error"] == "cursor_expired"


def test_cursor_ttl_is_configurable(api):
    with SurveyEmulator(rate_limit_per_s=0, cursor_ttl_s=60) as emu:
        emu.admin.set_clock(T0)
        cursor = get(api, emu, "/polls", limit=1).json()["next_cursor"]
        emu.admin.advance_clock(61)
        assert get(api, emu, "/polls", cursor=cursor).json()["error"] == "cursor_expired"


def test_cursor_expired_fault_forces_expiry_of_a_fresh_cursor(emulator, api):
    path = f"/polls/{SAMPLE_POLL}/answers"
    emulator.admin.set_faults(script=[{"kind": "cursor_expired"}])
    first = get(api, emulator, path, limit=2)
    assert first.status_code == 200  # no cursor: nothing to expire
    expired = get(api, emulator, path, limit=2, cursor=first.json()["next_cursor"])
    assert (expired.status_code, expired.json()["error"]) == (400, "cursor_expired")
    assert get(api, emulator, path, limit=2, cursor=first.json()["next_cursor"]).status_code == 200
    assert emulator.admin.counters()["faults"] == {"cursor_expired": 1}


def test_restarting_from_the_watermark_after_expiry_loses_nothing(emulator, api):
    path = f"/polls/{SAMPLE_POLL}/answers"
    page = get(api, emulator, path, limit=2).json()
    seen = answer_ids(page["items"])
    emulator.admin.advance_clock(1000)
    assert get(api, emulator, path, limit=2, cursor=page["next_cursor"]).json()["error"] == "cursor_expired"
    restarted = list_all(api, emulator, path, limit=2, updated_since=page["items"][-1]["updated_at"])
    assert sorted(set(seen + answer_ids(restarted))) == sorted(answer_ids(emulator.admin.all_answers(SAMPLE_POLL)))


# --- clock -------------------------------------------------------------------------------

def test_clock_is_settable_advanceable_and_back_to_real_time(emulator):
    assert emulator.admin.now() == T0
    assert emulator.admin.advance_clock(90) == T0 + timedelta(seconds=90)
    real = emulator.admin.set_clock(None)
    assert abs(real - datetime.now(timezone.utc)) < timedelta(seconds=5)


def test_injected_base_clock_is_followed():
    with SurveyEmulator(rate_limit_per_s=0, clock=lambda: T0) as emu:
        assert emu.admin.now() == T0
        emu.admin.advance_clock(10)
        assert emu.admin.now() == T0 + timedelta(seconds=10)


# --- counters and admin over HTTP --------------------------------------------------------

def test_counters_count_requests_per_endpoint_and_status(emulator, api):
    get(api, emulator, "/polls")
    get(api, emulator, f"/polls/{SAMPLE_POLL}/answers", limit=0)
    get(api, emulator, f"/polls/{SAMPLE_POLL}/answers/814573981")
    requests.get(emulator.base_url + "/polls", timeout=5)
    counters = emulator.admin.counters()
    assert counters["requests"] == {"listPolls": 2, "listAnswers": 1, "getAnswer": 1}
    assert counters["total"] == 4
    assert counters["statuses"] == {"200": 2, "400": 1, "401": 1}
    assert counters["by_endpoint"]["listPolls"] == {"200": 1, "401": 1}
    emulator.admin.reset_counters()
    assert emulator.admin.counters()["total"] == 0


def test_admin_over_http(emulator, api):
    admin = emulator.admin_url
    assert admin == emulator.root_url + "/_admin"
    state = requests.get(f"{admin}/state", timeout=5).json()
    assert (state["polls"], state["answers"], state["clock_frozen"]) == (2, 10, True)
    assert state["now"] == "2025-10-22T12:00:00Z"

    added = requests.post(f"{admin}/answers", json=new_answer(900000400, "2025-10-22T14:00:00+03:00"), timeout=5)
    assert added.status_code == 201
    edited = requests.post(f"{admin}/answers/900000400", json={"changes": {"answers": {"email": "y@example.com"}}},
                           timeout=5)
    assert edited.json()["updated_at"] == "2025-10-22T15:00:00+03:00"
    late = requests.post(f"{admin}/answers", json={"answer": new_answer(900000401, "2025-10-22T14:59:00+03:00"),
                                                   "lag_s": 120}, timeout=5)
    assert late.status_code == 201
    assert 900000401 not in answer_ids(list_all(api, emulator, f"/polls/{SAMPLE_POLL}/answers"))
    clock = requests.post(f"{admin}/clock", json={"advance": 60}, timeout=5).json()
    assert clock == {"now": "2025-10-22T12:01:00Z", "frozen": True}
    assert requests.post(f"{admin}/clock", json={"now": "2025-10-23T00:00:00Z"}, timeout=5).json()["now"] \
        == "2025-10-23T00:00:00Z"
    assert answer_ids(list_all(api, emulator, f"/polls/{SAMPLE_POLL}/answers"))[-2:] == [900000401, 900000400]

    truth = requests.get(f"{admin}/answers", params={"poll_id": SAMPLE_POLL}, timeout=5).json()
    assert truth == emulator.admin.all_answers(SAMPLE_POLL)
    assert requests.get(f"{admin}/answers/900000400", timeout=5).json()["answers"] == \
        [{"code": "email", "value": "y@example.com"}]

    faults = requests.post(f"{admin}/faults", json={"script": [{"kind": "http_503"}]}, timeout=5)
    assert faults.json()["script"] == [{"kind": "http_503", "times": 1}]
    assert get(api, emulator, "/polls").status_code == 503
    assert requests.post(f"{admin}/faults", json={"rates": {"bogus": 1}}, timeout=5).status_code == 400

    assert requests.post(f"{admin}/config", json={"latency_ms": 0, "cursor_ttl_s": 60}, timeout=5).json()[
        "cursor_ttl_s"] == 60
    assert requests.post(f"{admin}/polls", json={"poll_id": 430131800, "poll_name": "New", "poll_language": "en",
                                                 "employee_email": "priem@hse.ru"}, timeout=5).status_code == 201
    assert requests.delete(f"{admin}/polls/{SAMPLE_POLL}", timeout=5).json() == {"deleted": SAMPLE_POLL}
    assert get(api, emulator, f"/polls/{SAMPLE_POLL}/answers").status_code == 404
    assert requests.delete(f"{admin}/polls/{SAMPLE_POLL}", timeout=5).status_code == 404

    counters = requests.get(f"{admin}/counters", timeout=5).json()
    assert counters["statuses"]["503"] == 1
    assert requests.post(f"{admin}/counters/reset", timeout=5).json()["total"] == 0
    assert requests.get(f"{admin}/nope", timeout=5).status_code == 404


def test_admin_rejects_answers_that_break_the_contract(emulator):
    with pytest.raises(ValueError):
        emulator.admin.add_answer({"answer_id": 900000500, "poll_id": SAMPLE_POLL,
                                   "answers": [{"code": "x", "value": {"nested": 1}}]})
    with pytest.raises(ValueError):
        emulator.admin.add_answer(new_answer(900000501, "2025-10-22T14:00:00"))  # naive timestamp
    with pytest.raises(ValueError):
        emulator.admin.add_answer(new_answer(814573981, "2025-10-22T14:00:00Z"))  # id taken
    with pytest.raises(ValueError):
        emulator.admin.add_answer(new_answer(900000502, "2025-10-22T14:00:00Z", poll_id=1))  # unknown poll


def test_stop_closes_keep_alive_connections(api):
    emu = SurveyEmulator(rate_limit_per_s=0).start()
    assert get(api, emu, "/polls").status_code == 200  # the session now holds a pooled connection
    emu.stop()
    with pytest.raises(requests.ConnectionError):
        get(api, emu, "/polls")


# --- the dataset -------------------------------------------------------------------------

def test_dataset_is_deterministic_for_a_seed():
    first, again, other = (build_dataset(answers=500, seed=s) for s in (4, 4, 5))
    assert [p.body for p in first.packed] == [p.body for p in again.packed]
    assert first.polls == again.polls
    assert [p.body for p in first.packed] != [p.body for p in other.packed]


def test_dataset_with_no_answers_is_exactly_the_samples():
    dataset = build_dataset(answers=0)
    polls = json.loads((SAMPLES / "polls.json").read_text(encoding="utf-8"))["polls"]
    answers = json.loads((SAMPLES / "answers.json").read_text(encoding="utf-8"))["answers"]
    assert dataset.polls == polls
    assert list(dataset.answers()) == answers
    assert list(Dataset.samples().answers()) == answers
    assert list(Dataset.from_files(SAMPLES / "polls.json", SAMPLES / "answers.json").answers()) == answers


def test_dataset_without_samples_has_only_generated_records():
    dataset = build_dataset(answers=50, seed=1, include_samples=False)
    assert len(dataset) == 50
    assert SAMPLE_POLL not in {p["poll_id"] for p in dataset.polls}


def test_generated_ids_are_unique_and_nine_digits():
    dataset = build_dataset(answers=5000, seed=9)
    answer_ids_ = [p.answer_id for p in dataset.packed]
    poll_ids = [p["poll_id"] for p in dataset.polls]
    assert len(set(answer_ids_)) == len(answer_ids_) == 5010
    assert len(set(poll_ids)) == len(poll_ids)
    assert all(100_000_000 <= i <= 999_999_999 for i in answer_ids_ + poll_ids)
    assert {p.poll_id for p in dataset.packed} <= set(poll_ids)


def test_generated_dataset_has_the_awkward_cases():
    dataset = build_dataset(answers=3000, seed=0, include_samples=False)
    portal = json.loads((ROOT / "sandbox" / "portal.json").read_text(encoding="utf-8"))
    users = {u["EMAIL"] for u in portal["users"]}
    programmes = {i["title"] for sp in portal["smart_processes"] if sp["entityTypeId"] == 1040 for i in sp["items"]}
    answers = list(dataset.answers())

    def values(code: str) -> list:
        return [item["value"] for a in answers for item in a["answers"] if item["code"] == code]

    assert {p["employee_email"] for p in dataset.polls} <= users
    assert {p["status"] for p in dataset.polls} >= {"active", "archived"}
    # Ties: many answers share an updated_at second.
    per_second = Counter(p.updated_us for p in dataset.packed)
    assert sum(n for n in per_second.values() if n > 1) > len(answers) * 0.3
    assert max(per_second.values()) >= 4
    # Edits, offsets other than +03:00.
    assert sum(a["updated_at"] != a["created_at"] for a in answers) > 50
    assert {a["updated_at"][19:] for a in answers} >= {"+03:00", "Z", "+00:00", "+05:00"}
    # Repeated people, sometimes with the email in another case or padded.
    emails = [e for e in values("email") if isinstance(e, str) and "@" in e]
    normalised = Counter(e.strip().lower() for e in emails)
    repeats = sum(n - 1 for n in normalised.values())
    assert 0.08 * len(answers) < repeats < 0.25 * len(answers)
    assert any(e != e.strip() for e in emails) and any(e.strip() != e.strip().lower() for e in emails)
    # Missing / null / invalid emails.
    assert sum(not any(i["code"] == "email" for i in a["answers"]) for a in answers) > 10
    assert None in values("email")
    assert any(isinstance(e, str) and ("@" not in e or e.endswith("@")) for e in values("email"))
    # Russian and English respondents.
    names = values("first_name")
    assert any(any("а" <= ch <= "я" for ch in n.lower()) for n in names)
    assert any(n.isascii() for n in names)
    # Programmes: 1-3 known ones, and double spaces, unknown ones, none at all.
    chosen = values("programs")
    flat = [p for lst in chosen for p in lst]
    assert sum(p in programmes for p in flat) > 0.9 * len(flat)
    assert any("  " in p for p in flat)
    assert any(p not in programmes and " ".join(p.split()) not in programmes for p in flat)
    assert [] in chosen
    assert max(len(lst) for lst in chosen) >= 3
    # Phones in many formats.
    phones = values("phone")
    assert any(p.startswith("89") for p in phones) and any(p.startswith("+7 (9") for p in phones)
    assert any(p.startswith("+7") and p[2:].isdigit() for p in phones)
    # Unknown level; utm, cookies, meta sometimes missing or empty.
    assert any(level not in ("Бакалавриат", "Магистратура", "Аспирантура") for level in values("level"))
    for key in ("utm", "cookies", "meta"):
        assert any(key not in a for a in answers) and any(a.get(key) == {} for a in answers)
        assert any(a.get(key) for a in answers)


def test_generated_answers_conform_to_the_answer_schema():
    validator = openapi_validator("Answer")
    poll_validator = openapi_validator("Poll")
    dataset = build_dataset(answers=2000, seed=6)
    for answer in dataset.answers():
        validator.validate(answer)
    for poll in dataset.polls:
        poll_validator.validate(poll)
