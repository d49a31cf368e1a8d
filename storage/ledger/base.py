"""What every part of the ledger shares: the engine, short transactions and detached ORM reads."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session

from storage.db import read_options, store_errors
from storage.tables import AnswerRow, PollRow, RunRow, WatermarkRow

IN_CHUNK = 1000  # ids per IN (...) list: well below SQLite's and Postgres' bind limits

answers_table = AnswerRow.__table__
polls_table = PollRow.__table__
watermarks_table = WatermarkRow.__table__
runs_table = RunRow.__table__
T = TypeVar("T")


class LedgerBase:
    """The engine and the transaction helpers the ledger's parts are built on."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    @property
    def engine(self) -> Engine:
        return self._engine

    @contextmanager
    def _write(self, action: str) -> Iterator[Connection]:
        with store_errors(self._engine, action), self._engine.begin() as conn:
            yield conn

    @contextmanager
    def _read(self, action: str) -> Iterator[Connection]:
        with store_errors(self._engine, action), self._engine.connect() as conn:
            conn.execution_options(**read_options)
            with conn.begin():
                yield conn

    def _orm_select(self, model: type[T], stmt: Any, action: str) -> list[T]:
        # ORM loading fills the objects directly (validating each SQLModel table
        # object through its constructor costs ~20x more); closing the session
        # detaches them, so callers get plain values with every column loaded.
        with self._read(action) as conn, Session(bind=conn, expire_on_commit=False) as session:
            rows = list(session.scalars(stmt))
            session.expunge_all()
        return rows

