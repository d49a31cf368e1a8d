"""Opening the store: URLs, SQLite settings, and errors that say what to check."""
from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from storage.db import default_sqlite_url, make_engine, normalise_url, redact_url
from core.errors import StoreError


def test_default_sqlite_url():
    assert default_sqlite_url() == "sqlite:///./data/sync.sqlite3"
    assert default_sqlite_url("/var/lib/sync/") == "sqlite:////var/lib/sync/sync.sqlite3"


@pytest.mark.parametrize(
    "url, driver",
    [
        ("postgres://u:p@db:5432/sync", "postgresql+psycopg"),
        ("postgresql://u:p@db/sync", "postgresql+psycopg"),
        ("postgresql+psycopg://u:p@db/sync", "postgresql+psycopg"),
        ("sqlite:///data/x.sqlite3", "sqlite"),
    ],
)
def test_urls_map_to_the_installed_drivers(url, driver):
    assert normalise_url(url).drivername == driver


@pytest.mark.parametrize("url", ["mysql://u:secret@db/sync", "not a url", "postgresql+psycopg2://u:secret@db/x"])
def test_unsupported_url_is_store_error_without_password(url):
    with pytest.raises(StoreError) as caught:
        normalise_url(url)
    assert "secret" not in str(caught.value)
    assert "sqlite:///" in str(caught.value) or "postgresql://" in str(caught.value)


def test_redact_url_hides_the_password():
    assert redact_url("postgresql://sync:s3cr%40t@db:5432/sync") == "postgresql://sync:***@db:5432/sync"
    assert "hunter2" not in redact_url("weird://user:hunter2@[host")


def test_sqlite_creates_parent_dirs_and_uses_wal_busy_timeout_and_foreign_keys(tmp_path: Path):
    db = tmp_path / "deep" / "er" / "sync.sqlite3"
    engine = make_engine(f"sqlite:///{db}")
    try:
        assert db.parent.is_dir()
        with engine.connect() as conn:
            assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
            assert conn.execute(text("PRAGMA busy_timeout")).scalar() >= 5000
            assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
    finally:
        engine.dispose()


def test_relative_sqlite_path_is_relative_to_the_working_directory(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    engine = make_engine(default_sqlite_url())
    engine.dispose()
    assert (tmp_path / "data" / "sync.sqlite3").exists()


def test_in_memory_sqlite_is_one_shared_database():
    engine = make_engine("sqlite://")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (x INTEGER)"))
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM t")).scalar() == 0


def test_unusable_sqlite_path_is_store_error_naming_the_path(tmp_path: Path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(StoreError, match="check the path in DATABASE_URL") as caught:
        make_engine(f"sqlite:///{blocker}/sub/sync.sqlite3")
    assert str(blocker) in str(caught.value)


def test_sqlite_file_that_is_a_directory_is_store_error(tmp_path: Path):
    (tmp_path / "sync.sqlite3").mkdir()
    with pytest.raises(StoreError, match="cannot open the SQLite store") as caught:
        make_engine(f"sqlite:///{tmp_path}/sync.sqlite3")
    assert "check that the path in DATABASE_URL is right" in str(caught.value)


def test_unreachable_postgres_is_store_error_without_password():
    # Port 1 on loopback: nothing listens, the connection is refused at once.
    url = "postgresql://sync:VerySecret123@127.0.0.1:1/sync?connect_timeout=3"
    with pytest.raises(StoreError) as caught:
        make_engine(url)
    message = str(caught.value)
    assert "VerySecret123" not in message
    assert "postgresql://sync:***@127.0.0.1:1/sync" in message
    assert "server is running and reachable" in message and "DATABASE_URL is spelled right" in message
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_wrong_postgres_database_is_store_error(store_url):
    if not store_url.startswith("postgres"):
        pytest.skip("Postgres only")
    from sqlalchemy.engine import make_url

    url = make_url(store_url).set(database="no_such_database_here", password="PassW0rd!")
    with pytest.raises(StoreError, match="no_such_database_here") as caught:
        make_engine(url.render_as_string(hide_password=False))
    assert "PassW0rd!" not in str(caught.value)
