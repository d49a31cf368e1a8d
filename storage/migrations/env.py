"""Alembic environment for the store.

Normally run through ``storage.db.migrate(engine)``, which hands over an open
connection inside a transaction (``config.attributes["connection"]``). For
developers, ``alembic -c storage/alembic.ini upgrade head`` (or ``revision
--autogenerate -m "..."``) works too: the URL comes from ``-x url=…``, else
``DATABASE_URL``, else the default SQLite file.
"""
from __future__ import annotations

import os
from typing import Any

from alembic import context

import storage.inbox  # noqa: F401  (the intake's inbox tables, in the same metadata)
from storage import tables

config = context.config
target_metadata = tables.metadata

if config.config_file_name is not None and config.attributes.get("connection") is None:
    # Only the developer's command line configures logging; the job has its own.
    from logging.config import fileConfig

    fileConfig(config.config_file_name, disable_existing_loggers=False)


def _record_applied(*, ctx: Any, step: Any, heads: Any, run_args: Any) -> None:
    applied = config.attributes.get("applied")
    if applied is not None and step.is_upgrade:
        applied.append(step.up_revision_id)


def _configure_and_run(connection: Any) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things: later migrations use batch mode there.
        render_as_batch=connection.dialect.name == "sqlite",
        # SQLite's DDL is transactional too (our connections issue BEGIN themselves).
        transactional_ddl=True,
        compare_type=True,
        on_version_apply=_record_applied,
    )
    with context.begin_transaction():
        context.run_migrations()


def _url() -> str:
    from storage.db import default_sqlite_url

    return context.get_x_argument(as_dictionary=True).get("url") or os.environ.get("DATABASE_URL") or default_sqlite_url()


def run_migrations_offline() -> None:
    from storage.db import normalise_url

    context.configure(url=normalise_url(_url()), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure_and_run(connection)
        return
    from storage.db import make_engine

    engine = make_engine(_url())
    try:
        with engine.connect() as connection:
            with connection.begin():
                _configure_and_run(connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
