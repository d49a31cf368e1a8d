"""`cli.py explain --answer ID` on the real portal's emulator: the sample deliveries go through the
intake, one sync runs, one answer is edited and synced again; then staff ask why a deal says what it
says — in Russian, in English and as JSON, with the CRM or offline; an unknown answer exits 2."""
from __future__ import annotations

import copy
import json

import pytest
from click.testing import CliRunner

from core import exit_codes
from sandbox.bitrix.server import BitrixEmulator
from tests.e2e.test_real_portal import PROGRAMME_LINK, ROISTAT, RealJob, _samples

EDITED = 814573981      # Мария: two programmes, UTM yandex, Roistat 8467460; edited below (new phone)
REUSED = 814573982      # Иван: his open deal 9001 (UTM source "vk") is reused
UNKNOWN_PROGRAMME = 814573984


@pytest.fixture(scope="module")
def synced(module_store_url):
    with BitrixEmulator(portal="real", user_id=169, scopes=("crm", "user", "lists"), rate_limit=None) as portal:
        job = RealJob(portal, module_store_url)
        job.deliver("postPoll", _samples("polls.json", "postPoll"))
        answers = _samples("answers.json", "postAnswer")
        job.deliver("postAnswer", answers)
        job.sync()
        edit = copy.deepcopy(next(a for a in answers if a["header_data"]["answer_id"] == EDITED))
        edit["data"]["telephone"] = "+7 916 000-11-22"
        job.deliver("postAnswer", [edit])
        job.sync()
        yield portal, job


def explain(synced, *args: str, language: str = "ru"):
    portal, job = synced
    env = {"SURVEY_SOURCE": "intake", "DATABASE_URL": job.store_url, "BITRIX24_WEBHOOK_URL": portal.webhook_url,
           "FIELD_MAPPING": str(job.settings().field_mapping), "REPORT_LANGUAGE": language, "LOG_LEVEL": "WARNING"}
    import cli
    return CliRunner().invoke(cli.cli, ["explain", *args], env=env)


def ledger_row(synced, answer_id: int):
    from storage.db import make_engine
    from storage.ledger import Ledger
    _, job = synced
    engine = make_engine(job.store_url)
    try:
        return Ledger(engine).get_answer(answer_id)
    finally:
        engine.dispose()


def host(synced) -> str:
    portal, _ = synced
    return portal.webhook_url.split("/")[2]


def test_explains_fields_sources_values_and_links_in_russian(synced):
    result = explain(synced, "--answer", str(EDITED))
    assert result.exit_code == 0, result.output
    out = result.output
    row = ledger_row(synced, EDITED)
    assert row.status == "pushed" and set(row.deal_ids) == {"700", "701"}
    assert out.startswith(f"Ответ {EDITED} · опрос 430131691")
    assert "источник: приёмник (intake)" in out
    assert f"Контакт {row.contact_id} — https://{host(synced)}/crm/contact/details/{row.contact_id}/" in out
    for key, title in (("700", "Цифровой юрист"), ("701", "Античность")):
        deal_id = row.deal_ids[key]
        assert (f"Сделка {deal_id} «{title}» — https://{host(synced)}/crm/deal/details/{deal_id}/ "
                f"(сделка этого ответа)") in out
    assert 'UTM_SOURCE ← utm:utm_source = "yandex" — записывается' in out
    assert 'UTM_CAMPAIGN ← utm:utm_campaign = "bachelor-2025" — записывается' in out
    assert f'{ROISTAT} ← cookie:roistat_visit = "8467460" — записывается' in out
    assert f"{PROGRAMME_LINK} ← question:educational_program_1 → programmes = 700 — записывается" in out
    assert "UTM_TERM ← utm:utm_term = нет значения — очищается: в этой версии ответа значения нет" in out
    assert 'PHONE ← question:telephone = "+79160001122"' in out
    assert "только при создании сделки" in out
    # The secret of the webhook never reaches the output, only the portal's host.
    assert "sandbox-secret" not in out and "/rest/" not in out
    assert "Проблем нет." in out


def test_every_version_the_intake_stored_is_listed_with_what_changed(synced):
    out = explain(synced, "--answer", str(EDITED)).output
    versions = out.split("Версии\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert len(versions) == 2, versions
    assert versions[0].startswith("  1. ") and "текущая" not in versions[0]
    assert versions[1].startswith("  2. ") and "изменено: telephone" in versions[1]
    assert versions[1].endswith("текущая, записана в CRM · изменено: telephone")


def test_a_reused_deal_keeps_its_own_attribution_and_says_so(synced):
    out = explain(synced, "--answer", str(REUSED)).output
    assert "Сделка 9001 «Цифровой юрист»" in out
    assert "существующая сделка контакта: дополняются только пустые поля" in out
    assert 'UTM_SOURCE ← utm:utm_source = "yandex" — не меняется: в CRM уже "vk"' in out
    assert ('UTM_MEDIUM ← utm:utm_medium = "cpc" — не меняется: UTM-метки — одна атрибуция, а у сделки уже есть '
            'своя (UTM_SOURCE = "vk")') in out
    assert "Контакт 501" in out and "(найден по e-mail)" in out


def test_problems_are_named_with_what_to_do_in_english(synced):
    result = explain(synced, "--answer", str(UNKNOWN_PROGRAMME), language="en")
    assert result.exit_code == 0, result.output
    out = result.output
    assert out.startswith(f"Answer {UNKNOWN_PROGRAMME} · poll 430131691")
    assert "In the ledger: needs attention" in out
    assert "Deal " in out and "«Data Science»" in out
    assert "[needs attention] " in out and "Квантовая алхимия" in out
    assert "What to do: " in out and "cli.py retry" in out
    assert "[note] " in out and "502, 503" in out  # duplicate contacts, the lowest used
    assert "Контакт" not in out and "Проблемы" not in out


def test_json_carries_rules_values_outcomes_links_and_problem_texts(synced):
    result = explain(synced, "--answer", str(UNKNOWN_PROGRAMME), "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    row = ledger_row(synced, UNKNOWN_PROGRAMME)
    assert data["answer_id"] == UNKNOWN_PROGRAMME and data["language"] == "ru" and data["offline"] is False
    assert data["ledger"]["status"] == "needs_attention"
    (deal,) = data["deals"]
    assert deal["id"] == row.deal_ids["706"] and deal["programme"] == "Data Science"
    assert deal["url"] == f"https://{host(synced)}/crm/deal/details/{deal['id']}/"
    fields = {f["field"]: f for f in deal["fields"]}
    assert fields["UTM_SOURCE"] == {"field": "UTM_SOURCE", "rule": "utm:utm_source", "value": "yandex",
                                    "outcome": "sent", "sent": "yandex", "crm": None}
    assert fields[PROGRAMME_LINK]["value"] == 706
    assert data["contact"]["id"] == 502
    codes = {p["code"]: p for p in data["problems"]}
    assert codes["unknown_programme"]["severity"] == "attention"
    assert "Квантовая алхимия" in codes["unknown_programme"]["text"]
    assert codes["unknown_programme"]["advice"].endswith("затем запустите `cli.py retry`.")


def test_offline_shows_rules_and_the_ledgers_records_with_a_note(synced):
    result = explain(synced, "--answer", str(UNKNOWN_PROGRAMME), "--offline")
    assert result.exit_code == 0, result.output
    out = result.output
    row = ledger_row(synced, UNKNOWN_PROGRAMME)
    assert "Без обращения к CRM (--offline" in out
    assert f"Сделка {row.deal_ids['706']} (элемент программы 706)" in out
    assert 'UTM_SOURCE ← utm:utm_source = "yandex"\n' in out  # no outcome: nothing was asked of the CRM
    assert "Проблемы (записанные при последней синхронизации)" in out
    assert "Квантовая алхимия" in out


def test_without_a_webhook_it_explains_offline_and_without_links(synced, monkeypatch):
    portal, job = synced
    env = {"SURVEY_SOURCE": "intake", "DATABASE_URL": job.store_url, "FIELD_MAPPING": str(job.settings().field_mapping),
           "REPORT_LANGUAGE": "en", "LOG_LEVEL": "WARNING"}
    monkeypatch.delenv("BITRIX24_WEBHOOK_URL", raising=False)
    import cli
    result = CliRunner().invoke(cli.cli, ["explain", "--answer", str(EDITED)], env=env)
    assert result.exit_code == 0, result.output
    assert "Without the CRM (--offline, or BITRIX24_WEBHOOK_URL not set)" in result.output
    assert "https://" not in result.output
    assert f"Deal {ledger_row(synced, EDITED).deal_ids['700']} (programme element 700) (from the ledger)" in result.output


def test_an_answer_not_in_the_store_exits_2_with_a_clear_line(synced):
    result = explain(synced, "--answer", "999999999")
    assert result.exit_code == exit_codes.USAGE_ERROR
    stderr = getattr(result, "stderr", result.output)
    assert "error: answer 999999999 is not in the store" in stderr
    assert "run `cli.py sync`" in stderr
    assert result.stdout == ""
