"""The survey API check: one GET /polls?limit=1 proves the URL and the token."""
from __future__ import annotations

from typing import Any

from core.errors import ConfigError, FatalError, UpstreamError
from core.redact import redact
from sync.doctor.checklist import (CONFIG, DOCTOR_MAX_ATTEMPTS, DOCTOR_MAX_WAIT_S, DOCTOR_TIMEOUT_S, SYSTEM,
                                   Checklist, one_line)


def survey_check(ck: Checklist, settings: Any) -> None:
    """One GET /polls?limit=1 with the doctor's short timeout."""
    from sync.app import Context
    name, t = "survey API", ck.t
    if getattr(settings, "survey_source", "api") == "intake":
        ck.skip(name, t("survey.intake"))
        return
    try:
        client = Context(settings).survey_client(
            timeout=min(settings.http_timeout_s, DOCTOR_TIMEOUT_S), polls_page_size=1,
            max_attempts=DOCTOR_MAX_ATTEMPTS, max_wait_s=DOCTOR_MAX_WAIT_S, backoff_base_s=0.5)
    except ConfigError as exc:
        ck.fail(name, one_line(exc), t("survey.fix_config"), CONFIG)
        return
    where = client.base_url
    try:
        with client:
            page = next(iter(client.iter_polls()), None)
    except FatalError as exc:
        fix = t("survey.fix_token") if exc.status in (401, 403) else t("survey.fix_url")
        ck.fail(name, t("survey.at", where=where, error=one_line(exc)), fix, SYSTEM)
        return
    except UpstreamError as exc:
        ck.fail(name, t("survey.at", where=where, error=one_line(exc)), t("survey.fix_reach"), SYSTEM)
        return
    visible = page is not None and page.items
    ck.ok(name, t("survey.ok_polls" if visible else "survey.ok_empty", where=redact(where)))
