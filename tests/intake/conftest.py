"""Fixtures of the intake tests: a migrated store per backend (Postgres only with TEST_DATABASE_URL),
the intake app over it, the sample deliveries, and a real intake process on a free port."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from storage.testing import fresh_database_url

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "sandbox" / "sample_data" / "real"
BASE = "/api/v1/integration"


def sample_polls() -> list[dict[str, Any]]:
    return json.loads((SAMPLES / "polls.json").read_text(encoding="utf-8"))["postPoll"]


def sample_answers() -> list[dict[str, Any]]:
    return json.loads((SAMPLES / "answers.json").read_text(encoding="utf-8"))["postAnswer"]


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest) -> Iterator[str]:
    if request.param == "sqlite":
        with fresh_database_url("sqlite:///unused.sqlite3") as url:
            yield url
        return
    base = os.environ.get("TEST_DATABASE_URL")
    if not base:
        pytest.skip("TEST_DATABASE_URL is not set: Postgres variant skipped")
    with fresh_database_url(base) as url:
        yield url


@pytest.fixture
def sqlite_url() -> Iterator[str]:
    with fresh_database_url("sqlite:///unused.sqlite3") as url:
        yield url


def intake_settings(database_url: str, **overrides: Any):
    from intake.cli import load_intake_settings
    return load_intake_settings(database_url=database_url, **overrides)


@pytest.fixture
def engine(store_url):
    from intake.server import make_intake_engine
    engine = make_intake_engine(store_url)
    yield engine
    engine.dispose()


class Intake:
    """The app under FastAPI's TestClient, with the store it writes to."""

    def __init__(self, settings, engine, **app_kwargs: Any) -> None:
        from fastapi.testclient import TestClient

        from intake.app import create_app
        self.settings = settings
        self.engine = engine
        self.app = create_app(settings, engine, **app_kwargs)
        self.client = TestClient(self.app, raise_server_exceptions=False)
        self.base = settings.intake_base_path + (
            f"/{settings.intake_token.get_secret_value()}" if settings.intake_token else "")

    def post(self, endpoint: str, body: Any = None, *, content: bytes | None = None, **kwargs: Any) -> httpx.Response:
        if content is None:
            content = json.dumps(body).encode("utf-8")  # \u escapes, as a lone surrogate can only come
        return self.client.post(f"{self.base}/{endpoint}", content=content,
                                headers={"Content-Type": "application/json", **kwargs.pop("headers", {})}, **kwargs)

    def close(self) -> None:
        self.client.close()
        self.app.state.intake.writer.close()


@pytest.fixture
def make_intake(store_url, engine):
    made: list[Intake] = []

    def make(**overrides: Any) -> Intake:
        app_kwargs = {k: overrides.pop(k) for k in ("crm",) if k in overrides}
        intake = Intake(intake_settings(store_url, **overrides), engine, **app_kwargs)
        made.append(intake)
        return intake
    yield make
    for intake in made:
        intake.close()


@pytest.fixture
def intake(make_intake) -> Intake:
    return make_intake()


class IntakeProcess:
    """``python cli.py intake --port 0`` in a subprocess; ``url`` from its one stdout line."""

    def __init__(self, database_url: str, env: dict[str, str] | None = None) -> None:
        full_env = {**os.environ, "DATABASE_URL": database_url, "LOG_LEVEL": "WARNING", **(env or {})}
        for name in ("SURVEY_API_URL", "SURVEY_API_TOKEN", "BITRIX24_WEBHOOK_URL"):
            full_env.pop(name, None)
        self.proc = subprocess.Popen([sys.executable, "cli.py", "intake", "--port", "0"], cwd=ROOT, env=full_env,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if not line.startswith("intake listening on http://"):
            self.proc.kill()
            raise AssertionError(f"no listening line: {line!r}; stderr: {self.proc.stderr.read()[-2000:]}")
        self.line = line
        self.url = line.split(" on ", 1)[1].strip()

    def wait_healthy(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise AssertionError("the intake never became healthy")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream:
                stream.close()


@pytest.fixture
def logs() -> Iterator[list[tuple[str, str]]]:
    """``(level, message)`` of every loguru record while the test runs (after the redacting patcher, if set)."""
    from loguru import logger
    records: list[tuple[str, str]] = []
    sink = logger.add(lambda m: records.append((m.record["level"].name, m.record["message"])), level="DEBUG")
    yield records
    logger.remove(sink)
