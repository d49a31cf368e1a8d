"""`doctor` against the sandbox emulators: a correct setup passes every check, and every broken
mapping entry, refused credential and missing scope is named in the failing check with its fix."""
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
    assert "as user 1 Анна Администратор" in details["Bitrix24 webhook"].detail
    assert details["default responsible user"].detail == "default_responsible_user_id 17 is Ольга Приёмная, active"


def _rename(section: dict, old: str, new: str) -> None:
    section[new] = section.pop(old)


BROKEN = {
    "misspelt deal UF field": (
        lambda m: _rename(m["deal"]["fields"], "UF_CRM_REFERER", "UF_CRM_REFERRER"),
        {"deal fields"}, ["deal.fields.UF_CRM_REFERRER: UF_CRM_REFERRER is not a field of deals",
                          "did you mean UF_CRM_REFERER?"]),
    "wrong enumeration item id": (
        lambda m: m["deal"]["enumerations"]["UF_CRM_LEVEL"]["values"].update({"Аспирантура": "49"}),
        {"deal fields"}, ["deal.enumerations.UF_CRM_LEVEL.values['Аспирантура']: item ID 49 is not an item of "
                          "UF_CRM_LEVEL", "47 «Аспирантура»"]),
    "enumeration mapped to a non-list field": (
        lambda m: _rename(m["deal"]["enumerations"], "UF_CRM_LEVEL", "UF_CRM_REFERER"),
        {"deal fields"}, ["deal.enumerations.UF_CRM_REFERER: UF_CRM_REFERER is of type string, not enumeration"]),
    "consent written to a string field": (
        lambda m: m["deal"]["fields"].update({"UF_CRM_REFERER": "question:consent"}),
        {"deal fields"}, ["deal.fields.UF_CRM_REFERER: UF_CRM_REFERER is of type string, but question:consent "
                          "needs boolean"]),
    "non-existing stage": (
        lambda m: m["deal"].update(stage_id="C4:NOPE"),
        {"deal stage"}, ["deal.stage_id 'C4:NOPE' is not a stage of pipeline 4", "C4:NEW, C4:PREPARATION"]),
    "non-existing category": (
        lambda m: m["deal"].update(category_id=9),
        {"deal pipeline"}, ["deal.category_id 9 is not a deal pipeline", "4 «Приёмная кампания»"]),
    "non-existing source": (
        lambda m: m["deal"].update(source_id="WEBFROM"),
        {"deal source"}, ["deal.source_id 'WEBFROM' is not a source", "did you mean WEBFORM?"]),
    "contact source constant not in SOURCE": (
        lambda m: m["contact"]["on_create"].update(SOURCE_ID="const:WEBFROM"),
        {"contact fields"}, ["contact.on_create.SOURCE_ID: 'WEBFROM' is not in SOURCE"]),
    "misspelt contact field": (
        lambda m: m["contact"].update(middle_name_field="MIDDLE_NAME"),
        {"contact fields"}, ["contact.middle_name_field: MIDDLE_NAME is not a field of contacts"]),
    "wrong poll-form field": (
        lambda m: m["poll_form"].update(poll_id_field="ufCrm6PollID"),
        {"poll forms"}, ["poll_form.poll_id_field: ufCrm6PollID is not a field of smart process 1036",
                         "did you mean ufCrm6PollId?"]),
    "poll-form field by its original name": (
        lambda m: _rename(m["poll_form"]["fields"], "ufCrm6Language", "UF_CRM_6_LANGUAGE"),
        {"poll forms"}, ["poll_form.fields.UF_CRM_6_LANGUAGE", "crm.item methods call it ufCrm6Language"]),
    "wrong programme entity type id": (
        lambda m: m["programmes"].update(entity_type_id=1041),
        {"programmes", "deal fields"},
        ["programmes.entity_type_id 1041: there is no smart process with this entityTypeId (crm.item.fields: "
         "NOT_FOUND)", "1040 «Образовательные программы»"]),
    "inactive default user": (
        lambda m: m.update(default_responsible_user_id=31),
        {"default responsible user"}, ["default_responsible_user_id 31 (Павел Уволенный) is inactive"]),
    "unknown default user": (
        lambda m: m.update(default_responsible_user_id=999),
        {"default responsible user"}, ["default_responsible_user_id 999: there is no such user"]),
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
    assert by_name(checks)["deal stage"].detail == "skipped: deal pipeline failed"


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
    assert by_name(checks)["deal fields"].detail == "skipped: mapping file failed"
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
    assert by_name(checks)["deal fields"].detail == "skipped: Bitrix24 webhook failed"
    output = as_json(checks)
    assert "wrong-secret-value" not in output and portal.secret not in output
    assert exit_code_for(checks) == exit_codes.ABORTED


def test_a_missing_user_scope_is_reported_with_where_to_tick_it(settings_for):
    from sandbox.bitrix import BitrixEmulator
    with BitrixEmulator(rate_limit=None, scopes=("crm",)) as crm_only:
        checks = run_checks(settings_for(bitrix24_webhook_url=crm_only.webhook_url))
    assert failed(checks) == {"Bitrix24 scopes"}
    scopes = by_name(checks)["Bitrix24 scopes"]
    assert "lacks the 'user' scope (it has: crm)" in scopes.detail
    assert "tick 'user' on the inbound webhook" in scopes.fix
    assert by_name(checks)["default responsible user"].detail == "skipped: the webhook lacks the 'user' scope"
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
    for name in ("SURVEY_API_URL", "SURVEY_API_TOKEN", "BITRIX24_WEBHOOK_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no .env here
    checks = run_checks(None)
    config = by_name(checks)["configuration"]
    assert not config.ok
    for name in ("SURVEY_API_URL", "SURVEY_API_TOKEN", "BITRIX24_WEBHOOK_URL"):
        assert f"{name} is not set" in config.detail and name in config.fix
    assert skipped(checks) == set(ALL_CHECKS) - {"configuration"}
    assert exit_code_for(checks) == exit_codes.USAGE_ERROR


def test_a_store_that_does_not_exist_yet_passes_as_will_be_created_and_is_not_created(settings_for, tmp_path):
    path = tmp_path / "data" / "sync.sqlite3"
    checks = run_checks(settings_for(database_url=f"sqlite:///{path}"))
    store = by_name(checks)["store"]
    assert store.ok and f"no store yet at {path}: the first run" in store.detail
    assert not path.exists()
    assert exit_code_for(checks) == exit_codes.OK  # a fresh install is not a failure (it was exit 3)


def test_a_store_that_cannot_be_created_fails(settings_for, tmp_path):
    (tmp_path / "data").write_text("a file where the directory should be")
    path = tmp_path / "data" / "sync.sqlite3"
    store = by_name(run_checks(settings_for(database_url=f"sqlite:///{path}")))["store"]
    assert not store.ok and "cannot be created" in store.detail and "DATABASE_URL" in store.fix


def test_an_empty_database_passes_as_will_be_migrated(settings_for, tmp_path):
    from storage.db import make_engine
    url = f"sqlite:///{tmp_path}/empty.sqlite3"
    make_engine(url).dispose()  # exists, no tables
    store = by_name(run_checks(settings_for(database_url=url)))["store"]
    assert store.ok and "has no schema yet: the first run" in store.detail


def test_the_checklist_prints_one_line_per_check_with_the_fix():
    ok = Check("deal source", True, "deal.source_id WEBFORM is «CRM-форма»")
    bad = Check("deal stage", False, "deal.stage_id 'C4:NOPE' is not a stage", "set deal.stage_id")
    skip = Check("deal stage", False, "skipped: deal pipeline failed", skipped=True)
    assert format_check(ok) == "✔ deal source — deal.source_id WEBFORM is «CRM-форма»"
    assert format_check(bad) == "✘ deal stage — deal.stage_id 'C4:NOPE' is not a stage → set deal.stage_id"
    assert format_check(skip) == "○ deal stage — skipped: deal pipeline failed"
    assert format_check(bad, unicode=False) == "FAIL deal stage - deal.stage_id 'C4:NOPE' is not a stage -> " \
                                               "set deal.stage_id"
    assert format_check(ok, unicode=False).startswith("OK   deal source - ")
    data = json.loads(as_json([ok, bad]))
    assert data["ok"] is False and data["exit_code"] == exit_codes.USAGE_ERROR
    assert data["checks"][1] == {"name": "deal stage", "ok": False, "detail": "deal.stage_id 'C4:NOPE' is not a stage",
                                 "fix": "set deal.stage_id", "kind": "config", "skipped": False}


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
        assert not store.ok and "is not migrated" in store.detail
        engine = make_engine(url)
        migrate(engine)
        engine.dispose()
        store = by_name(run_checks(settings_for(database_url=url)))["store"]
        assert store.ok and "schema at revision" in store.detail
