"""The configuration and mapping-file checks: the first two lines, which every other check needs."""
from __future__ import annotations

import re
from typing import Any

from core.errors import ConfigError
from sync.doctor.checklist import CONFIG, Checklist
from sync.mapping import FieldMapping


def settings_check(ck: Checklist, settings: Any) -> Any:
    """The settings as given, or loaded (None when they are incomplete: the failure is a check)."""
    name = "configuration"
    if settings is None:
        from sync.settings import load_settings
        try:
            settings = load_settings()
        except ConfigError as exc:
            text = str(exc)
            lines = [ln.strip() for ln in text.splitlines() if ln.startswith("  ")]
            if "BITRIX24_WEBHOOK_URL" not in text and _webhook_unset():
                lines.append(WEBHOOK_UNSET)
            names = [m.group(0) for ln in lines if (m := re.match(r"[A-Z][A-Z0-9_]*", ln))]
            fix = ("set " + ", ".join(names) if names else "fix the settings") + \
                " in the environment or in .env in the working directory (see README, 'Configuration')"
            ck.fail(name, "; ".join(lines) or text, fix, CONFIG)
            return None
    if settings.bitrix24_webhook_url is None:
        # Optional for the settings (``status`` needs no webhook), required for everything the doctor checks.
        ck.fail(name, WEBHOOK_UNSET, "set BITRIX24_WEBHOOK_URL in the environment or in .env in the working "
                                     "directory (see README, 'Configuration')", CONFIG)
        return settings
    ck.ok(name, f"every setting is present; store {store_display(settings.database_url)}")
    return settings


WEBHOOK_UNSET = ("BITRIX24_WEBHOOK_URL is not set (the inbound webhook URL, "
                 "https://<portal>.bitrix24.ru/rest/<user_id>/<secret>/)")


def _webhook_unset() -> bool:
    """Whether the webhook is missing too, when the settings failed for another reason (so one line names all)."""
    from sync.settings import load_settings
    try:
        return load_settings(survey_source="intake").bitrix24_webhook_url is None
    except ConfigError:
        return False


def store_display(url: str) -> str:
    """DATABASE_URL with its password hidden, for the configuration line."""
    try:
        from storage.db import redact_url
        return redact_url(url)
    except Exception:  # the store module failing to import is the store check's business
        return "?"


def mapping_check(ck: Checklist, settings: Any) -> FieldMapping | None:
    """The mapping file, or None when it is missing or invalid."""
    from sync.mapping import load_mapping
    name = "mapping file"
    try:
        mapping = load_mapping(settings.field_mapping)
    except ConfigError as exc:
        head, *rest = str(exc).splitlines() or [""]
        ck.fail(name, " ".join([head, "; ".join(line.strip() for line in rest)]).strip(),
                f"correct {settings.field_mapping} (FIELD_MAPPING); the repository's field_mapping.json is a "
                f"working example", CONFIG)
        return None
    ck.ok(name, f"{settings.field_mapping} is valid (source {mapping.source_name!r})")
    return mapping
