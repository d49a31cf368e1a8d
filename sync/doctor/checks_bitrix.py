"""The Bitrix24 webhook and scope checks: the portal answers, accepts the webhook, and it has the scopes."""
from __future__ import annotations

from typing import Any

from core.errors import ConfigError, FatalError, UpstreamError
from sync.doctor.checklist import (CONFIG, DOCTOR_MAX_ATTEMPTS, DOCTOR_MAX_WAIT_S, DOCTOR_TIMEOUT_S, SYSTEM,
                                   Checklist, one_line)

REQUIRED_SCOPES = ("crm", "user")

WEBHOOK_FIX = ("create an inbound webhook (Developer resources → Other → Inbound webhook) with the crm and user "
               "scopes, or check the existing one, and put its URL in BITRIX24_WEBHOOK_URL")
_SCOPE_PLACE = "Developer resources → Integrations → your webhook → Permissions"


def bitrix_checks(ck: Checklist, settings: Any) -> tuple[Any, set[str]]:
    """The webhook and scope checks: ``(client or None when the portal is not usable, scopes missing)``."""
    from sync.clients.bitrix24 import Bitrix24Client
    name = "Bitrix24 webhook"
    if settings.bitrix24_webhook_url is None:  # the configuration line already says so
        ck.skip(name, "BITRIX24_WEBHOOK_URL is not set", CONFIG)
        ck.skip("Bitrix24 scopes", "BITRIX24_WEBHOOK_URL is not set", SYSTEM)
        return None, set()
    try:
        client = Bitrix24Client(settings.bitrix24_webhook_url, timeout=min(settings.http_timeout_s, DOCTOR_TIMEOUT_S),
                                rate_per_s=settings.rate_limit_per_s, burst=settings.rate_limit_burst,
                                max_attempts=DOCTOR_MAX_ATTEMPTS, max_wait_s=DOCTOR_MAX_WAIT_S, backoff_base_s=0.5)
    except ConfigError as exc:
        ck.fail(name, one_line(exc), "correct BITRIX24_WEBHOOK_URL", CONFIG)
        ck.skip("Bitrix24 scopes", "Bitrix24 webhook failed", SYSTEM)
        return None, set()
    try:
        portal_time = client.call("server.time").result
    except FatalError as exc:
        ck.fail(name, one_line(exc), WEBHOOK_FIX, SYSTEM)
    except UpstreamError as exc:
        ck.fail(name, one_line(exc),
                "check BITRIX24_WEBHOOK_URL's portal address and that this machine reaches it; run doctor again",
                SYSTEM)
    else:
        owner = ""
        try:
            profile = client.call("profile").result
        except UpstreamError:
            profile = None  # profile is a nicety; server.time already proved the webhook
        if profile is not None and not profile:
            ck.fail(name, f"the webhook at {client.url} works, but its user is inactive (profile is empty)",
                    "create the webhook as an active employee and put its URL in BITRIX24_WEBHOOK_URL", SYSTEM)
        else:
            if isinstance(profile, dict):
                owner = " ".join(str(profile.get(k) or "") for k in ("NAME", "LAST_NAME")).strip()
                owner = f", as user {profile.get('ID')} {owner}".rstrip()
            ck.ok(name, f"{client.url} answered server.time ({portal_time}){owner}")
    if "Bitrix24 webhook" in ck.failed:
        ck.skip("Bitrix24 scopes", "Bitrix24 webhook failed", SYSTEM)
        client.close()
        return None, set()
    try:
        scopes = client.call("scope").result
    except UpstreamError as exc:
        ck.fail("Bitrix24 scopes", f"the scope method failed: {one_line(exc)}", "run doctor again", SYSTEM)
        return client, set()
    have = {str(s) for s in scopes} if isinstance(scopes, list) else set()
    missing = [s for s in REQUIRED_SCOPES if s not in have]
    if missing:
        names = ", ".join(f"'{s}'" for s in missing)
        ck.fail("Bitrix24 scopes", f"the webhook lacks the {names} scope{'s' if len(missing) > 1 else ''} "
                f"(it has: {', '.join(sorted(have)) or 'none'})",
                f"tick {names} on the inbound webhook ({_SCOPE_PLACE}) and save; the URL stays the same", SYSTEM)
    else:
        ck.ok("Bitrix24 scopes", f"the webhook has {', '.join(REQUIRED_SCOPES)} (all: {', '.join(sorted(have))})")
    return client, set(missing)
