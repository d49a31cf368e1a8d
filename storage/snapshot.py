"""A private copy of the store, for a dry-run.

A dry-run is the real run stopped before the CRM is written: it pulls, stages,
plans and records exactly as a real run does, only into a copy of the store that is
thrown away afterwards. So the preview can never drift from what a run would do, and
the real store is never written (nor locked) by it.
"""
from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from loguru import logger
from sqlalchemy import insert, select
from sqlalchemy.engine import Engine
from sqlmodel import SQLModel

import storage.tables  # noqa: F401  (registers the job's tables in SQLModel.metadata)
from storage.db import make_engine, migrate, store_errors

COPY_ROWS = 2000


@contextmanager
def snapshot_of(engine: Engine) -> Iterator[Engine]:
    """Yield an engine on a throw-away SQLite copy of ``engine``'s store (SQLite or Postgres)."""
    with tempfile.TemporaryDirectory(prefix="sync-dry-run-") as tmp:
        copy = make_engine(f"sqlite:///{Path(tmp) / 'snapshot.sqlite3'}")
        try:
            with store_errors(engine, "copy the store for the dry-run"):
                if engine.dialect.name == "sqlite":
                    _backup_sqlite(engine, copy)
                else:
                    migrate(copy)
                    _copy_rows(engine, copy)
            migrate(copy)
            yield copy
        finally:
            copy.dispose()


def _backup_sqlite(source: Engine, target: Engine) -> None:
    # SQLite's online backup: one consistent copy at C speed, without holding the write lock.
    src, dst = source.raw_connection(), target.raw_connection()
    try:
        src.driver_connection.backup(dst.driver_connection)
    finally:
        dst.close()
        src.close()


def _copy_rows(source: Engine, target: Engine) -> None:
    copied = 0
    with source.connect() as read, target.begin() as write:
        for table in SQLModel.metadata.sorted_tables:
            # The intake's inbox is read from the real store; the copy needs only the job's tables.
            if table.name.startswith("inbox_") or not source.dialect.has_table(read, table.name):
                continue
            rows = read.execution_options(yield_per=COPY_ROWS).execute(select(table)).mappings()
            batch = []
            for row in rows:
                batch.append(dict(row))
                if len(batch) >= COPY_ROWS:
                    write.execute(insert(table), batch)
                    copied += len(batch)
                    batch = []
            if batch:
                write.execute(insert(table), batch)
                copied += len(batch)
    logger.debug("dry-run: copied {} rows of the store", copied)
