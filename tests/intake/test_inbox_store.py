"""The inbox's tables as migration 0002 creates them match storage/inbox.py."""
from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

import storage.inbox  # noqa: F401 - registers the inbox tables on the shared metadata
from storage.tables import metadata


def test_migration_0002_matches_the_inbox_tables(engine):
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True, "compare_server_default": True})
        diffs = compare_metadata(context, metadata)
    assert [d for d in diffs if "inbox" in repr(d)] == []
