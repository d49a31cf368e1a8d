"""The survey API check: one GET /polls?limit=1 proves the URL and the token."""
from __future__ import annotations

from typing import Any

from core.errors import ConfigError, FatalError, UpstreamError
from core.redact import redact
from sync.doctor.checklist import (CONFIG, DOCTOR_MAX_ATTEMPTS, DOCTOR_MAX_WAIT_S, DOCTOR_TIMEOUT_S, SYSTEM,
                                   Checklist, one_line)


def survey_check(ck: Checklist, settings: Any) -> None:
    """One GET /polls?limit=1 with the doctor's short timeout."""
    from sync.clients.survey import SurveyClient
    name = "survey API"
    if getattr(settings, "survey_source", "api") == "intake":
        ck.skip(name, "SURVEY_SOURCE is intake: answers come from the intake's inbox, not the survey API")
        return
    try:
        client = SurveyClient(settings.survey_api_url, settings.survey_api_token,
                              timeout=min(settings.http_timeout_s, DOCTOR_TIMEOUT_S), polls_page_size=1,
                              max_attempts=DOCTOR_MAX_ATTEMPTS, max_wait_s=DOCTOR_MAX_WAIT_S, backoff_base_s=0.5)
    except ConfigError as exc:
        ck.fail(name, one_line(exc), "correct SURVEY_API_URL / SURVEY_API_TOKEN", CONFIG)
        return
    where = client.base_url
    try:
        with client:
            page = next(iter(client.iter_polls()), None)
    except FatalError as exc:
        fix = ("check SURVEY_API_TOKEN (the platform's API token, without 'Bearer')" if exc.status in (401, 403)
               else "check SURVEY_API_URL: it should be the API's base URL, e.g. https://surveys.example.edu/api/v1")
        ck.fail(name, f"at {where}: {one_line(exc)}", fix, SYSTEM)
        return
    except UpstreamError as exc:
        ck.fail(name, f"at {where}: {one_line(exc)}",
                "check SURVEY_API_URL and that this machine reaches it (proxy, firewall, DNS); run doctor again",
                SYSTEM)
        return
    polls = "polls are visible" if page is not None and page.items else "the token works, no polls yet"
    ck.ok(name, f"GET /polls?limit=1 answered at {redact(where)}: {polls}")
