"""Shared fakes of the Bitrix24 client tests: a webhook with a known secret, reply builders,
and the exceptions requests raises for a refused and for a dropped connection."""
from __future__ import annotations

import requests
from urllib3.exceptions import MaxRetryError, NewConnectionError, ProtocolError

SECRET = "k2ix9lshu8v4x2zq"
HOOK = f"https://hse.bitrix24.ru/rest/17/{SECRET}/"
OK_TIME = {"start": 1.0, "finish": 1.1, "duration": 0.1, "processing": 0.1,
           "date_start": "2024-10-23T18:18:09+03:00", "date_finish": "2024-10-23T18:18:09+03:00"}
QLE = {"error": "QUERY_LIMIT_EXCEEDED", "error_description": "Too many requests"}


def url(method: str) -> str:
    return f"{HOOK}{method}.json"


def ok(result, **extra) -> dict:
    return {"result": result, "time": OK_TIME, **extra}



def refused() -> requests.ConnectionError:
    """What requests raises when nothing listens: nothing was sent."""
    reason = NewConnectionError(None, "Failed to establish a new connection: [Errno 111] Connection refused")
    return requests.ConnectionError(MaxRetryError(None, f"/rest/17/{SECRET}/crm.deal.add.json", reason))


def dropped() -> requests.ConnectionError:
    """What requests raises when the server closes the connection after the request was sent."""
    return requests.ConnectionError(ProtocolError("Connection aborted.",
                                                  ConnectionResetError(104, "Connection reset by peer")))
