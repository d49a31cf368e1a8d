"""The store check: DATABASE_URL answers and is migrated to the code's revision (nothing is created)."""
from __future__ import annotations

import os
from typing import Any

from core.errors import StoreError
from sync.doctor.checklist import SYSTEM, Checklist, one_line


def store_check(ck: Checklist, settings: Any) -> None:
    """The store answers and is at the code's schema revision; a missing SQLite file is not created."""
    name = "store"
    try:
        from storage.db import make_engine, normalise_url, redact_url, schema_status, sqlite_path
        url = normalise_url(settings.database_url)
        shown = redact_url(url)
        if url.get_backend_name() == "sqlite":
            path = sqlite_path(url)
            if path is not None and not path.exists():
                # A fresh install: nothing is wrong, the first run creates it. Refused only if it cannot be.
                ancestor = path.parent
                while not ancestor.exists() and ancestor != ancestor.parent:
                    ancestor = ancestor.parent
                if not ancestor.is_dir() or not os.access(ancestor, os.W_OK | os.X_OK):
                    ck.fail(name, f"no store yet at {path}, and it cannot be created: {ancestor} is not a "
                                  f"writable directory",
                            "point DATABASE_URL at a writable place, or fix the directory's permissions", SYSTEM)
                    return
                ck.ok(name, f"no store yet at {path}: the first run (or `python cli.py status`) creates it "
                            f"(if one should exist already, check DATABASE_URL and the working directory)")
                return
        engine = make_engine(settings.database_url)
        try:
            current, head = schema_status(engine)
        finally:
            engine.dispose()
    except StoreError as exc:
        ck.fail(name, one_line(exc), "check DATABASE_URL and that the database server is up", SYSTEM)
        return
    if current is None:
        # An empty database is a fresh install too: every run migrates at start.
        ck.ok(name, f"{shown} answers and has no schema yet: the first run (or `python cli.py status`) creates it "
                    f"at revision {head}")
    elif current != head:
        ck.fail(name, f"{shown} is at schema revision {current}, the code expects {head}",
                "run `python cli.py status` to migrate it; if the store is newer than the code, deploy the newer "
                "code", SYSTEM)
    else:
        ck.ok(name, f"{shown} answers, schema at revision {current}")
