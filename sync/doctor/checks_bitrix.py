"""The Bitrix24 webhook and scope checks: the portal answers, accepts the webhook, and it has the scopes."""
from __future__ import annotations

from typing import Any

from core.errors import ConfigError, FatalError, UpstreamError
from sync.doctor.checklist import (CONFIG, DOCTOR_MAX_ATTEMPTS, DOCTOR_MAX_WAIT_S, DOCTOR_TIMEOUT_S, SYSTEM,
                                   Checklist, one_line)

REQUIRED_SCOPES = ("crm", "user")


def bitrix_checks(ck: Checklist, settings: Any) -> tuple[Any, set[str]]:
    """The webhook and scope checks: ``(client or None when the portal is not usable, scopes missing)``."""
    from sync.app import Context
    name, t = "Bitrix24 webhook", ck.t
    if settings.bitrix24_webhook_url is None:  # the configuration line already says so
        ck.skip(name, t("webhook.unset"), CONFIG)
        ck.skip("Bitrix24 scopes", t("webhook.unset"), SYSTEM)
        return None, set()
    try:
        # Built as every command builds it, with the doctor's short timeout and retry budget;
        # no operating-time pacing: the doctor makes a handful of reads.
        client = Context(settings).bitrix_client(
            timeout=min(settings.bitrix24_timeout_s, DOCTOR_TIMEOUT_S), operating_limit_s=None,
            max_attempts=DOCTOR_MAX_ATTEMPTS, max_wait_s=DOCTOR_MAX_WAIT_S, backoff_base_s=0.5)
    except ConfigError as exc:
        ck.fail(name, one_line(exc), t("webhook.fix_url"), CONFIG)
        ck.skip("Bitrix24 scopes", t("needs.failed", title=t.title(name)), SYSTEM)
        return None, set()
    try:
        portal_time = client.call("server.time").result
    except FatalError as exc:
        ck.fail(name, one_line(exc), t("webhook.fix"), SYSTEM)
    except UpstreamError as exc:
        ck.fail(name, one_line(exc), t("webhook.fix_reach"), SYSTEM)
    else:
        owner = ""
        try:
            profile = client.call("profile").result
        except UpstreamError:
            profile = None  # profile is a nicety; server.time already proved the webhook
        if profile is not None and not profile:
            ck.fail(name, t("webhook.inactive", url=client.url), t("webhook.fix_inactive"), SYSTEM)
        else:
            if isinstance(profile, dict):
                owner = " ".join(str(profile.get(k) or "") for k in ("NAME", "LAST_NAME")).strip()
                owner = t("webhook.owner", id=profile.get("ID"), name=owner).rstrip()
            ck.ok(name, t("webhook.ok", url=client.url, time=portal_time, owner=owner))
    if "Bitrix24 webhook" in ck.failed:
        ck.skip("Bitrix24 scopes", t("needs.failed", title=t.title(name)), SYSTEM)
        client.close()
        return None, set()
    try:
        scopes = client.call("scope").result
    except UpstreamError as exc:
        ck.fail("Bitrix24 scopes", t("scopes.failed", error=one_line(exc)), t("again"), SYSTEM)
        return client, set()
    have = {str(s) for s in scopes} if isinstance(scopes, list) else set()
    missing = [s for s in REQUIRED_SCOPES if s not in have]
    if missing:
        names = ", ".join(f"'{s}'" for s in missing)
        ck.fail("Bitrix24 scopes", t("scopes.lacks_many" if len(missing) > 1 else "scopes.lacks_one", names=names,
                                     have=", ".join(sorted(have)) or t("none")),
                t("scopes.fix", names=names), SYSTEM)
    else:
        ck.ok("Bitrix24 scopes", t("scopes.ok", required=", ".join(REQUIRED_SCOPES), have=", ".join(sorted(have))))
    return client, set(missing)
