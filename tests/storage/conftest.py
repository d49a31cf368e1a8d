"""Fixtures: every store test runs on a fresh SQLite file, and again on a fresh
Postgres schema when TEST_DATABASE_URL is set (skipped otherwise)."""
from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from storage.db import make_engine, migrate
from storage.ledger import Ledger
from storage.testing import fresh_database_url

T0 = datetime(2025, 9, 1, 10, 0, tzinfo=timezone.utc)


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/data/sync.sqlite3"
        return
    base = os.environ.get("TEST_DATABASE_URL")
    if not base:
        pytest.skip("TEST_DATABASE_URL is not set")
    with fresh_database_url(base) as url:
        yield url


@pytest.fixture
def engine(store_url: str) -> Iterator[Engine]:
    engine = make_engine(store_url)
    migrate(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def ledger(engine: Engine) -> Ledger:
    return Ledger(engine)


def answer(answer_id: int, *, poll_id: int = 1, minutes: int = 0, email: str | None = None, **extra: Any) -> dict:
    """A JSON-mode ``Answer`` dict as the puller hands it to the ledger."""
    moment = (T0 + timedelta(minutes=minutes)).isoformat().replace("+00:00", "Z")
    return {
        "answer_id": answer_id,
        "poll_id": poll_id,
        "created_at": T0.isoformat().replace("+00:00", "Z"),
        "updated_at": moment,
        "answers": [{"code": "email", "value": email or f"person{answer_id}@example.com"}],
        "utm": {},
        "cookies": {},
        "meta": {},
        **extra,
    }


def poll(poll_id: int, *, name: str = "Open day", minutes: int = 0) -> dict:
    moment = (T0 + timedelta(minutes=minutes)).isoformat().replace("+00:00", "Z")
    return {
        "poll_id": poll_id,
        "poll_name": name,
        "poll_language": "ru",
        "employee_email": "manager@example.com",
        "status": "active",
        "created_at": T0.isoformat().replace("+00:00", "Z"),
        "updated_at": moment,
        "questions": [],
    }
