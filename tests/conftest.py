"""Fixtures shared by the end-to-end tests: the sandbox, a fresh store per backend, a sync runner."""
from __future__ import annotations

import inspect
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from sandbox import Sandbox  # noqa: E402
from storage.testing import fresh_database_url  # noqa: E402

BACKENDS = ["sqlite", "postgres"]


def _store(backend: str):
    if backend == "sqlite":
        return fresh_database_url("sqlite:///unused.sqlite3")
    base = os.environ.get("TEST_DATABASE_URL")
    if not base:
        pytest.skip("TEST_DATABASE_URL is not set: Postgres variant skipped")
    return fresh_database_url(base)


@pytest.fixture(params=BACKENDS)
def store_url(request):
    """An empty store on each backend (Postgres only when TEST_DATABASE_URL is set)."""
    with _store(request.param) as url:
        yield url


@pytest.fixture(scope="module", params=BACKENDS)
def module_store_url(request):
    with _store(request.param) as url:
        yield url


@pytest.fixture
def sandbox():
    """Both emulators with the sample data only and no rate limit (fast tests)."""
    with Sandbox(portal="smart", answers=0, rate_limit=None) as box:
        yield box


@dataclass
class Job:
    """The sync job pointed at a sandbox and a store, as the CLI would build it."""

    box: Sandbox
    store_url: str

    def settings(self, **overrides):
        from sync.settings import load_settings
        values = dict(self.box.settings_kwargs(), database_url=self.store_url,
                      field_mapping=str(ROOT / "examples" / "field_mapping.smart-processes.json"), http_timeout_s=5, lookback_minutes=10)
        values.update(overrides)
        return load_settings(**values)

    def run(self, **options):
        from sync.app import build_context, execute, options_from
        overrides = options.pop("settings", {})
        settings = self.settings(**overrides)
        ctx = build_context(settings)
        return execute(ctx, options_from(settings, **{"command": "sync", **options}))

    def ledger(self):
        from storage.db import make_engine
        from storage.ledger import Ledger
        return Ledger(make_engine(self.store_url))


@pytest.fixture
def job(store_url, sandbox):
    # store_url first: a skipped Postgres variant then never starts the emulators
    return Job(sandbox, store_url)


# --------------------------------------------------------------------------- markers
# One place says which tests are slow, so `python -m pytest -m "not slow"` is the quick
# loop and a plain `python -m pytest` (the README's and CI's command) still runs all.
# Keys are "path::test name" prefixes (a parametrized test matches by its name without
# the [id]); a path alone marks the whole module or directory.
SLOW = (
    # chaos runs and killed processes
    "tests/chaos/",
    "tests/e2e/test_invariants.py::test_killed_runs_then_a_final_run_sync_every_answer_exactly_once",
    "tests/storage/test_lock.py::test_lock_released_when_holder_killed",
    # real `cli.py` / scheduler / alembic subprocesses
    "tests/e2e/test_operations.py",
    "tests/intake/test_server.py",
    "tests/ops/test_docker.py::test_the_cmd_syncs_on_schedule_against_the_sandbox_and_stops_on_sigterm",
    "tests/ops/test_scheduler.py::test_sigterm_lets_the_run_in_flight_finish_and_exits_0",
    "tests/ops/test_scheduler.py::test_a_second_signal_exits_at_once_with_aborted",
    "tests/storage/test_migrations.py::test_concurrent_starts_migrate_once",
    "tests/storage/test_migrations.py::test_alembic_command_line_works_from_elsewhere",
    # real APScheduler ticks (the interval is at least 1 s)
    "tests/ops/test_scheduler.py::test_the_next_run_comes_and_not_before_the_tick_the_heartbeat_announced",
    "tests/ops/test_scheduler.py::test_a_slow_run_is_never_overlapped",
    "tests/ops/test_scheduler.py::test_failing_runs_are_logged_and_the_schedule_goes_on",
    # hadolint
    "tests/ops/test_docker.py::test_dockerfile_lints_clean",
    # generated-input runs: hypothesis properties, schemathesis against the OpenAPI contract
    "tests/property/",
    "tests/clients/test_phpquery.py::test_round_trips_through_php_parse_str",
    "tests/sandbox/test_survey_contract.py",
    # benchmark-like: big data sets, memory and timing bounds
    "tests/report/test_report.py::test_twenty_thousand_answers_render_in_seconds",
    "tests/storage/test_ledger_answers.py::test_answers_to_push_memory_does_not_grow_with_rows",
    "tests/storage/test_ledger_answers.py::test_staging_10000_answers_takes_a_few_bulk_statements",
    "tests/sandbox/test_bitrix_crm.py::test_lookups_stay_fast_at_200000_deals",
    "tests/sandbox/test_survey_emulator.py::test_full_listing_of_a_generated_dataset_sees_every_answer_once",
    "tests/e2e/test_invariants.py::test_bulk_backfill_gives_the_same_crm_as_the_normal_path",
)


def _uses_postgres(item) -> bool:
    """The Postgres variant of a backend-parametrized test, or a test that reads TEST_DATABASE_URL itself."""
    params = getattr(getattr(item, "callspec", None), "params", {})
    if any(isinstance(v, str) and v == "postgres" for v in params.values()):
        return True
    function = getattr(item, "function", None)
    try:
        return function is not None and "TEST_DATABASE_URL" in inspect.getsource(function)
    except (OSError, TypeError):
        return False


def _matches(name: str, key: str) -> bool:
    return name == key or name.startswith(key if key.endswith("/") or "::" in key else key + "::")


@pytest.hookimpl(tryfirst=True)  # before -m deselects by marker
def pytest_collection_modifyitems(config, items):
    unused = set(SLOW)
    for item in items:
        path = Path(str(item.fspath)).resolve().relative_to(ROOT).as_posix()
        name = f"{path}::{item.originalname or item.name}"
        keys = [key for key in SLOW if _matches(name, key)]
        if keys:
            item.add_marker(pytest.mark.slow)
            unused.difference_update(keys)
        if path.startswith("tests/chaos/"):
            item.add_marker(pytest.mark.chaos)
        if _uses_postgres(item):
            # the same test again on the other backend: the quick loop keeps the SQLite run
            item.add_marker(pytest.mark.postgres)
            item.add_marker(pytest.mark.slow)
    whole_suite = not [a for a in config.invocation_params.args if not a.startswith("-") and Path(a).exists()]
    if whole_suite and unused:
        # a renamed or moved slow test would silently join the quick loop
        import warnings
        warnings.warn(pytest.PytestWarning(f"tests/conftest.py SLOW names no collected test: {sorted(unused)}"))
