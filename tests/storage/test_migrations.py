"""Migrations: applied at every start, idempotent, safe when processes start together."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from storage.db import head_revision, make_engine, migrate, schema_status
from storage.tables import metadata

ROOT = Path(__file__).resolve().parents[2]
TABLES = {"answers", "polls", "watermarks", "runs", "locks", "alembic_version"}


@pytest.fixture
def bare_engine(store_url):
    engine = make_engine(store_url)
    yield engine
    engine.dispose()


def test_migrate_creates_every_table_and_reports_the_revision(bare_engine):
    assert schema_status(bare_engine) == (None, head_revision())
    assert migrate(bare_engine) == ["0001", "0002"]
    assert TABLES <= set(inspect(bare_engine).get_table_names())
    assert schema_status(bare_engine) == ("0002", "0002")


def test_migrate_twice_is_noop(bare_engine):
    migrate(bare_engine)
    assert migrate(bare_engine) == []
    assert schema_status(bare_engine) == ("0002", "0002")


def test_indexes_exist(bare_engine):
    migrate(bare_engine)
    names = {ix["name"] for ix in inspect(bare_engine).get_indexes("answers")}
    assert {"ix_answers_poll_id", "ix_answers_status"} <= names
    runs = {ix["name"]: ix for ix in inspect(bare_engine).get_indexes("runs")}
    assert runs["uq_runs_run_id"]["unique"]


def test_migrations_match_tables(bare_engine):
    migrate(bare_engine)
    with bare_engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True, "compare_server_default": True})
        assert compare_metadata(context, metadata) == []


def test_migrate_works_from_any_working_directory(store_url, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    engine = make_engine(store_url)
    try:
        assert migrate(engine) == ["0001", "0002"]
    finally:
        engine.dispose()


def test_downgrade_to_base_and_up_again(bare_engine):
    from alembic import command

    from storage.db import _alembic_config

    migrate(bare_engine)
    cfg = _alembic_config()
    with bare_engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "base")
    assert set(inspect(bare_engine).get_table_names()) <= {"alembic_version"}
    assert migrate(bare_engine) == ["0001", "0002"]


MIGRATE_SCRIPT = """
import json, sys
from storage.db import make_engine, migrate
engine = make_engine(sys.argv[1])
print(json.dumps(migrate(engine)))
"""


def test_concurrent_starts_migrate_once(store_url):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", MIGRATE_SCRIPT, store_url], cwd=ROOT, env=env,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for _ in range(3)
    ]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))
    assert sorted(results) == [[], [], ["0001", "0002"]]
    engine = make_engine(store_url)
    try:
        assert schema_status(engine) == ("0002", "0002")
    finally:
        engine.dispose()


def test_alembic_command_line_works_from_elsewhere(store_url, tmp_path):
    env = {**os.environ, "PYTHONPATH": ""}
    env.pop("DATABASE_URL", None)
    run = subprocess.run(
        [sys.executable, "-m", "alembic", "-c", str(ROOT / "storage" / "alembic.ini"), "-x", f"url={store_url}",
         "upgrade", "head"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )
    assert run.returncode == 0, run.stderr
    engine = make_engine(store_url)
    try:
        assert schema_status(engine) == ("0002", "0002")
    finally:
        engine.dispose()


def test_store_from_a_newer_version_is_store_error(bare_engine):
    from sqlalchemy import text

    from core.errors import StoreError

    migrate(bare_engine)
    with bare_engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0099'"))
    with pytest.raises(StoreError, match="newer version") as caught:
        migrate(bare_engine)
    assert "'0099'" in str(caught.value)
    assert schema_status(bare_engine) == ("0099", "0002")
