"""The survey platform's read API (survey-platform-api.md): polls and answers, cursor paging.

What a client must expect, and what this one does about it:

* **Ties and page boundaries** — only the cursor continues a listing; ``CursorPager``
  follows ``next_cursor`` to ``null``.
* **Expired cursors** (``400 cursor_expired``) — restart the listing with
  ``updated_since`` = the newest ``updated_at`` seen in it (inclusive: ties are read
  again, the caller dedupes), at most 5 times, then ``RetriableError``.
* **A cursor that repeats** — ``UpstreamError`` (the listing would never end).
* **Bad records** — an item that does not validate is kept in ``Page.invalid``
  (``InvalidRecord``), never dropped, never fatal to the listing.
* **429** — wait ``Retry-After``, then retry. **5xx, timeouts, resets** — retry with
  backoff (every request is a read). Exhausted → ``RetriableError`` naming the path.
* **401** → ``FatalError``; **404** → ``NotFoundError`` (a deleted poll or answer).

All waits go through the injected ``sleep``; the token never appears in a message.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any, Callable, Mapping
from urllib.parse import urlsplit

import requests
from loguru import logger
from pydantic import BaseModel, Field, SecretStr, ValidationError

from sync.clients.common import (
    ClientPlumbing,
    NOT_JSON,
    USER_AGENT,
    decode_json,
    describe_exception,
    header,
    is_loopback_host,
    parse_retry_after,
    walk_causes,
)
from sync.clients.retry import AttemptFailed, GiveUp, RetryPolicy
from core.errors import ConfigError, FatalError, NotFoundError, RetriableError, UpstreamError
from sync.source.models import CHECKED_TEXT, Answer, InvalidRecord, Page, Poll, body_may_hold_surrogates
from core.redact import install_logging_filter, redact, redact_url, register_secret

SYSTEM = "survey"
MAX_CURSOR_RESTARTS = 5


class SurveyStats(BaseModel):
    """Counters of one client (a snapshot)."""

    requests: int = 0
    retries: int = 0
    by_status: dict[str, int] = Field(default_factory=dict)
    cursor_restarts: int = 0
    waited_s: float = 0.0


def rfc3339(dt: datetime) -> str:
    """``dt`` as RFC 3339 in UTC with ``Z`` (aware datetimes only: a naive one is ambiguous)."""
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise ValueError(f"updated_since must be timezone-aware, got naive {dt.isoformat()}")
    text = dt.astimezone(timezone.utc).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


class _CursorExpired(Exception):
    """The server said ``cursor_expired`` (handled by the pager, never escapes)."""


class SurveyClient(ClientPlumbing):
    """Read-only client of the survey platform API. Returns ``Page``/``Answer`` models."""

    _stats_type = SurveyStats

    def __init__(self, base_url: str, token: str | SecretStr, *, session: requests.Session | None = None,
                 timeout: float = 30.0, polls_page_size: int = 200, answers_page_size: int = 500,
                 max_attempts: int = 8, max_wait_s: float = 300.0, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep, rng: Any = None, backoff_base_s: float = 0.5,
                 backoff_cap_s: float = 30.0) -> None:
        install_logging_filter()
        token_text = token.get_secret_value() if isinstance(token, SecretStr) else str(token or "")
        token_text = token_text.strip()
        register_secret(token_text)
        if not token_text:
            raise ConfigError("SURVEY_API_TOKEN is empty: set it to the survey platform API token.")
        self.base_url = self._check_base_url(base_url)
        if not 1 <= int(polls_page_size) <= 200:
            raise ConfigError(f"the polls page size must be 1..200 (the API's limit), got {polls_page_size}")
        if not 1 <= int(answers_page_size) <= 500:
            raise ConfigError(f"the answers page size must be 1..500 (the API's limit), got {answers_page_size}")
        if timeout is None or timeout <= 0:
            raise ConfigError(f"the survey API timeout must be a positive number of seconds, got {timeout!r}")
        self._token = SecretStr(token_text)
        self._session = session if session is not None else requests.Session()
        self._owns_session = session is None
        self.timeout = float(timeout)
        self.polls_page_size = int(polls_page_size)
        self.answers_page_size = int(answers_page_size)
        kwargs: dict[str, Any] = {"max_attempts": max_attempts, "max_wait_s": max_wait_s,
                                  "base_s": backoff_base_s, "cap_s": backoff_cap_s, "clock": clock, "sleep": sleep}
        if rng is not None:
            kwargs["rng"] = rng
        self.policy = RetryPolicy(**kwargs)
        self._lock = threading.Lock()
        self._stats = SurveyStats()
        self._reached = False  # has this platform ever answered this client (then a refusal is transient)

    @staticmethod
    def _check_base_url(base_url: str) -> str:
        text = str(base_url or "").strip()
        how = "Set SURVEY_API_URL to the API's base URL, e.g. https://surveys.example.edu/api/v1"
        try:
            parts = urlsplit(text)
            parts.port  # noqa: B018 - raises ValueError on a bad port
        except ValueError:
            raise ConfigError(f"SURVEY_API_URL is not a valid URL (got {redact_url(text)!r}). {how}") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"SURVEY_API_URL must be an http(s) URL with a host (got {redact_url(text)!r}). {how}")
        if parts.query or parts.fragment or parts.username or parts.password:
            raise ConfigError(f"SURVEY_API_URL must not carry a query, fragment or user:password@ "
                              f"(got {redact_url(text)!r}): the token goes in SURVEY_API_TOKEN. {how}")
        if parts.scheme == "http" and not is_loopback_host(parts.hostname):
            logger.warning("SURVEY_API_URL {} is plain http to a non-loopback host: the API token crosses "
                           "the network unencrypted; use https", redact_url(text))
        return text.rstrip("/")

    # -- plumbing ---------------------------------------------------------------

    def __repr__(self) -> str:
        return f"SurveyClient(base_url={redact_url(self.base_url)!r}, timeout={self.timeout})"

    def _count(self, *, status: str | None = None, **deltas: float) -> None:
        with self._lock:
            if status is not None:
                self._stats.by_status[status] = self._stats.by_status.get(status, 0) + 1
            for key, delta in deltas.items():
                setattr(self._stats, key, getattr(self._stats, key) + delta)

    # -- the request loop -------------------------------------------------------

    def _attempt(self, path: str, params: Mapping[str, Any]) -> tuple[Any, bool]:
        """One GET, classified: the table of this client (everything is a read, so every
        transient failure raises ``AttemptFailed`` and is retried by the policy).

        Returns the decoded body and whether its text is known to hold no lone surrogate
        (one search of the raw body spares a check of every record on the page)."""
        headers = {"Authorization": f"Bearer {self._token.get_secret_value()}", "Accept": "application/json",
                   "User-Agent": USER_AGENT}
        self._count(requests=1)
        transport_failure: str | None = None
        refused = False
        try:
            response = self._session.get(f"{self.base_url}{path}", params=dict(params), headers=headers,
                                         timeout=self.timeout, allow_redirects=False)
        except requests.exceptions.Timeout as exc:
            self._count(status="timeout")
            transport_failure = describe_exception(exc)
        except requests.RequestException as exc:  # refused, reset, dropped: reads are safe to repeat
            self._count(status="connection_error")
            transport_failure = describe_exception(exc)
            if not self._reached and any(isinstance(e, ConnectionRefusedError) for e in walk_causes(exc)):
                # Nothing listens there and nothing ever did for this client: a wrong URL or a platform
                # that is down. Six attempts over a minute would only delay saying so.
                refused = True
        if transport_failure is not None:
            if refused:
                raise RetriableError(f"Cannot connect to the survey API at {redact_url(self.base_url)}: connection "
                                     f"refused. Check SURVEY_API_URL and that the platform is up; the next run "
                                     f"tries again.", system=SYSTEM, code="CONNECTION_REFUSED")
            # Raised outside the ``except``: the requests exception (its text holds the URL) is not chained.
            raise AttemptFailed(transport_failure)
        status = response.status_code
        self._reached = True
        self._count(status=str(status))
        payload = decode_json(response)
        error = payload.get("error") if isinstance(payload, dict) else None
        if status == 200:
            if payload is NOT_JSON:
                raise AttemptFailed("HTTP 200 with a body that is not JSON")
            return payload, not body_may_hold_surrogates(response.content)
        retry_after = parse_retry_after(header(response.headers, "Retry-After"))
        if status == 429 or status == 408 or status >= 500:
            raise AttemptFailed(f"HTTP {status}" + (f" {error}" if error else ""), retry_after=retry_after)
        if status == 400 and error == "cursor_expired":
            raise _CursorExpired()
        message = payload.get("message") if isinstance(payload, dict) else None
        said = redact(f"HTTP {status}" + (f" {error}" if error else "") + (f": {message}" if message else ""))
        if status == 401:
            raise FatalError(f"The survey API refused the token on GET {path} ({said}): check SURVEY_API_TOKEN.",
                             system=SYSTEM, code=str(error or "unauthorized"), status=status)
        if status == 403:
            raise FatalError(f"The survey API token may not read GET {path} ({said}): ask the platform's admins "
                             f"for read access for SURVEY_API_TOKEN.", system=SYSTEM, code=str(error or "forbidden"),
                             status=status)
        if status == 404:
            raise NotFoundError(f"The survey API has no {path} ({said}): it was deleted.", system=SYSTEM,
                                code=str(error or "not_found"), status=status)
        if 300 <= status < 400:
            where = redact_url(header(response.headers, "Location") or "(no Location)")
            raise FatalError(f"The survey API answered GET {path} with a redirect to {where}: check SURVEY_API_URL.",
                             system=SYSTEM, code=f"HTTP_{status}", status=status)
        raise FatalError(f"The survey API refused GET {path} ({said}); retrying will not help: check the "
                         f"request and SURVEY_API_URL.", system=SYSTEM, code=str(error or f"HTTP_{status}"),
                         status=status)

    def _get(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        """GET ``path`` under the retry policy; the decoded JSON body. Raises per the table in ``_attempt``."""
        return self._get_checked(path, params)[0]

    def _get_checked(self, path: str, params: Mapping[str, Any] | None = None) -> tuple[Any, bool]:
        """``_get``, and whether the body's text is known to hold no lone surrogate."""

        def exhausted(give_up: GiveUp) -> RetriableError:
            return RetriableError(f"The survey API failed GET {path}: {redact(give_up.failure.reason)}; "
                                  f"{give_up.summary}. The platform is overloaded or unreachable: run again later.",
                                  system=SYSTEM, code="exhausted", retry_after=give_up.failure.retry_after)

        return self.policy.run(lambda: self._attempt(path, params or {}), what=f"survey API GET {path}",
                               give_up=exhausted, on_retry=lambda wait: self._count(retries=1, waited_s=wait))

    # -- listings ---------------------------------------------------------------

    def _listing(self, path: str, model: type[BaseModel], id_field: str, page_size: int,
                 updated_since: datetime | None) -> Iterator[Page]:
        """Follow ``next_cursor`` to the end; restart on ``cursor_expired`` (see module docstring)."""
        if updated_since is not None:
            rfc3339(updated_since)  # fail early on a naive datetime
        since = updated_since
        newest: datetime | None = None
        cursor: str | None = None
        restarts = 0
        while True:
            params: dict[str, Any] = {"limit": page_size}
            if since is not None:
                params["updated_since"] = rfc3339(since)
            if cursor is not None:
                params["cursor"] = cursor
            try:
                payload, text_checked = self._get_checked(path, params)
            except _CursorExpired:
                restarts += 1
                self._count(cursor_restarts=1)
                if restarts > MAX_CURSOR_RESTARTS:
                    raise RetriableError(f"The survey API expired the cursor of GET {path} {restarts} times in a row: "
                                         f"the listing is too slow to finish within the cursor's lifetime; run "
                                         f"again later.", system=SYSTEM, code="cursor_expired", status=400) from None
                since = newest if newest is not None else updated_since
                logger.warning("survey API GET {}: cursor expired; restarting from updated_since={} ({}/{})",
                               path, rfc3339(since) if since else "the beginning", restarts, MAX_CURSOR_RESTARTS)
                cursor = None
                continue
            page = _parse_page(payload, path, model, id_field, text_checked=text_checked)
            for item in page.items:
                ts = item.updated_at
                if newest is None or ts > newest:
                    newest = ts
            yield page
            if page.next_cursor is None:
                return
            if page.next_cursor == cursor:
                raise UpstreamError(f"The survey API returned the same next_cursor twice in a row for GET {path}: "
                                    f"stopping, the listing would never end. Report it to the platform's team.",
                                    system=SYSTEM, code="cursor_loop")
            cursor = page.next_cursor

    def iter_polls(self, updated_since: datetime | None = None) -> Iterator[Page]:
        """Pages of ``Poll`` changed at or after ``updated_since`` (all polls when None)."""
        return self._listing("/polls", Poll, "poll_id", self.polls_page_size, updated_since)

    def iter_answers(self, poll_id: int, updated_since: datetime | None = None) -> Iterator[Page]:
        """Pages of ``Answer`` of one poll. A deleted poll raises ``NotFoundError``."""
        return self._listing(f"/polls/{_positive(poll_id, 'poll_id')}/answers", Answer, "answer_id",
                             self.answers_page_size, updated_since)

    def get_answer(self, poll_id: int, answer_id: int) -> Answer:
        """One answer; ``NotFoundError`` if it (or its poll) is gone."""
        path = f"/polls/{_positive(poll_id, 'poll_id')}/answers/{_positive(answer_id, 'answer_id')}"
        payload = self._get(path)
        try:
            return Answer.model_validate(payload)
        except ValidationError as exc:
            raise UpstreamError(f"The survey API returned an answer that does not fit the contract for GET {path}: "
                                f"{_short_error(exc)}", system=SYSTEM, code="invalid_record") from None


def _positive(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def _short_error(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in err.get("loc", ())) or "(record)"
        parts.append(f"{loc}: {err.get('msg')}")
    more = exc.error_count() - len(parts)
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


def _id_of(raw: Any, key: str) -> int | None:
    if isinstance(raw, dict):
        value = raw.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and value.isdigit():
            return int(value)
    return None


def _parse_page(payload: Any, path: str, model: type[BaseModel], id_field: str, *, text_checked: bool = False) -> Page:
    if not isinstance(payload, dict) or not isinstance(payload.get("items"), list):
        raise UpstreamError(f"The survey API answered GET {path} with a page that has no 'items' list.",
                            system=SYSTEM, code="unexpected_reply")
    next_cursor = payload.get("next_cursor")
    if next_cursor is not None and not isinstance(next_cursor, str):
        next_cursor = str(next_cursor)
    if next_cursor == "":
        next_cursor = None
    items: list[Any] = []
    invalid: list[InvalidRecord] = []
    context = CHECKED_TEXT if text_checked else None
    for raw in payload["items"]:
        try:
            items.append(model.model_validate(raw, context=context))
        except ValidationError as exc:
            invalid.append(InvalidRecord(raw=raw, error=redact(_short_error(exc)), record_id=_id_of(raw, id_field),
                                         poll_id=_id_of(raw, "poll_id")))
    return Page(items=items, next_cursor=next_cursor, invalid=invalid)
