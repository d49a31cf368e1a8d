"""A budget for one run (issue 14): ``--max-requests`` / ``--max-duration`` stop a run the
way SIGTERM does — the batches in flight finish, the run is recorded as interrupted with
the budget named, and the next run goes on from there without creating anything twice.
"""
from __future__ import annotations

import threading
from collections import Counter

import pytest
from click.testing import CliRunner

from core import exit_codes
from sandbox import Sandbox
from sync.options import RunBudget
from tests.conftest import Job

# Small batches, one at a time: the sample data then needs many requests, so a budget falls mid-push.
SMALL = {"batch_size": 5, "push_concurrency": 1}


@pytest.fixture
def job(store_url):
    """The sample data and 80 generated answers: enough batches of 5 for a budget to fall mid-push."""
    with Sandbox(portal="smart", answers=80, seed=3, rate_limit=None) as box:
        yield Job(box, store_url)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_request_budget_trips_once_reached_and_stays_tripped():
    made = [0]
    budget = RunBudget(None, max_requests=3, max_duration_s=None, requests=lambda: made[0])
    assert not budget.is_set()
    made[0] = 3
    assert budget.is_set() and "3 Bitrix24 requests of --max-requests 3" in budget.reason
    made[0] = 0  # a counter reset does not un-stop a run
    assert budget.is_set()


def test_the_duration_budget_is_measured_from_the_start_of_the_run():
    clock = Clock()
    budget = RunBudget(None, max_requests=None, max_duration_s=60, requests=lambda: 0, clock=clock)
    clock.now += 59.9
    assert not budget.is_set()
    clock.now += 0.2
    assert budget.is_set() and "--max-duration 60s" in budget.reason


def test_sigterm_still_stops_a_budgeted_run_and_is_not_called_a_budget():
    stop = threading.Event()
    budget = RunBudget(stop, max_requests=100, max_duration_s=None, requests=lambda: 0)
    stop.set()
    assert budget.is_set() and budget.reason == ""


@pytest.mark.parametrize("kwargs", [{"max_requests": 0}, {"max_duration_s": 0}, {"max_duration_s": -1}])
def test_an_empty_budget_is_refused(kwargs):
    with pytest.raises(ValueError):
        RunBudget(None, **{"max_requests": None, "max_duration_s": None, **kwargs}, requests=lambda: 0)


def _deals_by_origin(box) -> Counter:
    return Counter(d.get("ORIGIN_ID") for d in box.bitrix.admin.deals() if d.get("ORIGIN_ID"))


def test_the_sample_data_needs_more_requests_than_the_budgets_below(job):
    full_budget = job.run(settings=SMALL).bitrix_requests
    assert full_budget > 30, "the sample data must need more requests than the budget below"


def test_a_run_over_its_request_budget_is_recorded_interrupted_and_the_next_one_finishes(job):
    first = job.run(settings=SMALL, max_requests=6)
    assert first.outcome == "interrupted"
    assert "run budget reached" in first.error and "--max-requests 6" in first.error
    # Asked before each batch: at most the look-ups of the chunk under way past the budget.
    assert 6 <= first.bitrix_requests <= 6 + 4
    last = job.ledger().last_runs(1)[0]
    assert last.outcome == "interrupted"
    pushed_first = first.counts.get("pushed", 0)

    second = job.run(settings=SMALL)
    assert second.outcome in ("ok", "needs_attention")
    statuses = job.ledger().counts_by_status()
    assert statuses.get("in_flight", 0) == 0 and statuses.get("pending", 0) == 0
    assert second.counts.get("pushed", 0) > 0 and pushed_first + second.counts.get("pushed", 0) > pushed_first
    assert all(n == 1 for n in _deals_by_origin(job.box).values()), "a deal was created twice"


def test_a_run_over_its_time_budget_stops_before_the_next_batch(job):
    first = job.run(settings=SMALL, max_duration_s=1e-6)
    assert first.outcome == "interrupted" and "--max-duration" in first.error
    assert first.counts.get("pushed", 0) == 0
    second = job.run(settings=SMALL)
    assert second.outcome in ("ok", "needs_attention") and second.counts.get("pushed", 0) > 0


def test_a_budget_not_reached_leaves_the_run_complete(job):
    summary = job.run(settings=SMALL, max_requests=10_000, max_duration_s=3600)
    assert summary.outcome in ("ok", "needs_attention") and summary.error is None


def test_the_sync_command_takes_the_budget_and_says_why_it_stopped(job, monkeypatch, tmp_path):
    import cli
    monkeypatch.chdir(tmp_path)  # no stray .env
    env = {k.upper(): str(v) for k, v in job.settings(**SMALL).model_dump().items()
           if k in ("survey_api_url", "bitrix24_webhook_url", "database_url", "field_mapping", "batch_size",
                    "push_concurrency")}
    env["SURVEY_API_TOKEN"] = job.settings().survey_api_token.get_secret_value()
    env["BITRIX24_WEBHOOK_URL"] = job.settings().bitrix24_webhook_url.get_secret_value()
    result = CliRunner().invoke(cli.cli, ["sync", "--max-requests", "6"], env=env)
    assert result.exit_code == exit_codes.ABORTED, result.output
    # The line is in REPORT_LANGUAGE (Russian by default): the option it names reads the same in both.
    assert "--max-requests 6" in result.output.splitlines()[-1]
    refused = CliRunner().invoke(cli.cli, ["sync", "--max-duration", "0"], env=env)
    assert refused.exit_code == exit_codes.USAGE_ERROR
