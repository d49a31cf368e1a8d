"""Engines, migrations and the schema check for the local store.

``make_engine(url)`` opens SQLite (``sqlite:///path``, the default) or Postgres
(``postgresql://…`` / ``postgres://…``, driven by psycopg 3) and checks that the store
answers, raising ``StoreError`` with what to check when it does not.
``migrate(engine)`` brings the schema to the newest Alembic revision; it is safe to
call at every start, also from several processes at once. ``schema_status(engine)``
tells a doctor check whether that has happened.

SQLite transactions start with ``BEGIN IMMEDIATE`` (take the write lock up front,
waiting up to the busy timeout) so that a read-then-write transaction can never fail
half-way with "database is locked"; pure reads ask for ``BEGIN DEFERRED`` through
``read_options``.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError as AlembicCommandError
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, SQLAlchemyError
from sqlalchemy.pool import StaticPool

from core.errors import StoreError
from core.redact import redact_url

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
SQLITE_BUSY_TIMEOUT_S = 30.0
PG_CONNECT_TIMEOUT_S = 10
SQLITE_FILENAME = "sync.sqlite3"

# Execution option read by the SQLite "begin" hook: "IMMEDIATE" (default) or "DEFERRED".
SQLITE_BEGIN = "storage_sqlite_begin"
read_options: dict[str, Any] = {SQLITE_BEGIN: "DEFERRED"}


def default_sqlite_url(data_dir: str | Path = "./data") -> str:
    """The default store: ``sqlite:///<data_dir>/sync.sqlite3`` (``sqlite:///./data/sync.sqlite3``)."""
    return f"sqlite:///{str(data_dir).rstrip('/')}/{SQLITE_FILENAME}"


def normalise_url(database_url: str) -> URL:
    """Parse a DATABASE_URL, mapping ``postgres://``/``postgresql://`` to psycopg 3."""
    raw = (database_url or "").strip()
    try:
        url = make_url(raw)
    except (ArgumentError, ValueError):
        raise StoreError(
            f"DATABASE_URL {redact_url(raw)!r} is not a database URL → use sqlite:///path/to/sync.sqlite3 "
            "or postgresql://user:password@host:5432/dbname"
        ) from None
    backend, _, driver = url.drivername.partition("+")
    if backend in ("postgres", "postgresql"):
        if driver not in ("", "psycopg"):
            raise StoreError(
                f"DATABASE_URL {redact_url(url)!r} asks for the driver {driver!r}; only psycopg 3 is installed "
                "→ write it as postgresql://…"
            )
        return url.set(drivername="postgresql+psycopg")
    if backend == "sqlite" and driver in ("", "pysqlite"):
        return url
    raise StoreError(
        f"DATABASE_URL {redact_url(url)!r} names a database this job does not support ({url.drivername}) "
        "→ use sqlite:///path/to/sync.sqlite3 or postgresql://user:password@host:5432/dbname"
    )


def sqlite_path(url: URL) -> Path | None:
    """The database file of a SQLite URL, or None for an in-memory database."""
    if url.database in (None, "", ":memory:") or str(url.database).startswith("file::memory:"):
        return None
    return Path(url.database)


def _json_dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def make_engine(database_url: str, *, check: bool = True, **engine_kwargs: Any) -> Engine:
    """Open the store at ``database_url`` and, with ``check``, prove it answers.

    SQLite: the parent directory is created; every connection uses WAL, a busy
    timeout and foreign keys. Postgres: psycopg 3 with a connect timeout and
    pre-ping. Raises ``StoreError`` (password redacted) when the store cannot be
    reached, saying what to check.
    """
    url = normalise_url(database_url)
    if url.get_backend_name() == "sqlite":
        engine = _sqlite_engine(url, engine_kwargs)
    else:
        query = dict(url.query)
        connect_args: dict[str, Any] = {}
        if "connect_timeout" not in query:
            connect_args["connect_timeout"] = PG_CONNECT_TIMEOUT_S
        if "application_name" not in query:
            connect_args["application_name"] = "survey-sync"
        engine_kwargs.setdefault("pool_pre_ping", True)
        engine = create_engine(url, connect_args=connect_args, json_serializer=_json_dumps, **engine_kwargs)
    if check:
        try:
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
                conn.rollback()
        except SQLAlchemyError as exc:
            engine.dispose()
            raise unreachable_error(url, exc, shown=redact_url(database_url)) from None
    return engine


def _sqlite_engine(url: URL, engine_kwargs: dict[str, Any]) -> Engine:
    path = sqlite_path(url)
    connect_args: dict[str, Any] = {"timeout": SQLITE_BUSY_TIMEOUT_S}
    if path is None:
        # One shared connection, or every checkout would see its own empty database.
        engine_kwargs.setdefault("poolclass", StaticPool)
        connect_args["check_same_thread"] = False
    else:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(
                f"cannot create the directory {path.parent} for the SQLite store ({exc.strerror}) "
                "→ check the path in DATABASE_URL and that this user may write there"
            ) from None
    engine = create_engine(url, connect_args=connect_args, json_serializer=_json_dumps, **engine_kwargs)
    in_memory = path is None

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" hook below issue BEGIN itself (pysqlite's own
        # implicit transactions would defer the write lock and skip DDL).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
            if not in_memory:
                cursor.execute("PRAGMA journal_mode = WAL")
                cursor.execute("PRAGMA synchronous = NORMAL")
            cursor.execute("PRAGMA foreign_keys = ON")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        mode = conn.get_execution_options().get(SQLITE_BEGIN, "IMMEDIATE")
        conn.exec_driver_sql(f"BEGIN {mode}")

    return engine


def unreachable_error(url: URL, exc: BaseException, *, shown: str | None = None) -> StoreError:
    """A ``StoreError`` saying which store could not be used and what to check (``shown``: the URL as given)."""
    reason = _reason(exc, url)
    if url.get_backend_name() == "sqlite":
        where = sqlite_path(url) or ":memory:"
        return StoreError(
            f"cannot open the SQLite store at {where}: {reason} → check that the path in DATABASE_URL is right, "
            "that this user may read and write the file and its directory, and that the disk is not full"
        )
    return StoreError(
        f"cannot connect to the Postgres store at {shown or redact_url(url)}: {reason} → check that the server is "
        "running and reachable from here, and that DATABASE_URL is spelled right (user, password, host, "
        "port, database name)"
    )


def _reason(exc: BaseException, url: URL) -> str:
    original = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    reason = " ".join(str(original).split()) or type(original).__name__
    if url.password:
        reason = reason.replace(str(url.password), "***")
    return reason


@contextmanager
def store_errors(engine: Engine, action: str) -> Iterator[None]:
    """Turn database failures into ``StoreError`` naming the store and what to do."""
    try:
        yield
    except DBAPIError as exc:
        message = str(exc.orig if exc.orig is not None else exc)
        if _looks_unmigrated(message):
            raise StoreError(
                f"the store at {redact_url(engine.url)} has no tables for {action} ({_reason(exc, engine.url)}) "
                "→ it is not migrated: run the job once (it migrates at start) or call storage.migrate()"
            ) from None
        if "database is locked" in message:
            raise StoreError(
                f"the SQLite store at {sqlite_path(engine.url)} stayed locked by another process for "
                f"{SQLITE_BUSY_TIMEOUT_S:.0f} s while {action} → check what else has the file open "
                "(another sync, a long-running query in a shell) and try again"
            ) from None
        if exc.connection_invalidated or _looks_unreachable(exc):
            raise unreachable_error(engine.url, exc) from None
        raise StoreError(
            f"the store at {redact_url(engine.url)} failed while {action}: {_reason(exc, engine.url)}"
        ) from exc


def _looks_unmigrated(message: str) -> bool:
    return "no such table" in message or ("relation" in message and "does not exist" in message)


def _looks_unreachable(exc: DBAPIError) -> bool:
    name = type(exc.orig).__name__ if exc.orig is not None else ""
    message = str(exc.orig).lower()
    return name in ("OperationalError", "InterfaceError") and any(
        word in message for word in ("connection", "unable to open", "readonly", "disk", "server")
    )


def advisory_key(conn: Connection, purpose: str) -> int:
    """A Postgres advisory-lock key for ``purpose`` in this connection's schema.

    The schema is part of the key so that stores living in different schemas of one
    database (as the tests do) do not lock each other out.
    """
    schema = conn.execute(text("SELECT current_schema()")).scalar() or ""
    digest = hashlib.sha256(f"survey-sync:{purpose}:{schema}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _alembic_config() -> Config:
    cfg = Config()
    # ConfigParser interpolation: a literal % in the path must be doubled.
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    return cfg


def migrate(engine: Engine) -> list[str]:
    """Apply the Alembic migrations up to head; return the revision ids applied (oldest first).

    Runs in one transaction that first takes the migration lock (a transaction-scoped
    advisory lock on Postgres; the SQLite write lock via BEGIN IMMEDIATE), so when
    several processes start at once one migrates and the others then find nothing to do.
    """
    cfg = _alembic_config()
    applied: list[str] = []
    cfg.attributes["applied"] = applied
    with store_errors(engine, "migrating"):
        with engine.connect() as conn:
            with conn.begin():
                if conn.dialect.name == "postgresql":
                    conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": advisory_key(conn, "migrate")})
                cfg.attributes["connection"] = conn
                try:
                    command.upgrade(cfg, "head")
                except AlembicCommandError as exc:
                    current = MigrationContext.configure(conn).get_current_revision()
                    raise StoreError(
                        f"cannot migrate the store at {redact_url(engine.url)}: it is at schema revision "
                        f"{current!r}, which this version of the job does not know ({exc}) → it was probably "
                        "migrated by a newer version: run that version, or restore a backup made for this one"
                    ) from None
    return applied


def head_revision() -> str | None:
    """The newest revision the code knows."""
    return ScriptDirectory.from_config(_alembic_config()).get_current_head()


def schema_status(engine: Engine) -> tuple[str | None, str | None]:
    """``(current_rev, head_rev)``: the store is up to date when they are equal (None = not migrated)."""
    with store_errors(engine, "reading the schema version"):
        with engine.connect() as conn:
            conn.execution_options(**read_options)
            with conn.begin():
                current = MigrationContext.configure(conn).get_current_revision()
    return current, head_revision()
