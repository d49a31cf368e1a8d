"""The project's exceptions: one root, branches by what the caller should do.

    SyncError
    ├── ConfigError            a setting or the mapping is missing or malformed: fix it, exit 2
    ├── UpstreamError          the survey API or Bitrix24 did not give a usable answer
    │   ├── RetriableError     try again later (rate limit, 5xx, timeout, reset)
    │   │   └── AmbiguousWriteError   a write may or may not have been applied: reconcile by keys
    │   ├── FatalError         retrying will not help (bad credentials, missing scope, unknown method)
    │   ├── NotFoundError      the record is gone (deleted poll/answer): skip it, go on
    │   └── CommandError       Bitrix24 refused one method call's input (400 with an error code)
    ├── LockHeldError          another run holds the lock: exit 4
    └── StoreError             the local store is unreachable or not migrated

Bad answers are not exceptions: they are ``Problem`` values in the plan and rows
needing attention in the ledger.
"""
from __future__ import annotations


class SyncError(Exception):
    """Root of every error this project raises on purpose."""


class ConfigError(SyncError):
    """Raised when a setting or the field mapping is missing or malformed."""


class UpstreamError(SyncError):
    """Raised when an external system (survey API, Bitrix24) fails a request."""

    def __init__(self, message: str, *, system: str = "", code: str = "", status: int | None = None) -> None:
        super().__init__(message)
        self.system = system
        self.code = code
        self.status = status


class RetriableError(UpstreamError):
    """Raised for failures that a later attempt can get past (rate limit, 5xx, timeout)."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class AmbiguousWriteError(RetriableError):
    """Raised when a write request failed in a way that may have applied it (timeout, reset, 5xx)."""


class FatalError(UpstreamError):
    """Raised for failures no retry will fix: credentials refused, missing scope, unknown method."""


class LockHeldError(SyncError):
    """Raised when another run holds the store's lock."""

    def __init__(self, message: str, *, holder: str = "", since: str = "") -> None:
        super().__init__(message)
        self.holder = holder
        self.since = since


class StoreError(SyncError):
    """Raised when the local store is unreachable, corrupt or not migrated."""


class NotFoundError(UpstreamError):
    """Raised when the requested record does not exist (a deleted poll or answer)."""


class CommandError(UpstreamError):
    """Raised when Bitrix24 refuses a single (non-batch) call's input, e.g. 'Not found'."""

    def __init__(self, message: str, *, description: str = "", **kwargs) -> None:
        super().__init__(message, **kwargs)
        self.description = description
