"""``run_checks``: every check in order, each failure or skip a ``Check`` rather than an exception."""
from __future__ import annotations

from typing import Any

from sync.doctor.checklist import Check, Checklist
from sync.doctor.checks_bitrix import bitrix_checks
from sync.doctor.checks_lists import list_checks
from sync.doctor.checks_mapping import portal_checks
from sync.doctor.checks_settings import mapping_check, settings_check
from sync.doctor.checks_store import store_check
from sync.doctor.checks_survey import survey_check
from sync.doctor.texts import language_from_env


def run_checks(settings: Any = None, *, language: str | None = None) -> list[Check]:
    """Every check, in order (see the module docstring). ``settings=None`` loads them (a failure is a check).

    The texts are in ``language``, else the settings' ``REPORT_LANGUAGE`` — read from the
    environment and ``.env`` directly when the settings are not given, since they may not load.
    Never raises for what it checks: every error becomes a failing or skipped ``Check``.
    """
    ck = Checklist(language or (settings.report_language if settings is not None else language_from_env()))
    settings = settings_check(ck, settings)
    if settings is None:
        for name in ("mapping file", "survey API", "Bitrix24 webhook", "Bitrix24 scopes", "deal fields",
                     "deal pipeline", "deal stage", "deal source", "contact fields", "poll forms", "programmes",
                     "default responsible user", "store"):
            ck.skip(name, ck.t("config_incomplete"))
        return ck.checks
    mapping = mapping_check(ck, settings)
    survey_check(ck, settings)
    client, missing = bitrix_checks(ck, settings)
    try:
        portal_checks(ck, client, mapping, missing, str(settings.field_mapping))
        list_checks(ck, client, mapping, str(settings.field_mapping))
    finally:
        if client is not None:
            client.close()
    store_check(ck, settings)
    return ck.checks
