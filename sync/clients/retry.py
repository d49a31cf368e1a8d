"""The one retry policy of both HTTP clients, built on tenacity.

Rules (stamina's discipline, STYLE.md §9):

* **Named failures only.** An attempt asks for another try by raising ``AttemptFailed``;
  every other exception (fatal, command, ambiguous write, a bug) passes straight
  through. Each client decides *what* is retriable in its own classification table.
* **Exponential backoff with full jitter**: before attempt ``n + 1`` wait uniform in
  ``[0, min(cap_s, base_s * 2**(n-1))]`` (``rng`` only needs ``uniform``).
* **The server's hint wins**: ``AttemptFailed.retry_after`` (from ``Retry-After``, or a
  Bitrix24 ``operating_reset_at``) is waited exactly, without jitter.
* **Capped twice**: at most ``max_attempts`` attempts, and never a wait that would end
  past ``max_wait_s`` after the first attempt started (a hint longer than the budget
  gives up at once instead of sleeping and failing anyway).
* **Each retry is logged** (loguru, redacted): what, attempt n/max, why, the wait.
* **No real sleeping in tests**: ``sleep`` and ``clock`` are injected.

When the policy gives up it raises whatever the caller's ``give_up`` returns for a
``GiveUp`` (the last failure and a one-line reason), so each client keeps its own
error type and operator message.
"""
from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, TypeVar

from loguru import logger
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt
from tenacity.stop import stop_base
from tenacity.wait import wait_base

from core.redact import redact

T = TypeVar("T")


class _Uniform(Protocol):
    def uniform(self, a: float, b: float) -> float: ...


class AttemptFailed(Exception):
    """Raised by one attempt whose failure the client named retriable; the policy waits and tries again.

    ``reason`` is shown in logs and messages (redacted again on the way out);
    ``retry_after`` is the server's wait hint in seconds; ``detail`` is the client's
    own description of the failure, handed back in ``GiveUp``.
    """

    def __init__(self, reason: str, *, retry_after: float | None = None, detail: Any = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = None if retry_after is None else max(0.0, float(retry_after))
        self.detail = detail


@dataclass(frozen=True)
class GiveUp:
    """Why the policy stopped: the last ``failure``, how many ``attempts`` ran, and ``summary`` in words."""

    failure: AttemptFailed
    attempts: int
    summary: str


@dataclass
class RetryPolicy:
    """How often and how long to retry; ``run()`` applies it to one operation."""

    max_attempts: int = 6
    max_wait_s: float = 300.0
    base_s: float = 1.0
    cap_s: float = 60.0
    rng: _Uniform = field(default_factory=random.Random)
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {self.max_attempts}")
        if self.max_wait_s < 0:
            raise ValueError(f"max_wait_s must be >= 0, got {self.max_wait_s}")
        if self.base_s < 0 or self.cap_s < 0:
            raise ValueError(f"backoff base and cap must be >= 0, got {self.base_s}, {self.cap_s}")

    def backoff(self, attempt: int) -> float:
        """The jittered wait after failed attempt ``attempt`` (1-based), when the server gave no hint."""
        ceiling = min(self.cap_s, self.base_s * (2 ** max(0, attempt - 1)))
        return max(0.0, float(self.rng.uniform(0.0, ceiling)))

    def wait_after(self, attempt: int, failure: AttemptFailed) -> float:
        """The wait after failed attempt ``attempt``: the server's hint if any, else backoff."""
        if failure.retry_after is not None:
            return failure.retry_after
        return self.backoff(attempt)

    def run(self, attempt: Callable[[], T], *, what: str, give_up: Callable[[GiveUp], BaseException],
            on_retry: Callable[[float], None] | None = None) -> T:
        """Call ``attempt`` until it returns, raises something other than ``AttemptFailed``, or the caps hit.

        ``what`` names the operation in the retry log line ("Bitrix24 crm.deal.list");
        ``on_retry(wait)`` runs before each sleep (counters). Raises ``give_up(...)``
        when out of attempts or time. Thread-safe: each run builds its own controller.
        """
        started = self.clock()

        def elapsed() -> float:
            return self.clock() - started

        def log_and_count(state: RetryCallState) -> None:
            failure = _failure_of(state)
            wait = state.upcoming_sleep
            logger.warning("{}: attempt {}/{} failed: {}; retrying in {:.2f}s", what, state.attempt_number,
                           self.max_attempts, redact(failure.reason), wait)
            if on_retry is not None:
                on_retry(wait)

        def stop_with_error(state: RetryCallState) -> Any:
            failure = _failure_of(state)
            attempts = state.attempt_number
            if attempts >= self.max_attempts:
                summary = f"gave up after {attempts} attempts"
            else:
                summary = (f"gave up after {attempts} attempts: waiting {state.upcoming_sleep:.1f}s more would "
                           f"exceed the {self.max_wait_s:.0f}s retry budget")
            # Raised here, outside any ``except``, so no transport exception is chained to it.
            raise give_up(GiveUp(failure=failure, attempts=attempts, summary=summary))

        controller = Retrying(
            retry=retry_if_exception_type(AttemptFailed),
            wait=_HintOrBackoff(self),
            stop=stop_after_attempt(self.max_attempts) | _PastBudget(self.max_wait_s, elapsed),
            sleep=lambda seconds: self.sleep(float(seconds)),
            before_sleep=log_and_count,
            retry_error_callback=stop_with_error,
        )
        return controller(attempt)


def _failure_of(state: RetryCallState) -> AttemptFailed:
    exc = state.outcome.exception() if state.outcome is not None else None
    assert isinstance(exc, AttemptFailed), "the policy only retries AttemptFailed"
    return exc


class _HintOrBackoff(wait_base):
    def __init__(self, policy: RetryPolicy) -> None:
        self.policy = policy

    def __call__(self, retry_state: RetryCallState) -> float:
        return self.policy.wait_after(retry_state.attempt_number, _failure_of(retry_state))


class _PastBudget(stop_base):
    """Stop when the coming wait would end past the total-time budget (tenacity runs wait before stop)."""

    def __init__(self, budget_s: float, elapsed: Callable[[], float]) -> None:
        self.budget_s = budget_s
        self.elapsed = elapsed

    def __call__(self, retry_state: RetryCallState) -> bool:
        return self.elapsed() + retry_state.upcoming_sleep > self.budget_s
