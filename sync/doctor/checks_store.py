"""The store check: DATABASE_URL answers and is migrated to the code's revision (nothing is created)."""
from __future__ import annotations

import os
from typing import Any

from core.errors import StoreError
from sync.doctor.checklist import SYSTEM, Checklist, one_line


def store_check(ck: Checklist, settings: Any) -> None:
    """The store answers and is at the code's schema revision; a missing SQLite file is not created."""
    name, t = "store", ck.t
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
                    ck.fail(name, t("store.cannot_create", path=path, ancestor=ancestor), t("store.fix_create"),
                            SYSTEM)
                    return
                ck.ok(name, t("store.fresh", path=path))
                return
        engine = make_engine(settings.database_url)
        try:
            current, head = schema_status(engine)
        finally:
            engine.dispose()
    except StoreError as exc:
        ck.fail(name, one_line(exc), t("store.fix_server"), SYSTEM)
        return
    if current is None:
        # An empty database is a fresh install too: every run migrates at start.
        ck.ok(name, t("store.empty", shown=shown, head=head))
    elif current != head:
        ck.fail(name, t("store.behind", shown=shown, current=current, head=head), t("store.fix_behind"), SYSTEM)
    else:
        ck.ok(name, t("store.ok", shown=shown, current=current))
