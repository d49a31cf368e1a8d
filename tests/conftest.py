"""Fixtures shared by the end-to-end tests: the sandbox, a fresh store per backend, a sync runner."""
from __future__ import annotations

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
    with Sandbox(answers=0, rate_limit=None) as box:
        yield box


@dataclass
class Job:
    """The sync job pointed at a sandbox and a store, as the CLI would build it."""

    box: Sandbox
    store_url: str

    def settings(self, **overrides):
        from sync.settings import load_settings
        values = dict(self.box.settings_kwargs(), database_url=self.store_url,
                      field_mapping=str(ROOT / "field_mapping.json"), http_timeout_s=5, lookback_minutes=10)
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
def job(sandbox, store_url):
    return Job(sandbox, store_url)
