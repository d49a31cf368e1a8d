"""Fixtures of the operations tests: the repository root, captured log lines, the two emulators."""
from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from loguru import logger

ROOT = Path(__file__).resolve().parents[2]
FIELD_MAPPING = ROOT / "examples" / "field_mapping.smart-processes.json"


@pytest.fixture
def logs() -> Iterator[list[tuple[str, str]]]:
    """``(level, message)`` of every loguru record while the test runs."""
    records: list[tuple[str, str]] = []
    sink = logger.add(lambda m: records.append((m.record["level"].name, m.record["message"])), level="DEBUG")
    yield records
    logger.remove(sink)


@pytest.fixture(scope="session")
def survey_api():
    from sandbox.survey import SurveyEmulator
    emulator = SurveyEmulator(rate_limit_per_s=None).start()
    yield emulator
    emulator.stop()


@pytest.fixture(scope="session")
def portal():
    from sandbox.bitrix import BitrixEmulator
    emulator = BitrixEmulator(rate_limit=None).start()
    yield emulator
    emulator.stop()


@pytest.fixture(scope="session")
def migrated_store(tmp_path_factory) -> str:
    from storage.db import make_engine, migrate
    url = f"sqlite:///{tmp_path_factory.mktemp('store')}/sync.sqlite3"
    engine = make_engine(url)
    migrate(engine)
    engine.dispose()
    return url


@pytest.fixture
def write_mapping(tmp_path):
    """Write a copy of field_mapping.json changed by ``edit(mapping_dict)``; returns its path."""
    def write(edit=None) -> Path:
        raw = json.loads(FIELD_MAPPING.read_text(encoding="utf-8"))
        if edit is not None:
            edit(raw)
        path = tmp_path / "field_mapping.json"
        path.write_text(json.dumps(raw, ensure_ascii=False), encoding="utf-8")
        return path
    return write
