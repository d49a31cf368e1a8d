"""`doctor` against the sandbox emulators: a correct setup passes every check, and every broken
mapping entry, refused credential and missing scope is named in the failing check with its fix.

The texts asserted are Russian, REPORT_LANGUAGE's default; English is in
tests/operators/test_doctor_language.py."""
from __future__ import annotations

import json

import pytest

from core import exit_codes
from sync.doctor import Check, as_json, exit_code_for, format_check, run_checks
from sync.settings import load_settings
from tests.ops.conftest import FIELD_MAPPING

ALL_CHECKS = ["configuration", "mapping file", "survey API", "Bitrix24 webhook", "Bitrix24 scopes", "deal fields",
              "deal pipeline", "deal stage", "deal source", "contact fields", "poll forms", "programmes",
              "default responsible user", "store"]


@pytest.fixture
def settings_for(survey_api, portal, migrated_store):
    def make(**overrides):
        values = {"survey_api_url": survey_api.base_url, "survey_api_token": survey_api.token,
                  "bitrix24_webhook_url": portal.webhook_url, "database_url": migrated_store,
                  "field_mapping": str(FIELD_MAPPING)}
        values.update(overrides)
        return load_settings(**values)
    return make


def by_name(checks: list[Check]) -> dict[str, Check]:
    return {c.name: c for c in checks}


def failed(checks: list[Check]) -> set[str]:
    return {c.name for c in checks if not c.ok and not c.skipped}


def skipped(checks: list[Check]) -> set[str]:
    return {c.name for c in checks if c.skipped}


def test_a_correct_setup_passes_every_check(settings_for):
    checks = run_checks(settings_for())
    assert [c.name for c in checks] == ALL_CHECKS
    assert all(c.ok for c in checks), "\n".join(format_check(c) for c in checks if not c.ok)
    assert exit_code_for(checks) == exit_codes.OK
    details = by_name(checks)
    assert "от имени пользователя 1 Анна Администратор" in details["Bitrix24 webhook"].detail
    assert details["default responsible user"].detail == "default_responsible_user_id 17 — Ольга Приёмная, активен"


def _rename(section: dict, old: str, new: str) -> None:
    section[new] = section.pop(old)


BROKEN = {
    "misspelt deal UF field": (
        lambda m: _rename(m["deal"]["fields"], "UF_CRM_REFERER", "UF_CRM_REFERRER"),
        {"deal fields"}, ["deal.fields.UF_CRM_REFERRER: у сделок нет поля UF_CRM_REFERRER",
                          "возможно, имелось в виду UF_CRM_REFERER?"]),
    "wrong enumeration item id": (
        lambda m: m["deal"]["enumerations"]["UF_CRM_LEVEL"]["values"].update({"Аспирантура": "49"}),
        {"deal fields"}, ["deal.enumerations.UF_CRM_LEVEL.values['Аспирантура']: у UF_CRM_LEVEL нет элемента "
                          "с ID 49", "47 «Аспирантура»"]),
    "enumeration mapped to a non-list field": (
        lambda m: _rename(m["deal"]["enumerations"], "UF_CRM_LEVEL", "UF_CRM_REFERER"),
        {"deal fields"}, ["deal.enumerations.UF_CRM_REFERER: поле UF_CRM_REFERER имеет тип string, а не enumeration"]),
    "consent written to a string field": (
        lambda m: m["deal"]["fields"].update({"UF_CRM_REFERER": "question:consent"}),
        {"deal fields"}, ["deal.fields.UF_CRM_REFERER: поле UF_CRM_REFERER имеет тип string, а для "
                          "question:consent нужен boolean"]),
    "non-existing stage": (
        lambda m: m["deal"].update(stage_id="C4:NOPE"),
        {"deal stage"}, ["deal.stage_id 'C4:NOPE': в воронке 4 нет такой стадии", "C4:NEW, C4:PREPARATION"]),
    "non-existing category": (
        lambda m: m["deal"].update(category_id=9),
        {"deal pipeline"}, ["deal.category_id 9: на портале нет такой воронки сделок", "4 «Приёмная кампания»"]),
    "non-existing source": (
        lambda m: m["deal"].update(source_id="WEBFROM"),
        {"deal source"}, ["deal.source_id 'WEBFROM': на портале нет такого источника", "возможно, имелось в виду WEBFORM?"]),
    "contact source constant not in SOURCE": (
        lambda m: m["contact"]["on_create"].update(SOURCE_ID="const:WEBFROM"),
        {"contact fields"}, ["contact.on_create.SOURCE_ID: 'WEBFROM' нет в SOURCE"]),
    "misspelt contact field": (
        lambda m: m["contact"].update(middle_name_field="MIDDLE_NAME"),
        {"contact fields"}, ["contact.middle_name_field: у контактов нет поля MIDDLE_NAME"]),
    "wrong poll-form field": (
        lambda m: m["poll_form"].update(poll_id_field="ufCrm6PollID"),
        {"poll forms"}, ["poll_form.poll_id_field: у смарт-процесса 1036 нет поля ufCrm6PollID",
                         "возможно, имелось в виду ufCrm6PollId?"]),
    "poll-form field by its original name": (
        lambda m: _rename(m["poll_form"]["fields"], "ufCrm6Language", "UF_CRM_6_LANGUAGE"),
        {"poll forms"}, ["poll_form.fields.UF_CRM_6_LANGUAGE", "методы crm.item называют его ufCrm6Language"]),
    "wrong programme entity type id": (
        lambda m: m["programmes"].update(entity_type_id=1041),
        {"programmes", "deal fields"},
        ["programmes.entity_type_id 1041: на портале нет смарт-процесса с таким entityTypeId (crm.item.fields: "
         "NOT_FOUND)", "1040 «Образовательные программы»"]),
    "inactive default user": (
        lambda m: m.update(default_responsible_user_id=31),
        {"default responsible user"}, ["default_responsible_user_id 31 (Павел Уволенный) неактивен"]),
    "unknown default user": (
        lambda m: m.update(default_responsible_user_id=999),
        {"default responsible user"}, ["default_responsible_user_id 999: на портале нет такого пользователя"]),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_each_broken_mapping_entry_is_named_in_the_failing_check(case, settings_for, write_mapping):
    edit, expected_failures, phrases = BROKEN[case]
    checks = run_checks(settings_for(field_mapping=str(write_mapping(edit))))
    assert failed(checks) == expected_failures, "\n".join(format_check(c) for c in checks if not c.ok)
    text = " ".join(c.detail for c in checks if c.name in expected_failures)
    for phrase in phrases:
        assert phrase in text
    for name in expected_failures:
        assert "field_mapping.json" in by_name(checks)[name].fix
    assert exit_code_for(checks) == exit_codes.USAGE_ERROR


def test_a_missing_category_skips_the_stage_check(settings_for, write_mapping):
    checks = run_checks(settings_for(field_mapping=str(write_mapping(lambda m: m["deal"].update(category_id=9)))))
    assert by_name(checks)["deal stage"].detail == "пропущено: проверка «воронка сделок» не прошла"


def test_every_problem_in_one_check_is_listed(settings_for, write_mapping):
    def edit(m):
        _rename(m["deal"]["fields"], "UF_CRM_REFERER", "UF_CRM_REFERRER")
        _rename(m["deal"]["fields"], "UF_CRM_COOKIES", "UF_CRM_COOKIE")
    deal = by_name(run_checks(settings_for(field_mapping=str(write_mapping(edit)))))["deal fields"]
    assert "UF_CRM_REFERRER" in deal.detail and "UF_CRM_COOKIE" in deal.detail


def test_an_invalid_mapping_file_skips_the_portal_checks(settings_for, write_mapping):
    checks = run_checks(settings_for(field_mapping=str(write_mapping(lambda m: m["deal"].update(stge_id="x")))))
    assert failed(checks) == {"mapping file"}
    assert "deal.stge_id: unknown key (typo?)" in by_name(checks)["mapping file"].detail
    assert by_name(checks)["deal fields"].detail == "пропущено: проверка «файл сопоставления» не прошла"
    assert exit_code_for(checks) == exit_codes.USAGE_ERROR


def test_a_refused_survey_token_is_reported_with_the_fix(settings_for):
    checks = run_checks(settings_for(survey_api_token="not-the-right-token"))
    assert failed(checks) == {"survey API"}
    survey = by_name(checks)["survey API"]
    assert "HTTP 401" in survey.detail and "SURVEY_API_TOKEN" in survey.fix
    assert "not-the-right-token" not in as_json(checks)
    assert exit_code_for(checks) == exit_codes.ABORTED


def test_a_wrong_webhook_secret_is_reported_and_the_portal_checks_skipped(settings_for, portal):
    wrong = portal.webhook_url.replace(portal.secret, "wrong-secret-value")
    checks = run_checks(settings_for(bitrix24_webhook_url=wrong))
    assert failed(checks) == {"Bitrix24 webhook"}
    webhook = by_name(checks)["Bitrix24 webhook"]
    assert "INVALID_CREDENTIALS" in webhook.detail and "BITRIX24_WEBHOOK_URL" in webhook.fix
    assert skipped(checks) == {"Bitrix24 scopes", "deal fields", "deal pipeline", "deal stage", "deal source",
                               "contact fields", "poll forms", "programmes", "default responsible user"}
    assert by_name(checks)["deal fields"].detail == "пропущено: проверка «вебхук Битрикс24» не прошла"
    output = as_json(checks)
    assert "wrong-secret-value" not in output and portal.secret not in output
    assert exit_code_for(checks) == exit_codes.ABORTED


def test_a_missing_user_scope_is_reported_with_where_to_tick_it(settings_for):
    from sandbox.bitrix import BitrixEmulator
    with BitrixEmulator(rate_limit=None, scopes=("crm",)) as crm_only:
        checks = run_checks(settings_for(bitrix24_webhook_url=crm_only.webhook_url))
    assert failed(checks) == {"Bitrix24 scopes"}
    scopes = by_name(checks)["Bitrix24 scopes"]
    assert "у вебхука нет права 'user' (есть: crm)" in scopes.detail
    assert "отметьте 'user' во входящем вебхуке" in scopes.fix
    assert by_name(checks)["default responsible user"].detail == "пропущено: у вебхука нет права 'user'"
    assert by_name(checks)["deal fields"].ok
    assert exit_code_for(checks) == exit_codes.ABORTED


def test_an_unreachable_portal_is_one_failure_not_a_crash(settings_for):
    import socket
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    checks = run_checks(settings_for(bitrix24_webhook_url=f"http://127.0.0.1:{port}/rest/1/abcdefgh12345/"))
    assert failed(checks) == {"Bitrix24 webhook"}
    assert "Bitrix24 server.time at http://127.0.0.1:" in by_name(checks)["Bitrix24 webhook"].detail
    assert "could not connect" in by_name(checks)["Bitrix24 webhook"].detail
    assert "abcdefgh12345" not in as_json(checks)
    assert exit_code_for(checks) == exit_codes.ABORTED


def test_plain_http_to_a_remote_portal_is_a_configuration_failure(settings_for):
    checks = run_checks(settings_for(bitrix24_webhook_url="http://portal.example.com/rest/1/abcdefgh12345/"))
    webhook = by_name(checks)["Bitrix24 webhook"]
    assert not webhook.ok and webhook.kind == "config" and "https://" in webhook.detail
    assert exit_code_for(checks) == exit_codes.USAGE_ERROR


def test_incomplete_configuration_names_each_missing_setting(monkeypatch, tmp_path):
    for name in ("SURVEY_API_URL", "SURVEY_API_TOKEN", "BITRIX24_WEBHOOK_URL", "REPORT_LANGUAGE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no .env here
    checks = run_checks(None)
    config = by_name(checks)["configuration"]
    assert not config.ok
    for name in ("SURVEY_API_URL", "SURVEY_API_TOKEN", "BITRIX24_WEBHOOK_URL"):
        assert f"не задана настройка {name}" in config.detail and name in config.fix
    assert skipped(checks) == set(ALL_CHECKS) - {"configuration"}
    assert exit_code_for(checks) == exit_codes.USAGE_ERROR


def test_a_store_that_does_not_exist_yet_passes_as_will_be_created_and_is_not_created(settings_for, tmp_path):
    path = tmp_path / "data" / "sync.sqlite3"
    checks = run_checks(settings_for(database_url=f"sqlite:///{path}"))
    store = by_name(checks)["store"]
    assert store.ok and f"хранилища {path} ещё нет: его создаст первый запуск" in store.detail
    assert not path.exists()
    assert exit_code_for(checks) == exit_codes.OK  # a fresh install is not a failure (it was exit 3)


def test_a_store_that_cannot_be_created_fails(settings_for, tmp_path):
    (tmp_path / "data").write_text("a file where the directory should be")
    path = tmp_path / "data" / "sync.sqlite3"
    store = by_name(run_checks(settings_for(database_url=f"sqlite:///{path}")))["store"]
    assert not store.ok and "создать его нельзя" in store.detail and "DATABASE_URL" in store.fix


def test_an_empty_database_passes_as_will_be_migrated(settings_for, tmp_path):
    from storage.db import make_engine
    url = f"sqlite:///{tmp_path}/empty.sqlite3"
    make_engine(url).dispose()  # exists, no tables
    store = by_name(run_checks(settings_for(database_url=url)))["store"]
    assert store.ok and "схемы ещё нет: первый запуск" in store.detail


def test_the_checklist_prints_one_line_per_check_with_the_fix():
    ok = Check("deal source", True, "deal.source_id WEBFORM — «CRM-форма»")
    bad = Check("deal stage", False, "deal.stage_id 'C4:NOPE': нет такой стадии", "укажите deal.stage_id")
    skip = Check("deal stage", False, "пропущено: проверка «воронка сделок» не прошла", skipped=True)
    assert format_check(ok) == "✔ источник сделки — deal.source_id WEBFORM — «CRM-форма»"
    assert format_check(bad) == "✘ стадия сделки — deal.stage_id 'C4:NOPE': нет такой стадии → укажите deal.stage_id"
    assert format_check(skip) == "○ стадия сделки — пропущено: проверка «воронка сделок» не прошла"
    assert format_check(bad, unicode=False) == "ОШИБКА  стадия сделки - deal.stage_id 'C4:NOPE': нет такой " \
                                               "стадии -> укажите deal.stage_id"
    # The words are padded alike, so the titles line up in a column.
    assert format_check(ok, unicode=False).startswith("ОК      источник сделки - ")
    assert format_check(skip, unicode=False).startswith("ПРОПУСК стадия сделки - ")
    data = json.loads(as_json([ok, bad]))
    assert data["ok"] is False and data["exit_code"] == exit_codes.USAGE_ERROR
    # --json keeps the check's id, not its title: scripts match on it in either language.
    assert data["checks"][1] == {"name": "deal stage", "ok": False, "detail": "deal.stage_id 'C4:NOPE': нет такой стадии",
                                 "fix": "укажите deal.stage_id", "kind": "config", "skipped": False}


def test_the_store_check_on_postgres(settings_for):
    """Run with TEST_DATABASE_URL (CI sets it): unmigrated, then migrated, on a private schema."""
    import os

    from storage.db import make_engine, migrate
    from storage.testing import fresh_database_url
    base = os.environ.get("TEST_DATABASE_URL")
    if not base:
        pytest.skip("TEST_DATABASE_URL is not set")
    with fresh_database_url(base) as url:
        store = by_name(run_checks(settings_for(database_url=url)))["store"]
        # An empty schema is a fresh install, as on SQLite (test_an_empty_database_passes_as_will_be_migrated).
        assert store.ok and "схемы ещё нет" in store.detail
        engine = make_engine(url)
        migrate(engine)
        engine.dispose()
        store = by_name(run_checks(settings_for(database_url=url)))["store"]
        assert store.ok and "схема в ревизии" in store.detail
