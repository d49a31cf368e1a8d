"""The local store: tables, the ledger, watermarks, run records, migrations and the run lock.

    engine = make_engine(database_url)          # StoreError if unreachable
    migrate(engine)                              # safe at every start
    with run_lock(engine, holder="sync"):        # LockHeldError if another run holds it
        ledger = Ledger(engine)
        ledger.mark_stale_runs_interrupted()
        run_id = ledger.start_run(command="sync", dry_run=False)
        ...
"""
from core.clock import utc_now
from storage.db import default_sqlite_url, make_engine, migrate, redact_url, schema_status
from storage.ledger import Ledger, PushedResult, StageCounts, content_hash
from storage.lock import run_lock
from storage.tables import AnswerRow, LockRow, PollRow, RunRow, WatermarkRow
from storage import inbox  # noqa: F401,E402  (registers the intake's inbox tables in the same metadata)

__all__ = [
    "AnswerRow",
    "Ledger",
    "LockRow",
    "PollRow",
    "PushedResult",
    "RunRow",
    "StageCounts",
    "WatermarkRow",
    "content_hash",
    "default_sqlite_url",
    "make_engine",
    "migrate",
    "redact_url",
    "run_lock",
    "schema_status",
    "utc_now",
]
