"""SurveyClient: cursor paging, restarts on expired cursors, bad records kept, the error table, retries.

HTTP is faked with ``responses``; ``FakeClock`` advances only when slept on, and
``MaxJitter`` makes backoff waits exactly 0.5·2^(n-1) s.
"""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses
from pydantic import SecretStr
from responses import matchers

from sync.clients.survey import SurveyClient, rfc3339
from core.errors import ConfigError, FatalError, NotFoundError, RetriableError, UpstreamError
from sync.source.models import Answer, Poll
from core.redact import redact
from tests.clients.conftest import FakeClock, MaxJitter, SpySession

BASE = "https://surveys.example.edu/api/v1"
TOKEN = "sv-tok-9f8e7d6c5b4a3210"
MSK = timezone(timedelta(hours=3))


def answer(answer_id: int, updated: str = "2025-10-20T09:15:02+03:00", poll_id: int = 430131691, **extra) -> dict:
    return {"answer_id": answer_id, "poll_id": poll_id, "created_at": "2025-10-20T09:15:02+03:00",
            "updated_at": updated, "answers": [{"code": "email", "value": f"a{answer_id}@example.com"}], **extra}


def poll(poll_id: int, updated: str = "2025-10-01T10:00:00+03:00") -> dict:
    return {"poll_id": poll_id, "poll_name": f"Опрос {poll_id}", "poll_language": "ru",
            "employee_email": "admin@hse.ru", "status": "active", "created_at": "2025-10-01T10:00:00+03:00",
            "updated_at": updated, "questions": [{"code": "email", "title": "E-mail", "type": "email"}]}


def query(call) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(call.request.url).query).items()}


@pytest.fixture
def client(clock: FakeClock, spy_session: SpySession) -> SurveyClient:
    return SurveyClient(BASE, TOKEN, session=spy_session, clock=clock, sleep=clock.sleep, rng=MaxJitter())


ANSWERS = f"{BASE}/polls/430131691/answers"


# --------------------------------------------------------------------------- paging

@responses.activate
def test_iter_polls_follows_next_cursor_to_the_end(client: SurveyClient, spy_session: SpySession) -> None:
    responses.get(f"{BASE}/polls", json={"items": [poll(1), poll(2)], "next_cursor": "c1"})
    responses.get(f"{BASE}/polls", json={"items": [poll(3)], "next_cursor": "c2"})
    responses.get(f"{BASE}/polls", json={"items": [], "next_cursor": None})

    since = datetime(2025, 10, 1, 10, 0, tzinfo=MSK)
    pages = list(client.iter_polls(since))

    assert [[p.poll_id for p in page.items] for page in pages] == [[1, 2], [3], []]
    assert all(isinstance(p, Poll) for page in pages for p in page.items)
    assert [query(c) for c in responses.calls] == [
        {"limit": "200", "updated_since": "2025-10-01T07:00:00Z"},
        {"limit": "200", "updated_since": "2025-10-01T07:00:00Z", "cursor": "c1"},
        {"limit": "200", "updated_since": "2025-10-01T07:00:00Z", "cursor": "c2"},
    ]
    request = responses.calls[0].request
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert request.headers["Accept"] == "application/json"
    assert request.headers["User-Agent"].startswith("survey-bitrix24-sync/")
    assert all(s["timeout"] == 30.0 and s["allow_redirects"] is False for s in spy_session.sent)


@responses.activate
def test_iter_answers_without_since_lists_everything(client: SurveyClient) -> None:
    responses.get(ANSWERS, json={"items": [answer(814573981)], "next_cursor": None})
    pages = list(client.iter_answers(430131691, None))
    assert isinstance(pages[0].items[0], Answer) and pages[0].items[0].answer_id == 814573981
    assert query(responses.calls[0]) == {"limit": "500"}


def test_updated_since_is_rfc3339_utc() -> None:
    assert rfc3339(datetime(2025, 10, 20, 9, 15, 2, tzinfo=MSK)) == "2025-10-20T06:15:02Z"
    assert rfc3339(datetime(2025, 10, 20, 6, 15, 2, 500, tzinfo=timezone.utc)) == "2025-10-20T06:15:02.000500Z"
    with pytest.raises(ValueError, match="timezone-aware"):
        rfc3339(datetime(2025, 10, 20, 9, 15, 2))


def test_naive_updated_since_is_refused_before_any_request(client: SurveyClient) -> None:
    with pytest.raises(ValueError):
        next(client.iter_polls(datetime(2025, 10, 1)))


@responses.activate
def test_invalid_answer_lands_in_page_invalid(client: SurveyClient) -> None:
    broken_date = answer(814573990, updated="yesterday")
    no_id = {k: v for k, v in answer(814573991).items() if k != "answer_id"}
    naive = answer(814573992, updated="2025-10-20T09:15:02")
    responses.get(ANSWERS, json={"items": [answer(814573981), broken_date, no_id, naive, "junk"],
                                 "next_cursor": None})

    [page] = list(client.iter_answers(430131691, None))

    assert [a.answer_id for a in page.items] == [814573981]
    assert [(r.record_id, r.poll_id) for r in page.invalid] == [(814573990, 430131691), (None, 430131691),
                                                                (814573992, 430131691), (None, None)]
    assert page.invalid[0].raw == broken_date
    assert "updated_at" in page.invalid[0].error
    assert "answer_id" in page.invalid[1].error
    assert "timezone" in page.invalid[2].error


@responses.activate
def test_invalid_poll_lands_in_page_invalid(client: SurveyClient) -> None:
    bad = {**poll(5), "poll_id": -5}
    responses.get(f"{BASE}/polls", json={"items": [poll(4), bad], "next_cursor": None})
    [page] = list(client.iter_polls(None))
    assert [p.poll_id for p in page.items] == [4]
    assert page.invalid[0].record_id == -5 and "poll_id" in page.invalid[0].error


@responses.activate
def test_cursor_expired_restarts_from_newest_seen(client: SurveyClient, log_lines) -> None:
    since = datetime(2025, 10, 20, 0, 0, tzinfo=timezone.utc)
    responses.get(ANSWERS, json={"items": [answer(1, "2025-10-20T09:00:00+03:00"),
                                           answer(2, "2025-10-20T09:15:02+03:00")], "next_cursor": "c1"})
    responses.get(ANSWERS, status=400, json={"error": "cursor_expired", "message": "cursor is older than 15 minutes"})
    responses.get(ANSWERS, json={"items": [answer(2, "2025-10-20T09:15:02+03:00"),
                                           answer(3, "2025-10-20T09:20:00+03:00")], "next_cursor": None})

    pages = list(client.iter_answers(430131691, since))

    assert [[a.answer_id for a in p.items] for p in pages] == [[1, 2], [2, 3]]  # the tie is read again
    assert [query(c) for c in responses.calls] == [
        {"limit": "500", "updated_since": "2025-10-20T00:00:00Z"},
        {"limit": "500", "updated_since": "2025-10-20T00:00:00Z", "cursor": "c1"},
        {"limit": "500", "updated_since": "2025-10-20T06:15:02Z"},  # newest seen, inclusive, no cursor
    ]
    assert client.stats.cursor_restarts == 1
    assert any("cursor expired" in line for line in log_lines)


@responses.activate
def test_cursor_expired_before_anything_seen_restarts_from_original_since(client: SurveyClient) -> None:
    since = datetime(2025, 10, 20, 0, 0, tzinfo=timezone.utc)
    responses.get(ANSWERS, json={"items": [], "next_cursor": "c1"})
    responses.get(ANSWERS, status=400, json={"error": "cursor_expired"})
    responses.get(ANSWERS, json={"items": [answer(1)], "next_cursor": None})
    list(client.iter_answers(430131691, since))
    assert query(responses.calls[2]) == {"limit": "500", "updated_since": "2025-10-20T00:00:00Z"}


@responses.activate
def test_cursor_expiring_more_than_five_times_is_retriable(client: SurveyClient) -> None:
    for _ in range(7):
        responses.get(ANSWERS, json={"items": [answer(1)], "next_cursor": "c1"})
        responses.get(ANSWERS, status=400, json={"error": "cursor_expired"})
    with pytest.raises(RetriableError) as info:
        list(client.iter_answers(430131691, None))
    assert "6 times" in str(info.value) and info.value.code == "cursor_expired"
    assert len(responses.calls) == 12  # first listing + 5 restarts, each page 1 then the expired page 2


@responses.activate
def test_repeated_cursor_is_upstream_error(client: SurveyClient) -> None:
    responses.get(ANSWERS, json={"items": [answer(1)], "next_cursor": "same"})
    responses.get(ANSWERS, json={"items": [answer(2)], "next_cursor": "same"})
    pages = []
    with pytest.raises(UpstreamError) as info:
        for page in client.iter_answers(430131691, None):
            pages.append(page)
    assert "same next_cursor twice" in str(info.value) and info.value.code == "cursor_loop"
    assert len(pages) == 2  # what was read is handed over before stopping
    assert not isinstance(info.value, RetriableError)


@responses.activate
def test_page_without_items_is_upstream_error(client: SurveyClient) -> None:
    responses.get(f"{BASE}/polls", json={"data": []})
    with pytest.raises(UpstreamError, match="no 'items'"):
        list(client.iter_polls(None))


# --------------------------------------------------------------------------- error table

@responses.activate
def test_404_on_answers_is_not_found(client: SurveyClient) -> None:
    responses.get(f"{BASE}/polls/777/answers", status=404, json={"error": "not_found"})
    with pytest.raises(NotFoundError) as info:
        list(client.iter_answers(777, None))
    assert "/polls/777/answers" in str(info.value) and info.value.status == 404
    assert len(responses.calls) == 1


@responses.activate
def test_get_answer_returns_answer_or_not_found(client: SurveyClient) -> None:
    responses.get(f"{ANSWERS}/814573981", json=answer(814573981))
    responses.get(f"{ANSWERS}/814573999", status=404, json={"error": "not_found"})
    got = client.get_answer(430131691, 814573981)
    assert isinstance(got, Answer) and got.value_of("email") == "a814573981@example.com"
    with pytest.raises(NotFoundError):
        client.get_answer(430131691, 814573999)


@responses.activate
def test_get_answer_that_breaks_the_contract_is_upstream_error(client: SurveyClient) -> None:
    responses.get(f"{ANSWERS}/5", json={"answer_id": 5})
    with pytest.raises(UpstreamError) as info:
        client.get_answer(430131691, 5)
    assert info.value.code == "invalid_record" and "updated_at" in str(info.value)


@pytest.mark.parametrize("bad", [0, -1, "5", True, 1.5])
def test_ids_must_be_positive_integers(client: SurveyClient, bad) -> None:
    with pytest.raises(ValueError):
        client.get_answer(bad, 1)
    with pytest.raises(ValueError):
        client.iter_answers(bad, None)


@responses.activate
def test_401_is_fatal_and_names_the_token_setting(client: SurveyClient) -> None:
    responses.get(f"{BASE}/polls", status=401,
                  json={"error": "unauthorized", "message": f"token {TOKEN} is not valid"})
    with pytest.raises(FatalError) as info:
        list(client.iter_polls(None))
    message = str(info.value)
    assert "refused the token" in message and "SURVEY_API_TOKEN" in message
    assert TOKEN not in message and info.value.status == 401
    assert len(responses.calls) == 1


@responses.activate
def test_other_4xx_is_fatal(client: SurveyClient) -> None:
    responses.get(f"{BASE}/polls", status=400, json={"error": "bad_request", "message": "limit out of range"})
    with pytest.raises(FatalError) as info:
        list(client.iter_polls(None))
    assert "limit out of range" in str(info.value) and info.value.code == "bad_request"


@responses.activate
def test_429_waits_retry_after_then_retries(client: SurveyClient, clock: FakeClock) -> None:
    responses.get(f"{BASE}/polls", status=429, json={"error": "rate_limited"}, headers={"Retry-After": "3"})
    responses.get(f"{BASE}/polls", json={"items": [poll(1)], "next_cursor": None})
    [page] = list(client.iter_polls(None))
    assert page.items[0].poll_id == 1
    assert clock.sleeps == [3.0]


@responses.activate
def test_retry_after_header_wins(client: SurveyClient, clock: FakeClock) -> None:
    responses.get(f"{BASE}/polls", status=503, json={"error": "internal"}, headers={"Retry-After": "11"})
    responses.get(f"{BASE}/polls", status=503, json={"error": "internal"})
    responses.get(f"{BASE}/polls", json={"items": [], "next_cursor": None})
    list(client.iter_polls(None))
    assert clock.sleeps == [11.0, 1.0]  # the hint; then backoff attempt 2 (0.5·2)


@responses.activate
def test_5xx_timeouts_and_resets_are_retried_with_backoff(client: SurveyClient, clock: FakeClock,
                                                          log_lines) -> None:
    responses.get(f"{BASE}/polls", status=502, body="<html>Bad Gateway</html>")
    responses.get(f"{BASE}/polls", status=503, json={"error": "internal"})
    responses.get(f"{BASE}/polls", body=requests.exceptions.ReadTimeout("read timed out"))
    responses.get(f"{BASE}/polls", body=requests.ConnectionError("Connection reset by peer"))
    responses.get(f"{BASE}/polls", status=504)
    responses.get(f"{BASE}/polls", status=500, json={"error": "internal"})
    responses.get(f"{BASE}/polls", json={"items": [poll(1)], "next_cursor": None})

    [page] = list(client.iter_polls(None))

    assert page.items[0].poll_id == 1
    assert clock.sleeps == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0]
    stats = client.stats
    assert stats.requests == 7 and stats.retries == 6
    assert stats.by_status == {"502": 1, "503": 1, "timeout": 1, "connection_error": 1, "504": 1, "500": 1,
                               "200": 1}
    assert len(log_lines) == 6 and "GET /polls: attempt 1/8 failed: HTTP 502" in log_lines[0]


@responses.activate
def test_exhausted_retries_raise_retriable_naming_path_not_token(client: SurveyClient, clock: FakeClock) -> None:
    responses.get(ANSWERS, status=503, json={"error": "internal", "message": f"bad token {TOKEN}"})
    with pytest.raises(RetriableError) as info:
        list(client.iter_answers(430131691, None))
    message = str(info.value)
    assert "GET /polls/430131691/answers" in message and "8 attempts" in message
    assert TOKEN not in message and "surveys.example.edu" not in message
    assert len(responses.calls) == 8
    assert clock.sleeps == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0]  # capped at 30 s
    assert info.value.__cause__ is None and info.value.__context__ is None


@responses.activate
def test_max_wait_caps_total_retry_time(clock: FakeClock, spy_session: SpySession) -> None:
    client = SurveyClient(BASE, TOKEN, session=spy_session, clock=clock, sleep=clock.sleep, rng=MaxJitter(),
                          max_wait_s=10)
    responses.get(f"{BASE}/polls", status=502)
    with pytest.raises(RetriableError, match="retry budget"):
        list(client.iter_polls(None))
    assert clock.sleeps == [0.5, 1.0, 2.0, 4.0]  # the next 8 s would end past 10 s


@responses.activate
def test_200_that_is_not_json_is_retried(client: SurveyClient, clock: FakeClock) -> None:
    responses.get(f"{BASE}/polls", body="<html>maintenance</html>", content_type="text/html")
    responses.get(f"{BASE}/polls", json={"items": [], "next_cursor": None})
    list(client.iter_polls(None))
    assert clock.sleeps == [0.5]


@responses.activate
def test_redirect_is_fatal(client: SurveyClient) -> None:
    responses.get(f"{BASE}/polls", status=301, headers={"Location": "https://other.example.edu/api/v1/polls"})
    with pytest.raises(FatalError, match="SURVEY_API_URL"):
        list(client.iter_polls(None))
    assert len(responses.calls) == 1


# --------------------------------------------------------------------------- configuration, secrets

@pytest.mark.parametrize("base", ["", "surveys.example.edu/api", "ftp://surveys.example.edu",
                                  "https://surveys.example.edu/api?token=x", "https://u:p@surveys.example.edu",
                                  "https://surveys.example.edu:99999/api"])
def test_bad_base_url_is_config_error(base: str) -> None:
    with pytest.raises(ConfigError, match="SURVEY_API_URL"):
        SurveyClient(base, TOKEN)


@pytest.mark.parametrize("kwargs", [{"polls_page_size": 201}, {"answers_page_size": 0}, {"timeout": 0}])
def test_out_of_range_settings_are_config_errors(kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        SurveyClient(BASE, TOKEN, **kwargs)


def test_empty_token_is_config_error() -> None:
    with pytest.raises(ConfigError, match="SURVEY_API_TOKEN"):
        SurveyClient(BASE, SecretStr("  "))


def test_token_is_registered_and_never_in_repr() -> None:
    client = SurveyClient(BASE + "/", SecretStr("sv-other-token-0011223344"))
    assert redact("Bearer sv-other-token-0011223344") == "Bearer ***"
    assert "sv-other-token" not in repr(client)
    assert client.base_url == BASE


@responses.activate
def test_trailing_slash_in_base_url_is_not_doubled(spy_session: SpySession, clock: FakeClock) -> None:
    client = SurveyClient(BASE + "/", TOKEN, session=spy_session, clock=clock, sleep=clock.sleep)
    responses.get(f"{BASE}/polls", json={"items": [], "next_cursor": None},
                  match=[matchers.query_param_matcher({"limit": "200"})])
    list(client.iter_polls(None))
    assert urlsplit(responses.calls[0].request.url).path == "/api/v1/polls"


@responses.activate
def test_custom_page_sizes_are_sent(spy_session: SpySession, clock: FakeClock) -> None:
    client = SurveyClient(BASE, TOKEN, session=spy_session, clock=clock, sleep=clock.sleep, polls_page_size=50,
                          answers_page_size=100)
    responses.get(f"{BASE}/polls", json={"items": [], "next_cursor": None})
    responses.get(ANSWERS, json={"items": [], "next_cursor": None})
    list(client.iter_polls(None))
    list(client.iter_answers(430131691, None))
    assert [query(c)["limit"] for c in responses.calls] == ["50", "100"]


@responses.activate
def test_stats_reset(client: SurveyClient) -> None:
    responses.get(f"{BASE}/polls", json={"items": [], "next_cursor": None})
    list(client.iter_polls(None))
    assert client.stats.requests == 1
    client.reset_stats()
    assert client.stats.requests == 0 and client.stats.by_status == {}


def test_sample_data_parses_without_invalid_records() -> None:
    """The shared sample payloads fit the models the client parses into."""
    import pathlib

    root = pathlib.Path(__file__).resolve().parents[2] / "sandbox" / "sample_data"
    if not root.exists():
        pytest.skip("sample data not present")
    polls = json.loads((root / "polls.json").read_text(encoding="utf-8"))["polls"]
    answers = json.loads((root / "answers.json").read_text(encoding="utf-8"))["answers"]
    with responses.RequestsMock() as mock:
        mock.get(f"{BASE}/polls", json={"items": polls, "next_cursor": None})
        mock.get(ANSWERS, json={"items": answers, "next_cursor": None})
        client = SurveyClient(BASE, TOKEN)
        [poll_page] = list(client.iter_polls(None))
        [answer_page] = list(client.iter_answers(430131691, None))
    assert poll_page.invalid == [] and len(poll_page.items) == len(polls)
    assert answer_page.invalid == [] and len(answer_page.items) == len(answers)


# --------------------------------------------------------------------------- lone surrogates

@pytest.mark.parametrize("body, may", [
    (b'{"v": "\\ud800"}', True),                     # a lone surrogate, as the platform would escape it
    (b'{"v": "\\uDC00"}', True),                     # upper-case hex digits too
    (b'{"v": "\\ud83d\\ude00"}', True),              # an escaped pair: the per-record check decides
    ('{"v": "Пётр \\u00e9 😀"}'.encode(), False),     # raw UTF-8 and other escapes cannot make one
])
def test_only_a_surrogate_escape_makes_a_body_worth_checking_record_by_record(body: bytes, may: bool) -> None:
    from sync.source.models import body_may_hold_surrogates
    assert body_may_hold_surrogates(body) is may
