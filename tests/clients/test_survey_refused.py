"""A survey API that nobody listens on is reported at once, in one line, not after a minute of retries."""
from __future__ import annotations

import socket
import time

import pytest

from core.errors import RetriableError
from sync.clients.survey import SurveyClient


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_closed_port_fails_at_once_naming_the_setting():
    slept: list[float] = []
    client = SurveyClient(f"http://127.0.0.1:{_closed_port()}/api/v1", "token", sleep=slept.append)
    started = time.monotonic()
    with pytest.raises(RetriableError) as raised:
        list(client.iter_polls(None))
    assert time.monotonic() - started < 2 and slept == []
    assert "connection refused" in str(raised.value) and "SURVEY_API_URL" in str(raised.value)
    assert client.stats.requests == 1


def test_a_refusal_after_the_platform_answered_once_is_retried():
    import http.server
    import threading

    class Once(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            body = b'{"items": [], "next_cursor": null}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Once)
    port = server.server_address[1]
    thread = threading.Thread(target=server.handle_request)
    thread.start()
    slept: list[float] = []
    client = SurveyClient(f"http://127.0.0.1:{port}/api/v1", "token", sleep=slept.append, max_attempts=3)
    list(client.iter_polls(None))          # answered: the platform exists
    thread.join()
    server.server_close()                  # now it restarts: refusals are transient
    with pytest.raises(RetriableError):
        list(client.iter_polls(None))
    assert len(slept) == 2                 # retried under the policy before giving up
