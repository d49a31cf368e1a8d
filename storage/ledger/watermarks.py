"""Named watermarks: how far each incremental read got, moved only forward unless asked otherwise."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection

from core.clock import utc_now
from storage.ledger.base import LedgerBase, watermarks_table as _watermarks
from storage.ledger.values import aware_arg


class WatermarkLedger(LedgerBase):
    """The ledger's watermarks (mixed into ``Ledger``)."""

    def get_watermark(self, name: str) -> datetime | None:
        with self._read("reading a watermark") as conn:
            return conn.execute(select(_watermarks.c.value).where(_watermarks.c.name == name)).scalar()

    def set_watermark(self, name: str, value: datetime, *, allow_backwards: bool = False) -> datetime:
        """Move a watermark (forward only, unless ``allow_backwards``); returns the value now in force."""
        value = aware_arg(value, "watermark value")
        with self._write("moving a watermark") as conn:
            return advance_watermark(conn, name, value, now=utc_now(), allow_backwards=allow_backwards)

    def watermarks(self) -> dict[str, datetime]:
        with self._read("reading watermarks") as conn:
            return {
                name: value
                for name, value in conn.execute(
                    select(_watermarks.c.name, _watermarks.c.value).order_by(_watermarks.c.name)
                )
            }


def advance_watermark(
    conn: Connection, name: str, value: datetime, *, now: datetime, allow_backwards: bool = False
) -> datetime:
    """Move ``name`` to ``value`` inside the caller's transaction; returns the value now in force."""
    w = _watermarks
    # Create-if-missing then a guarded UPDATE: atomic on both backends even when two
    # writers race (the guard is re-checked against the row each UPDATE finally sees).
    dialect_insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    conn.execute(
        dialect_insert(w).values(name=name, value=value, updated_at=now).on_conflict_do_nothing(index_elements=["name"])
    )
    guard = w.c.value != value if allow_backwards else w.c.value < value
    conn.execute(update(w).where(w.c.name == name, guard).values(value=value, updated_at=now))
    return conn.execute(select(w.c.value).where(w.c.name == name)).scalar_one()


def watermark_arg(watermark: tuple[str, datetime] | None) -> tuple[str, datetime] | None:
    """Check a ``(name, aware datetime)`` watermark argument; ValueError says what is wrong."""
    if watermark is None:
        return None
    name, value = watermark
    if not name:
        raise ValueError("a watermark needs a name")
    return str(name), aware_arg(value, f"watermark {name!r}")


