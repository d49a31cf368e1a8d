"""Bitrix24 failures, classified once: every HTTP outcome and every batch command's error.

Everything that can go wrong on the wire is decided in ONE place, ``classify()``
(bitrix24-rest.md §2, §3, §9):

    what came back                                  action     then
    ----------------------------------------------  ---------  ----------------------------------------
    503 QUERY_LIMIT_EXCEEDED                        RETRY      retried for reads and writes (the limiter
    429 OPERATION_TIME_LIMIT                        RETRY        refused before the method ran);
    408, or 429 with any other body                 RETRY        QUERY_LIMIT_EXCEEDED also fills the bucket
    connection refused, DNS failure, connect        RETRY
      timeout (nothing was sent)
    503 OVERLOAD_LIMIT                              RETRY      retried; FatalError once retries run out
    read timeout, connection reset/dropped after    AMBIGUOUS  reads (idempotent=True) retried; writes
      sending, 5xx JSON or not, INTERNAL_SERVER_              raise AmbiguousWriteError at once, so the
      ERROR, 2xx that is not JSON or no envelope              caller reconciles by external keys (§9)
    INVALID_CREDENTIALS, NO_AUTH_FOUND,             FATAL      FatalError at once: what happened, what
      insufficient_scope, expired_token,                        to do, ``.code``
      ERROR_METHOD_NOT_FOUND, INVALID_REQUEST,
      ACCESS_DENIED, PORTAL_DELETED, any 401
    3xx (portal moved; Location shown redacted)     FATAL
    TLS certificate refused                         FATAL      (other TLS errors: AMBIGUOUS)
    4xx that is not JSON (not a Bitrix24 reply)     FATAL
    any other error envelope ("" "Not found", ...)  COMMAND    CommandError(code, description)

The wait before a RETRY is the retry policy's (``sync.clients.retry``): ``Retry-After``
if sent, else for OPERATION_TIME_LIMIT the method's last reported ``operating_reset_at``
(``bitrix24_pacing``), else jittered backoff.

Inside a ``batch`` each failing command gets a disposition from the same code sets
(``command_disposition``). Messages never hold the webhook secret.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Literal

import requests

from sync.clients.common import NOT_JSON, describe_exception, header, parse_retry_after, walk_causes
from core.redact import redact, redact_url

SYSTEM = "bitrix24"
ENV_NAME = "BITRIX24_WEBHOOK_URL"

Disposition = Literal["ok", "retry", "ambiguous", "fatal", "invalid", "not_executed"]


class Action(str, Enum):
    RETRY = "retry"            # refused before the method ran: safe to send again, reads and writes
    AMBIGUOUS = "ambiguous"    # may have run: send again only if idempotent
    FATAL = "fatal"            # no retry will help: tell the operator what to do
    COMMAND = "command"        # this call's input was refused: CommandError


@dataclass(frozen=True)
class Reply:
    """An HTTP reply reduced to what ``classify`` needs (``payload`` is decoded JSON or NOT_JSON)."""

    status: int
    payload: Any
    headers: Mapping[str, str] = field(default_factory=dict)
    snippet: str = ""


@dataclass(frozen=True)
class Failure:
    """A classified failure of one HTTP attempt."""

    action: Action
    code: str
    reason: str
    status: int | None = None
    description: str = ""
    retry_after: float | None = None
    penalize: bool = False
    fatal_when_exhausted: bool = False
    location: str | None = None


# Error codes by what they mean for the caller (upper-cased; the server mixes cases).
_RETRY_CODES = {"QUERY_LIMIT_EXCEEDED", "OPERATION_TIME_LIMIT", "OVERLOAD_LIMIT"}
_FATAL_CODES = {"INVALID_CREDENTIALS", "NO_AUTH_FOUND", "INSUFFICIENT_SCOPE", "ERROR_METHOD_NOT_FOUND",
                "EXPIRED_TOKEN", "INVALID_TOKEN", "INVALID_REQUEST", "ACCESS_DENIED", "PORTAL_DELETED",
                "USER_ACCESS_ERROR", "WRONG_AUTH_TYPE"}
_AMBIGUOUS_CODES = {"INTERNAL_SERVER_ERROR", "ERROR_UNEXPECTED_ANSWER"}
# Inside a batch these mean "this command did not run": safe to send again.
_NOT_RUN_CODES = {"ERROR_BATCH_LENGTH_EXCEEDED"}


def _failure_from_exception(exc: BaseException) -> Failure:
    detail = describe_exception(exc)
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return Failure(Action.RETRY, "CONNECT_TIMEOUT", f"connect timeout, nothing was sent ({detail})")
    if isinstance(exc, requests.exceptions.SSLError):
        if "CERTIFICATE" in str(exc).upper():
            return Failure(Action.FATAL, "TLS_CERTIFICATE", f"the portal's TLS certificate was refused ({detail})")
        return Failure(Action.AMBIGUOUS, "TLS_ERROR", f"TLS error ({detail})")
    if isinstance(exc, (requests.exceptions.InvalidURL, requests.exceptions.InvalidSchema,
                        requests.exceptions.MissingSchema, requests.exceptions.InvalidHeader)):
        return Failure(Action.FATAL, "INVALID_URL", f"the request could not be built ({detail})")
    if isinstance(exc, requests.exceptions.Timeout):
        return Failure(Action.AMBIGUOUS, "READ_TIMEOUT", f"no reply in time after sending ({detail})")
    if isinstance(exc, requests.exceptions.ConnectionError):
        from urllib3.exceptions import ConnectTimeoutError, NewConnectionError
        if any(isinstance(c, (NewConnectionError, ConnectTimeoutError)) for c in walk_causes(exc)):
            return Failure(Action.RETRY, "CONNECTION_REFUSED",
                           f"could not connect, nothing was sent ({detail})")
        return Failure(Action.AMBIGUOUS, "CONNECTION_RESET", f"connection dropped after sending ({detail})")
    return Failure(Action.AMBIGUOUS, "TRANSPORT_ERROR", f"transport error ({detail})")


def classify(outcome: Reply | BaseException) -> Failure | None:
    """THE failure table of this client: None for a usable success envelope, else a ``Failure``."""
    if isinstance(outcome, BaseException):
        return _failure_from_exception(outcome)
    status, payload = outcome.status, outcome.payload
    retry_after = parse_retry_after(header(outcome.headers, "Retry-After"))

    if 300 <= status < 400:
        location = header(outcome.headers, "Location")
        shown = redact_url(location) if location else "(no Location header)"
        return Failure(Action.FATAL, "PORTAL_MOVED", f"HTTP {status} redirect to {shown}", status=status,
                       location=shown)

    if isinstance(payload, dict) and "error" in payload:
        code = "" if payload.get("error") is None else str(payload.get("error"))
        description = str(payload.get("error_description") or "")
        up = code.upper()
        reason = f"HTTP {status} {code or '(empty code)'}" + (f": {description}" if description else "")
        reason = redact(reason)
        if up == "QUERY_LIMIT_EXCEEDED":
            return Failure(Action.RETRY, code, reason, status, description, retry_after, penalize=True)
        if up == "OVERLOAD_LIMIT":
            return Failure(Action.RETRY, code, reason, status, description, retry_after, fatal_when_exhausted=True)
        if up in _RETRY_CODES:
            return Failure(Action.RETRY, code, reason, status, description, retry_after)
        if up in _FATAL_CODES:
            return Failure(Action.FATAL, code, reason, status, description, retry_after)
        if up in _AMBIGUOUS_CODES or status >= 500:
            return Failure(Action.AMBIGUOUS, code, reason, status, description, retry_after)
        if status == 401:
            return Failure(Action.FATAL, code, reason, status, description, retry_after)
        if status in (408, 429):
            return Failure(Action.RETRY, code, reason, status, description, retry_after)
        return Failure(Action.COMMAND, code, reason, status, description, retry_after)

    if payload is NOT_JSON or not isinstance(payload, dict):
        shape = "a non-JSON body" if payload is NOT_JSON else f"JSON {type(payload).__name__}"
        reason = redact(f"HTTP {status} with {shape}" + (f": {outcome.snippet}" if outcome.snippet else ""))
        if status in (408, 429):
            return Failure(Action.RETRY, f"HTTP_{status}", reason, status, retry_after=retry_after)
        if 400 <= status < 500:
            return Failure(Action.FATAL, f"HTTP_{status}", reason, status, retry_after=retry_after)
        return Failure(Action.AMBIGUOUS, "NON_JSON_REPLY" if status < 300 else f"HTTP_{status}", reason, status,
                       retry_after=retry_after)

    if 200 <= status < 300:
        if "result" in payload:
            return None
        return Failure(Action.AMBIGUOUS, "UNEXPECTED_REPLY", f"HTTP {status} JSON without 'result'", status)
    if status >= 500:
        return Failure(Action.AMBIGUOUS, f"HTTP_{status}", f"HTTP {status} without an error code", status,
                       retry_after=retry_after)
    if status in (408, 429):
        return Failure(Action.RETRY, f"HTTP_{status}", f"HTTP {status}", status, retry_after=retry_after)
    if status in (401, 403):
        return Failure(Action.FATAL, f"HTTP_{status}", f"HTTP {status} without an error code", status)
    return Failure(Action.COMMAND, f"HTTP_{status}", f"HTTP {status} without an error code", status)


def command_disposition(code: str | None) -> Disposition:
    """The ``CommandOutcome.disposition`` of a command that failed inside a batch with ``code``."""
    up = (code or "").upper()
    if up in _RETRY_CODES:
        return "retry"
    if up in _NOT_RUN_CODES or up == "NOT_EXECUTED":
        return "not_executed"
    if up in _FATAL_CODES:
        return "fatal"
    if up in _AMBIGUOUS_CODES:
        return "ambiguous"
    return "invalid"


# Which webhook permission (scope) a method family needs, to name it in messages.
_SCOPES = {"crm": "crm", "user": "user", "lists": "lists", "department": "department", "tasks": "task",
           "task": "task", "im": "im", "imbot": "imbot", "disk": "disk", "calendar": "calendar",
           "sonet_group": "sonet_group", "socialnetwork": "sonet_group", "entity": "entity",
           "telephony": "telephony", "bizproc": "bizproc", "catalog": "catalog", "sale": "sale",
           "log": "log", "landing": "landing", "documentgenerator": "documentgenerator", "timeman": "timeman"}


def scope_for_method(method: str) -> str:
    """The webhook scope that ``method`` needs (best effort from its family)."""
    family = method.split(".", 1)[0].lower()
    return _SCOPES.get(family, family)


def fatal_message(failure: Failure, method: str, url: str, scopes: list[str]) -> str:
    up = failure.code.upper()
    said = f" ({failure.code}: {failure.description})" if failure.description else f" ({failure.code})"
    where = f"calling {method} at {url}"
    if up == "INSUFFICIENT_SCOPE":
        names = ", ".join(f"'{s}'" for s in scopes) or "the needed"
        text = (f"Bitrix24 refused {method}: the inbound webhook lacks the {names} scope{said}, {where}. "
                f"Tick the {names} scope on the inbound webhook (Developer resources → Integrations → "
                f"your webhook → Permissions) and save; the URL stays the same.")
    elif up in ("INVALID_CREDENTIALS", "NO_AUTH_FOUND", "EXPIRED_TOKEN", "INVALID_TOKEN", "WRONG_AUTH_TYPE") \
            or failure.code in ("HTTP_401",):
        text = (f"Bitrix24 refused the webhook's credentials{said}, {where}. The webhook was deleted, "
                f"has expired or its user was deactivated, or the URL was mistyped. Create an inbound "
                f"webhook (or check the existing one) and put its URL in {ENV_NAME}.")
    elif up == "ERROR_METHOD_NOT_FOUND":
        text = (f"Bitrix24 does not know the method {method}{said}, at {url}. Check its spelling, that the "
                f"module providing it is installed on the portal, and the portal's plan.")
    elif up == "INVALID_REQUEST":
        text = (f"Bitrix24 rejected the request as invalid{said}, {where}. If it says 'Https required', "
                f"use an https:// address in {ENV_NAME}.")
    elif up in ("ACCESS_DENIED", "USER_ACCESS_ERROR", "HTTP_403"):
        text = (f"Bitrix24 denied access{said}, {where}. REST is available only on commercial plans, and a "
                f"webhook acts with its creator's rights: check the plan and that the webhook's user may "
                f"read and write the CRM.")
    elif up == "PORTAL_DELETED":
        text = f"The Bitrix24 portal was deleted{said}, {where}. Point {ENV_NAME} at the current portal."
    elif up == "OVERLOAD_LIMIT":
        text = (f"Bitrix24 has blocked REST calls for this portal because of overload{said}, {where}; it "
                f"stayed blocked through every retry. The block is lifted by Bitrix24 support: contact "
                f"them, then run again.")
    elif up == "PORTAL_MOVED":
        text = (f"Bitrix24 answered {method} with a redirect to {failure.location}: the portal has moved "
                f"(renamed address). Put the new address in {ENV_NAME} (same /rest/<user_id>/<secret>/ "
                f"path) and run again; requests are not followed to the new host automatically.")
    elif up == "TLS_CERTIFICATE":
        text = (f"The portal's TLS certificate was refused, {where}: {failure.reason}. Check the address in "
                f"{ENV_NAME} and the machine's CA certificates.")
    elif up.startswith("HTTP_4"):
        text = (f"The server at {url} answered {method} with {failure.reason}, which is not a Bitrix24 "
                f"reply. Check {ENV_NAME}: it should be the portal's inbound webhook URL.")
    else:
        text = f"Bitrix24 call failed and retrying will not help{said}, {where}: {failure.reason}."
    return redact(text)

