"""`doctor` against the real portal's emulator (poll forms and programmes in universal lists 17 and 18):
the repository's field_mapping.json passes, and each broken list mapping is named in its check with the fix.

The texts asserted are Russian, REPORT_LANGUAGE's default."""
from __future__ import annotations

import json

import pytest

from core import exit_codes
from sync.doctor import Check, exit_code_for, format_check, run_checks
from sync.settings import load_settings
from tests.ops.conftest import FIELD_MAPPING as SMART_MAPPING, ROOT

LIST_MAPPING = ROOT / "field_mapping.json"
LIST_CHECKS = ["lists scope", "poll form list", "programme list", "deal programme link"]


@pytest.fixture(scope="module")
def real_portal():
    from sandbox.bitrix.server import BitrixEmulator
    emulator = BitrixEmulator(portal="real", user_id=169, scopes=("crm", "user", "lists"), rate_limit=None).start()
    yield emulator
    emulator.stop()


@pytest.fixture
def settings_for(real_portal, migrated_store, tmp_path):
    """Settings of an intake deployment on the real portal, with the default mapping changed by ``edit``."""
    def make(edit=None, *, mapping=LIST_MAPPING, webhook=None):
        raw = json.loads(mapping.read_text(encoding="utf-8"))
        if edit is not None:
            edit(raw)
        path = tmp_path / "field_mapping.json"
        path.write_text(json.dumps(raw, ensure_ascii=False), encoding="utf-8")
        return load_settings(survey_source="intake", bitrix24_webhook_url=webhook or real_portal.webhook_url,
                             database_url=migrated_store, field_mapping=str(path))
    return make


def by_name(checks: list[Check]) -> dict[str, Check]:
    return {c.name: c for c in checks}


def failed(checks: list[Check]) -> set[str]:
    return {c.name for c in checks if not c.ok and not c.skipped}


def test_the_default_mapping_passes_on_the_real_portal(settings_for):
    checks = run_checks(settings_for())
    shown = "\n".join(format_check(c) for c in checks)
    assert failed(checks) == set(), shown
    assert exit_code_for(checks) == exit_codes.OK
    names = [c.name for c in checks]
    assert names[-5:] == LIST_CHECKS + ["store"]
    lines = by_name(checks)
    assert "универсальный список 17" in lines["poll form list"].detail
    assert "«Опросные формы»" in lines["poll form list"].detail
    assert "активные: 56 «Активная»" in lines["programme list"].detail
    assert "UF_CRM_1755626160 «Образовательная программа» привязывает сделки к списку 18" in \
        lines["deal programme link"].detail
    assert "в универсальных списках (lists.*)" in lines["lists scope"].detail
    # The smart-process lines say where the records live instead of failing on a missing entity type.
    assert lines["poll forms"].skipped and "универсальном списке 17" in lines["poll forms"].detail
    assert lines["programmes"].skipped and "универсальном списке 18" in lines["programmes"].detail


def test_the_survey_api_is_skipped_when_the_source_is_the_intake(settings_for):
    line = by_name(run_checks(settings_for()))["survey API"]
    assert line.skipped
    assert "SURVEY_SOURCE=intake" in line.detail and "входящий ящик приёмника" in line.detail


def _drop(section: dict, key: str) -> None:
    section[key] = None


BROKEN = {
    "poll form list that does not exist": (
        lambda m: m["poll_form"].update(iblock_id=99), "poll form list",
        ["poll_form.iblock_id 99: на портале нет универсального списка 99", "17 «Опросные формы»",
         "18 «Образовательные программы»"],
        "укажите в poll_form.iblock_id"),
    "owner in a plain string property": (
        lambda m: m["poll_form"].update(owner_field="PROPERTY_65"), "poll form list",
        ["poll_form.owner_field: поле PROPERTY_65 «URL Опросной формы»", "имеет тип S (строка)",
         "задание пишет туда S:employee (сотрудник (пользователь))",
         # PROPERTY_66 is required and no longer filled by anything
         "поле PROPERTY_66 «Ответственный за опросную форму» (код REPONSIBLE_EMPLOYEE_ID) обязательно в списке 17"],
        "укажите в poll_form.owner_field"),
    "poll id in the employee property": (
        lambda m: m["poll_form"].update(poll_id_field="PROPERTY_66", owner_field="PROPERTY_64"), "poll form list",
        ["poll_form.poll_id_field: поле PROPERTY_66", "имеет тип S:employee",
         "poll_form.owner_field: поле PROPERTY_64"],
        "поле типа"),
    "field named by its symbolic code": (
        lambda m: m["poll_form"].update(poll_id_field="PROPERTY_POLL_ID"), "poll form list",
        ["poll_form.poll_id_field: в списке 17 нет поля PROPERTY_POLL_ID",
         "в списке оно называется PROPERTY_64"],
        "укажите в poll_form.poll_id_field"),
    "required URL property left unfilled": (
        lambda m: _drop(m["poll_form"], "url_template"), "poll form list",
        ["поле PROPERTY_65 «URL Опросной формы» (код POLL_URL) обязательно в списке 17, но задание его не "
         "заполняет"],
        "задайте poll_form.url_template"),
    "active value that is not a status value": (
        lambda m: m["programmes"].update(active_values=["Активная"]), "programme list",
        ["programmes.active_values: 'Активная' — не значение поля PROPERTY_72 «Статус»",
         "56 «Активная», 57 «Неактивная»", "у значения «Активная» ID 56"],
        "перечислите в programmes.active_values"),
    "status in a string property": (
        lambda m: m["programmes"].update(status_field="PROPERTY_73"), "programme list",
        ["programmes.status_field: поле PROPERTY_73", "имеет тип S (строка)", "L (список)"],
        "укажите в programmes.status_field"),
    "status without active values": (
        lambda m: m["programmes"].update(active_values=[]), "programme list",
        ["programmes.active_values пуст: статус не учитывается, и все программы считаются активными"],
        "или уберите programmes.status_field"),
    "programme link to a string field": (
        lambda m: m["deal"].update(programme_link_field="UF_CRM_1755626174"), "deal programme link",
        ["поле UF_CRM_1755626174 «ID Roistat» имеет тип string, а не iblock_element"],
        "создайте поле сделки типа «Привязка к элементам информационных блоков» (iblock_element) со списком 18"),
    "programmes in the list the link does not point at": (
        lambda m: m["programmes"].update(iblock_id=17, status_field=None, active_values=[]), "deal programme link",
        ["поле UF_CRM_1755626160 «Образовательная программа» привязано к списку 18, а программы — в списке 17"],
        "выберите список 17 в настройках поля"),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_a_broken_list_mapping_is_named_with_its_fix(settings_for, case):
    edit, check_name, details, fix = BROKEN[case]
    checks = run_checks(settings_for(edit))
    line = by_name(checks)[check_name]
    assert not line.ok and not line.skipped, format_check(line)
    for text in details:
        assert text in line.detail, line.detail
    assert fix in line.fix, line.fix
    assert str(LIST_MAPPING.name) in line.fix  # the fix names the file to change
    assert exit_code_for(checks) == exit_codes.USAGE_ERROR
    # Only the broken list check fails: the others still pass.
    assert failed(checks) - {"store"} == {check_name}, "\n".join(format_check(c) for c in checks)


def test_a_webhook_without_the_lists_scope_fails_once_and_skips_the_list_checks(settings_for):
    from sandbox.bitrix.server import BitrixEmulator
    emulator = BitrixEmulator(portal="real", user_id=169, scopes=("crm", "user"), rate_limit=None).start()
    try:
        checks = run_checks(settings_for(webhook=emulator.webhook_url))
    finally:
        emulator.stop()
    lines = by_name(checks)
    assert not lines["lists scope"].ok and "у вебхука нет права 'lists'" in lines["lists scope"].detail
    assert "отметьте 'lists' во входящем вебхуке" in lines["lists scope"].fix
    assert lines["poll form list"].skipped and "проверка «право на списки» не прошла" in lines["poll form list"].detail
    assert lines["programme list"].skipped
    assert exit_code_for(checks) == exit_codes.ABORTED  # a system refusal, not a mapping error


def test_a_smart_process_mapping_gets_no_list_checks(settings_for):
    checks = run_checks(settings_for(mapping=SMART_MAPPING))
    names = {c.name for c in checks}
    assert names.isdisjoint(LIST_CHECKS)
    # The real portal has no smart processes: the smart-process lines run (and fail) instead.
    assert {"poll forms", "programmes"} <= failed(checks)
