"""The one place that hides secrets from logs, reports, errors and the store.

Two things are hidden, everywhere ``redact()`` is applied:

* every value passed to ``register_secret()`` (the survey API token, the Bitrix24
  webhook secret, a database password ...), as written and URL-encoded;
* any Bitrix24 webhook secret path segment, ``/rest/<user_id>/<secret>/`` →
  ``/rest/<user_id>/***/``, even for a URL whose secret was never registered
  (a webhook pasted into a mapping file, a ``Location`` header of a moved portal).

The registry is process-wide and thread-safe: a client registers its secret when
it is built, and from then on any module's ``redact()`` hides it. Values shorter
than ``MIN_SECRET_LENGTH`` are not registered: no real credential is that short,
and hiding ``"abc"`` everywhere would garble every message (tests use such tokens).
"""
from __future__ import annotations

import logging
import re
import threading
from typing import Any
from urllib.parse import parse_qsl, quote, quote_plus, urlencode, urlsplit, urlunsplit

MASK = "***"
MIN_SECRET_LENGTH = 8

# /rest/<numeric user id>/<secret> — the secret runs to the next separator.
_WEBHOOK_PATH = re.compile(r"(/rest/\d+/)([^/\s?#&\"'<>\\]+)")
# Query parameters that carry credentials in the URLs we might log.
_SECRET_QUERY_KEYS = frozenset({"auth", "access_token", "refresh_token", "token", "password", "secret",
                                "api_key", "apikey", "client_secret"})

_lock = threading.Lock()
_secrets: set[str] = set()
_pattern: re.Pattern[str] | None = None


def _plain(value: Any) -> str:
    """The text of a str or a pydantic ``SecretStr`` (anything with ``get_secret_value``)."""
    getter = getattr(value, "get_secret_value", None)
    return str(getter() if callable(getter) else value)


def register_secret(value: Any) -> None:
    """Hide ``value`` (a str or ``SecretStr``) in everything ``redact()`` sees from now on.

    Idempotent and thread-safe. Blank values and values shorter than
    ``MIN_SECRET_LENGTH`` are ignored (see the module docstring).
    """
    global _pattern
    if value is None:
        return
    text = _plain(value).strip()
    if len(text) < MIN_SECRET_LENGTH:
        return
    forms = {text, quote(text, safe=""), quote_plus(text, safe="")}
    with _lock:
        if forms <= _secrets:
            return
        _secrets.update(forms)
        # Longest first, so a secret that contains another is hidden whole.
        ordered = sorted(_secrets, key=len, reverse=True)
        _pattern = re.compile("|".join(re.escape(s) for s in ordered))


def forget_secret(value: Any) -> None:
    """Stop hiding ``value`` (for tests that must leave the registry as they found it)."""
    global _pattern
    text = _plain(value).strip()
    forms = {text, quote(text, safe=""), quote_plus(text, safe="")}
    with _lock:
        _secrets.difference_update(forms)
        ordered = sorted(_secrets, key=len, reverse=True)
        _pattern = re.compile("|".join(re.escape(s) for s in ordered)) if ordered else None


def redact(text: Any) -> str:
    """``text`` with every registered secret and every webhook secret path segment as ``***``."""
    if text is None:
        return ""
    if not isinstance(text, str):
        text = str(text)
    if not text:
        return text
    text = _WEBHOOK_PATH.sub(lambda m: m.group(1) + MASK, text)
    pattern = _pattern  # read once: another thread may swap it
    if pattern is not None:
        text = pattern.sub(MASK, text)
    return text


# ``scheme://user:password@`` in a string that is not a valid URL.
_USERINFO_PASSWORD = re.compile(r"(://[^/:@]*:)[^@/]*@")


def redact_url(url: Any) -> str:
    """A URL safe to show: webhook secret, password and credential query values as ``***``.

    Works on anything ``str()``-able, including a ``SecretStr`` holding a URL, database
    URLs (``sqlite:///path`` keeps its three slashes; a user without a password stays
    readable) and strings that are not valid URLs (then what sits between ``user:`` and
    ``@`` is masked too, before plain ``redact()``).
    """
    text = _plain(url)
    try:
        parts = urlsplit(text)
    except ValueError:
        return redact(_USERINFO_PASSWORD.sub(r"\1" + MASK + "@", text))
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        if ":" in userinfo:
            netloc = f"{userinfo.split(':', 1)[0]}:{MASK}@{hostport}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(k.lower() in _SECRET_QUERY_KEYS for k, _ in pairs):
            query = urlencode([(k, MASK if k.lower() in _SECRET_QUERY_KEYS else v) for k, v in pairs], safe="*")
    if netloc == parts.netloc and query == parts.query:
        return redact(text)  # nothing to mask here: keep the URL exactly as written
    rebuilt = urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    return redact(rebuilt)


class RedactingFilter(logging.Filter):
    """A ``logging`` filter that redacts a record's message (for third-party loggers).

    urllib3 logs ``"POST /rest/1/<secret>/crm.deal.add.json"`` at DEBUG level; with this
    filter on its logger, turning on DEBUG logging does not print the webhook secret.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record is logging's problem, not ours
            return True
        record.msg = redact(message)
        record.args = None
        return True


_FILTERED_LOGGERS = ("urllib3.connectionpool", "urllib3.connection", "urllib3.util.retry", "requests")
_filter_installed = False


def install_logging_filter() -> None:
    """Attach ``RedactingFilter`` to the HTTP libraries' loggers (once per process)."""
    global _filter_installed
    with _lock:
        if _filter_installed:
            return
        flt = RedactingFilter()
        for name in _FILTERED_LOGGERS:
            logging.getLogger(name).addFilter(flt)
        _filter_installed = True
