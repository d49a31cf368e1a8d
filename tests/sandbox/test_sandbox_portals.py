"""``Sandbox`` serves either portal with survey data in that portal's vocabulary.

``portal="real"``: the office's portal (universal lists 17/18, webhook user 169 with the
``lists`` scope) and the real sample deliveries converted to the pull API's shape, plus
answers generated with the real question codes. ``portal="smart"``: exactly what the
sandbox served before the real portal existed. ``bitrix_profile`` sets the plan's limits
unless the caller gives its own.
"""
from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner

from sandbox import Sandbox
from sandbox.bitrix import BitrixEmulator
from sandbox.bitrix.__main__ import build as build_from_command_line
from sandbox.survey import Dataset
from sandbox.survey.dataset import build_dataset
from sandbox.survey.dataset_real import build_real_dataset, real_programme_names
from sandbox.survey.vocabulary import UNKNOWN_PROGRAMMES

ROOT = Path(__file__).resolve().parents[2]
REAL_PORTAL = json.loads((ROOT / "sandbox" / "real-portal.json").read_text(encoding="utf-8"))
# Far after every sample and generated answer, so all of them are visible.
LATER = datetime(2027, 1, 1, tzinfo=timezone.utc)
SAMPLE_ANSWER_IDS = list(range(814573981, 814573992))


def _survey_get(box: Sandbox, path: str, **params) -> dict:
    reply = requests.get(f"{box.survey.base_url}/{path}", params=params, timeout=10,
                         headers={"Authorization": f"Bearer {box.survey.token}"})
    assert reply.status_code == 200, reply.text
    return reply.json()


def _all_answers(box: Sandbox) -> dict[int, dict]:
    """Every answer of every listed poll, by id, read page by page over HTTP."""
    answers: dict[int, dict] = {}
    polls = _survey_get(box, "polls", limit=100)["items"]
    for poll in polls:
        cursor = None
        while True:
            page = _survey_get(box, f"polls/{poll['poll_id']}/answers", limit=500,
                               **({"cursor": cursor} if cursor else {}))
            answers.update({a["answer_id"]: a for a in page["items"]})
            cursor = page["next_cursor"]
            if not cursor:
                break
    return answers


def _b24(box: Sandbox, method: str, params: dict) -> requests.Response:
    return requests.post(box.bitrix.webhook_url + method, json=params, timeout=10)


@pytest.fixture
def real_box():
    with Sandbox(portal="real", rate_limit=None) as box:
        box.survey.admin.set_clock(LATER)
        yield box


# --- the real portal --------------------------------------------------------------------------

def test_real_portal_is_the_default_and_serves_lists_17_and_18_to_its_webhook_user():
    with Sandbox(rate_limit=None) as box:
        assert box.portal == "real"
        assert "/rest/169/" in box.bitrix.webhook_url
        reply = _b24(box, "lists.element.get", {"IBLOCK_TYPE_ID": "lists", "IBLOCK_ID": 18})
        assert reply.status_code == 200, reply.text
        names = [e["NAME"] for e in reply.json()["result"]]
        assert names == [e["NAME"] for e in next(l for l in REAL_PORTAL["lists"] if l["IBLOCK_ID"] == 18)["elements"]]
        assert _b24(box, "lists.element.get", {"IBLOCK_TYPE_ID": "lists", "IBLOCK_ID": 17}).status_code == 200
        assert [e["NAME"] for e in box.bitrix.admin.list_elements(18)] == names


def test_real_samples_are_served_through_the_survey_api(real_box):
    answers = _all_answers(real_box)
    assert sorted(answers) == SAMPLE_ANSWER_IDS
    first = answers[814573981]
    assert first["answer_id"] == 814573981
    assert first["poll_id"] == 430131691
    assert first["created_at"] == "2025-10-22T11:35:47.921Z"
    assert first["updated_at"] == "2025-10-22T11:35:47.921Z"
    assert first["answers"] == [
        {"code": "lastname", "value": "Иванова"}, {"code": "firstname", "value": "Мария"},
        {"code": "middlename", "value": "Сергеевна"}, {"code": "email", "value": "maria.ivanova@example.ru"},
        {"code": "telephone", "value": "+7 910 406-16-52"},
        {"code": "educational_program_1", "value": ["Цифровой юрист", "Античность"]},
        {"code": "additionalfield1", "value": "Учащийся 9-10 классов"},
        {"code": "additionalfield3", "value": "Москва"}, {"code": "hse_school", "value": "52"}]
    assert first["utm"] == {"utm_source": "yandex", "utm_medium": "cpc", "utm_campaign": "bachelor-2025",
                            "utm_term": "", "utm_content": ""}
    assert first["cookies"] == {"tracking": "ZEsUBF/Yq9OBi6j1G3IiAg", "_ga": "GA1.2.564819297.1608023318",
                                "_ym_uid": "1607603521955414288", "roistat_visit": "8467460"}
    assert first["meta"] == {"url": "https://ba.hse.ru/polls/430131691.html", "ip": "185.117.121.169",
                             "date": "2025-10-22 14:35", "timeZone": "Europe/Moscow",
                             "mailingListSubscription": True, "form_kind": 2, "gid": None}
    # Other codes travel under their own names; empty analytics stay empty, not absent.
    smith = answers[814573988]
    assert {"code": "country", "value": "826"} in smith["answers"]
    assert smith["utm"] == {} and smith["cookies"] == {}
    assert smith["meta"]["mailingListSubscription"] is False


def test_real_sample_polls_take_old_key_names_and_an_unregistered_poll_is_listed_empty(real_box):
    polls = {p["poll_id"]: p for p in _survey_get(real_box, "polls", limit=100)["items"]}
    assert sorted(polls) == [430131691, 512004417, 607711203, 999000111]
    assert polls[430131691]["poll_name"] == "Опрос абитуриентов 2025"
    assert polls[430131691]["employee_email"] == "m.ivanova@hse.ru"
    assert "user_id" not in polls[512004417]
    assert polls[607711203]["poll_name"] == "Open Day registration"
    # Registered before its first answer (the push carries no time).
    assert polls[430131691]["created_at"] < "2025-10-22T11:35:47.921Z"
    # The pull API lists answers per poll: a poll the portal never registered is listed with
    # nothing the job could know about it, so its answer (814573991) is still reachable.
    assert (polls[999000111]["poll_name"], polls[999000111]["employee_email"]) == ("", "")


# --- the smart-process portal -----------------------------------------------------------------

def test_smart_portal_serves_todays_portal_and_data():
    with Sandbox(portal="smart", answers=30, seed=4, rate_limit=None) as box:
        box.survey.admin.set_clock(LATER)
        assert box.bitrix.webhook_url.split("/rest/")[1].startswith("1/")
        assert set(box.bitrix.crm.smart_processes) == {1036, 1040}
        assert box.bitrix.crm.lists.lists == {}
        # No lists scope on the smart portal's webhook.
        assert _b24(box, "lists.element.get", {"IBLOCK_TYPE_ID": "lists", "IBLOCK_ID": 18}).status_code == 403
        expected = build_dataset(answers=30, seed=4)
        served = _all_answers(box)
        assert served == {a["answer_id"]: a for a in expected.answers()}
        assert sorted(p["poll_id"] for p in _survey_get(box, "polls", limit=100)["items"]) == \
            sorted(p["poll_id"] for p in expected.polls)
        assert any(item["code"] == "programs" for a in served.values() for item in a["answers"])


def test_unknown_portal_is_refused_with_the_choices():
    with pytest.raises(ValueError, match="unknown portal 'box'.*real.*smart"):
        Sandbox(portal="box")


# --- plan profiles ----------------------------------------------------------------------------

@pytest.mark.parametrize("portal", ["real", "smart"])
def test_enterprise_profile_really_sets_the_limits(portal):
    box = Sandbox(portal=portal, bitrix_profile="enterprise")
    limits = box.bitrix.admin.limits()
    assert (limits["profile"], limits["rate"], limits["burst"]) == ("enterprise", 5.0, 250)
    assert limits["operating"]["limit_s"] == 480.0


def test_standard_profile_is_the_default_and_explicit_limits_win():
    assert (Sandbox().bitrix.admin.limits()["rate"], Sandbox().bitrix.admin.limits()["burst"]) == (2.0, 50)
    off = Sandbox(bitrix_profile="enterprise", rate_limit=None).bitrix.admin.limits()
    assert (off["rate"], off["burst"]) == (None, 250)
    own = Sandbox(bitrix_profile="enterprise", burst=10).bitrix.admin.limits()
    assert (own["rate"], own["burst"]) == (5.0, 10)


# --- generated answers in the real vocabulary -------------------------------------------------

def _bodies(dataset: Dataset) -> list[bytes]:
    return [p.body for p in dataset.packed]


def test_generated_real_answers_are_the_same_bytes_for_the_same_seed():
    one, again, other = (build_real_dataset(answers=400, seed=s, include_samples=False) for s in (7, 7, 8))
    assert _bodies(one) == _bodies(again) and one.polls == again.polls
    assert _bodies(one) != _bodies(other)
    assert len(one) == 400


def test_generated_real_answers_use_real_codes_list_18_names_and_the_usual_hazards():
    dataset = build_real_dataset(answers=3000, seed=11, include_samples=False)
    answers = list(dataset.answers())
    codes = {item["code"] for a in answers for item in a["answers"]}
    assert {"firstname", "lastname", "middlename", "email", "telephone", "educational_program_1",
            "additionalfield1", "hse_school"} <= codes
    assert not codes & {"first_name", "programs", "phone", "level"}  # no smart-process codes
    known = {name.casefold() for name in real_programme_names()}
    unknown = set(UNKNOWN_PROGRAMMES)
    chosen = [name for a in answers for item in a["answers"] if item["code"] == "educational_program_1"
              for name in item["value"]]
    normalised = {re.sub(r"\s+", " ", name).strip().casefold() for name in chosen}
    assert normalised <= known | {u.casefold() for u in unknown}
    assert normalised & known and set(chosen) & unknown
    assert any("  " in name for name in chosen)  # doubled spaces
    assert any(name != name.strip() for name in chosen)
    emails = [next((i["value"] for i in a["answers"] if i["code"] == "email"), None) for a in answers]
    assert None in emails                                                   # no e-mail at all
    assert any(e and "@" not in e.strip()[1:-1] for e in emails)            # invalid
    assert any(e and e == e.upper() and "@" in e for e in emails)           # repeated, other case
    assert any(a["updated_at"] > a["created_at"] for a in answers)          # edited
    stamps = [a["updated_at"] for a in answers]
    assert len(set(stamps)) < len(stamps)                                   # ties
    assert {a["meta"]["form_kind"] for a in answers} == {None, 1, 2}
    assert any("roistat_visit" in a["cookies"] for a in answers)
    assert all(a["meta"]["url"] == f"https://ba.hse.ru/polls/{a['poll_id']}.html" for a in answers)


def test_sandbox_serves_real_samples_then_generated_real_answers():
    with Sandbox(portal="real", answers=40, seed=3, rate_limit=None) as box:
        box.survey.admin.set_clock(LATER)
        served = _all_answers(box)
    assert len(served) == len(SAMPLE_ANSWER_IDS) + 40
    generated = {i: a for i, a in served.items() if i not in SAMPLE_ANSWER_IDS}
    expected = build_real_dataset(answers=40, seed=3, include_samples=False)
    assert generated == {a["answer_id"]: a for a in expected.answers()}


# --- the emulator's admin handle and command line ---------------------------------------------

def test_admin_handle_lists_elements_and_timeline_comments():
    with BitrixEmulator(portal="real", user_id=169, scopes=("crm", "user", "lists"), rate_limit=None) as emulator:
        assert [e["NAME"] for e in emulator.admin.list_elements(18)][:2] == ["Цифровой юрист", "Античность"]
        assert emulator.admin.timeline_comments() == []
        reply = requests.post(emulator.webhook_url + "crm.timeline.comment.add", timeout=10, json={
            "fields": {"ENTITY_TYPE": "deal", "ENTITY_ID": 9001, "COMMENT": "Ответ 814573982"}})
        assert reply.status_code == 200, reply.text
        [comment] = emulator.admin.timeline_comments("deal", 9001)
        assert comment["COMMENT"] == "Ответ 814573982"
        assert emulator.admin.timeline_comments("deal", 9002) == []


def test_enforce_required_kwarg_switches_the_crm():
    assert BitrixEmulator(portal="real").crm.enforce_required is False
    assert BitrixEmulator(portal="real", enforce_required=True).crm.enforce_required is True
    box = Sandbox(bitrix_kwargs={"enforce_required": True})
    assert box.bitrix.crm.enforce_required is True


def test_command_line_real_portal_gets_its_webhook_user_and_lists_scope():
    real = build_from_command_line(["--port", "0", "--portal", "real", "--enforce-required"])
    assert (real.user_id, "lists" in real.scopes, real.crm.enforce_required) == (169, True, True)
    assert sorted(real.crm.lists.lists) == [17, 18]
    smart = build_from_command_line(["--port", "0"])
    assert (smart.user_id, smart.scopes, smart.crm.lists.lists) == (1, ("crm", "user"), {})


def test_cli_sandbox_command_passes_portal_and_profile(monkeypatch):
    import sandbox as sandbox_package
    import sandbox.httpbase
    from cli import cli

    started: list[Sandbox] = []

    class Recording(Sandbox):
        def start(self):
            started.append(self)
            return super().start()

    monkeypatch.setattr(sandbox_package, "Sandbox", Recording)
    monkeypatch.setattr(sandbox.httpbase, "serve_until_stopped", lambda stop: stop())
    result = CliRunner().invoke(cli, ["sandbox", "--survey-port", "0", "--bitrix-port", "0", "--answers", "0",
                                      "--portal", "smart", "--profile", "enterprise", "--burst", "99"])
    assert result.exit_code == 0, result.output
    [box] = started
    limits = box.bitrix.admin.limits()
    assert (box.portal, limits["rate"], limits["burst"]) == ("smart", 5.0, 99)
    assert "export BITRIX24_WEBHOOK_URL=" in result.output
