"""Test helpers for anything that needs a real store.

``fresh_database_url(base_url)`` yields the URL of an isolated, empty store and
removes it afterwards:

* Postgres: a new schema ``sync_test_<random>`` in the database of ``base_url``; the
  URL sets ``search_path`` to that schema alone (``options=-csearch_path=…``), so
  tables, ``alembic_version`` and the run lock's key (which includes the schema) are
  private to it, and nothing else in the database is visible. It also carries an
  ``application_name`` naming the schema, so cleanup can end sessions a test left
  open before ``DROP SCHEMA … CASCADE``.
* SQLite: a file in a new temporary directory.

Typical ``conftest.py``::

    @pytest.fixture
    def store_url(tmp_path):
        base = os.environ.get("TEST_DATABASE_URL")
        if not base:
            pytest.skip("TEST_DATABASE_URL is not set")
        with fresh_database_url(base) as url:
            yield url
"""
from __future__ import annotations

import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from storage.db import make_engine, normalise_url

__all__ = ["fresh_database_url", "schema_of"]

SCHEMA_PREFIX = "sync_test_"


@contextmanager
def fresh_database_url(base_url: str) -> Iterator[str]:
    """Yield a URL of an isolated, empty store next to ``base_url``; drop it on exit."""
    if normalise_url(base_url).get_backend_name() == "sqlite":
        with tempfile.TemporaryDirectory(prefix="sync-store-") as directory:
            yield f"sqlite:///{directory}/sync.sqlite3"
        return

    schema = SCHEMA_PREFIX + uuid.uuid4().hex[:16]
    url = make_url(base_url.strip())
    options = " ".join(filter(None, [url.query.get("options", ""), f"-csearch_path={schema}"]))
    fresh = url.update_query_dict({"options": options, "application_name": schema})
    admin = make_engine(base_url, poolclass=NullPool)
    try:
        with admin.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT")
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        try:
            yield fresh.render_as_string(hide_password=False)
        finally:
            with admin.connect() as conn:
                conn.execution_options(isolation_level="AUTOCOMMIT")
                # A session the test leaked (idle in a transaction, holding a lock)
                # would block the DROP: end them; they are the test's own.
                conn.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE application_name = :name AND pid <> pg_backend_pid()"
                    ),
                    {"name": schema},
                )
                conn.execute(text("SET lock_timeout = '30s'"))
                conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    finally:
        admin.dispose()


def schema_of(database_url: str) -> str | None:
    """The schema a URL from ``fresh_database_url`` points into (None for SQLite or a plain URL)."""
    options = make_url(database_url).query.get("options", "")
    if isinstance(options, tuple):
        options = " ".join(options)
    for part in str(options).split():
        if part.startswith("-csearch_path="):
            return part.split("=", 1)[1]
    return None
