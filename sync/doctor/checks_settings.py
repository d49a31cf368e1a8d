"""The configuration and mapping-file checks: the first two lines, which every other check needs."""
from __future__ import annotations

import re
from typing import Any

from core.errors import ConfigError
from sync.doctor.checklist import CONFIG, Checklist
from sync.mapping import FieldMapping


def settings_check(ck: Checklist, settings: Any) -> Any:
    """The settings as given, or loaded (None when they are incomplete: the failure is a check)."""
    name, t = "configuration", ck.t
    if settings is None:
        from sync.settings import load_settings
        try:
            settings = load_settings()
        except ConfigError as exc:
            text = str(exc)
            raw = [ln.strip() for ln in text.splitlines() if ln.startswith("  ")]
            names = [m.group(0) for ln in raw if (m := re.match(r"[A-Z][A-Z0-9_]*", ln))]
            lines = [_setting_line(t, ln) for ln in raw]
            if "BITRIX24_WEBHOOK_URL" not in text and _webhook_unset():
                names.append("BITRIX24_WEBHOOK_URL")
                lines.append(t("settings.webhook_unset"))
            fix = t("settings.fix_set", names=", ".join(names)) if names else t("settings.fix_any")
            ck.fail(name, "; ".join(lines) or text, fix, CONFIG)
            return None
    if settings.bitrix24_webhook_url is None:
        # Optional for the settings (``status`` needs no webhook), required for everything the doctor checks.
        ck.fail(name, t("settings.webhook_unset"), t("settings.fix_set", names="BITRIX24_WEBHOOK_URL"), CONFIG)
        return settings
    ck.ok(name, t("settings.ok", store=store_display(settings.database_url)))
    return settings


_MISSING = re.compile(r"(?P<name>[A-Z][A-Z0-9_]*) is not set(?P<hint> \(.*\))?$")


def _setting_line(t: Any, line: str) -> str:
    """One line of the settings' error: a missing setting in the doctor's language, any other as it came.

    ``load_settings`` writes "NAME is not set (description)" in English; the frame is ours to
    translate, the description (the setting's own doc) is kept as written.
    """
    match = _MISSING.match(line)
    return t("settings.missing", name=match["name"], hint=match["hint"] or "") if match else line


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
                ck.t("mapping.fix", file=settings.field_mapping), CONFIG)
        return None
    ck.ok(name, ck.t("mapping.ok", file=settings.field_mapping, source=repr(mapping.source_name)))
    return mapping
