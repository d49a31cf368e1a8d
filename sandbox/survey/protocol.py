"""What the emulator's HTTP side shares: paths, limits, fault kinds, error responses."""
from __future__ import annotations

from urllib.parse import parse_qs

from sandbox.survey.dataset import dump_json

API_PREFIX = "/api/v1"
ADMIN_PREFIX = "/_admin"

# Faults drawn before a request is authenticated, as a gateway in front of the API would.
TRANSPORT_FAULTS = ("drop", "slow", "http_502", "http_503", "http_504", "http_429")
# Drawn only for a request that carries a cursor: that cursor is then treated as expired.
CURSOR_FAULTS = ("cursor_expired",)
FAULT_KINDS = TRANSPORT_FAULTS + CURSOR_FAULTS

# The OpenAPI operationIds; a fault script entry's "method" names one of them.
OPERATIONS = ("listPolls", "listAnswers", "getAnswer")
POLLS_LIMIT_MAX = 200
ANSWERS_LIMIT_MAX = 500
DEFAULT_LIMIT = 100


class ApiError(Exception):
    """Raised to answer an error response of the API (or of the admin endpoints)."""

    def __init__(self, status: int, error: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.error, self.message = status, error, message
        self.headers = headers or {}

    def body(self) -> bytes:
        return dump_json({"error": self.error, "message": self.message})


def query_params(query: str) -> dict[str, str]:
    """The query string as a dict; 400 on bad percent-encoding or a repeated parameter."""
    try:
        parsed = parse_qs(query, keep_blank_values=True, errors="strict")
    except (UnicodeDecodeError, ValueError):
        raise ApiError(400, "bad_request", "query string is not valid UTF-8 percent-encoding") from None
    repeated = sorted(name for name, values in parsed.items() if len(values) > 1)
    if repeated:
        raise ApiError(400, "bad_request", f"query parameters given more than once: {', '.join(repeated)}")
    return {name: values[0] for name, values in parsed.items()}
