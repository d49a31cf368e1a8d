"""The poll stage's look-ups are read while the answers are pulled, and only once; the forms are
written after the pull (a poll found deleted on the way gets none: tests/hostile)."""
from __future__ import annotations

import time

from sync.polls_stage import PollQuestions


def _user_lookups(box) -> int:
    return box.bitrix.admin.counters()["commands_by_method"].get("user.get", 0)


def test_the_poll_lookups_are_read_while_the_answers_are_pulled_and_not_asked_again(job, monkeypatch):
    from sync.clients.survey import SurveyClient

    real = SurveyClient.iter_answers
    seen_during_pull: list[int] = []

    def iter_answers(self, poll_id, updated_since=None):
        # Hold the answer listing until the owners have been looked up: they must be read meanwhile.
        deadline = time.monotonic() + 10
        while not _user_lookups(job.box) and time.monotonic() < deadline:
            time.sleep(0.01)
        seen_during_pull.append(_user_lookups(job.box))
        return real(self, poll_id, updated_since)

    monkeypatch.setattr(SurveyClient, "iter_answers", iter_answers)
    summary = job.run()

    assert summary.error is None and summary.counts["poll_forms_created"] > 0
    assert seen_during_pull and seen_during_pull[0] > 0   # looked up before the first answer page
    assert _user_lookups(job.box) == seen_during_pull[0]  # and not asked again before the forms were written


def test_a_read_ahead_serves_only_questions_it_covers() -> None:
    ahead = PollQuestions(owner_emails=frozenset({"a@hse.ru", "b@hse.ru"}), poll_ids=frozenset({1, 2}),
                          with_programmes=True)
    assert ahead.covers(PollQuestions(frozenset({"a@hse.ru"}), frozenset({2}), True))
    assert not ahead.covers(PollQuestions(frozenset({"c@hse.ru"}), frozenset({2}), True))   # a new owner
    assert not ahead.covers(PollQuestions(frozenset({"a@hse.ru"}), frozenset({3}), True))   # a new form to read
    assert not ahead.covers(PollQuestions(frozenset({"a@hse.ru"}), frozenset({2}), False))
