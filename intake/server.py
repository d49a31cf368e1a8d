"""Run the intake under uvicorn: bind, say where, serve until SIGTERM, finish what is in flight.

The socket is bound (and listening) before the one stdout line is printed, so a
caller that reads the line — a test, a supervisor — can connect at once, also when
it asked for port 0. uvicorn handles SIGTERM/SIGINT itself: it stops accepting,
lets the requests in flight finish (each stores its packet, then replies) and returns.
"""
from __future__ import annotations

import signal
import socket
import sys
import threading
from typing import Any, TextIO

import uvicorn
from sqlalchemy import event
from sqlalchemy.engine import Engine

from storage.db import make_engine, migrate

# Requests still running after SIGTERM get this long to finish before uvicorn gives up on them.
GRACEFUL_S = 20


def make_intake_engine(database_url: str) -> Engine:
    """The store, migrated; SQLite commits wait for the disk (``synchronous=FULL``).

    The job's own NORMAL is safe for it because it can re-read from its source; the
    intake cannot: once it said "stored", the portal forgets the packet.
    """
    engine = make_engine(database_url)
    if engine.dialect.name == "sqlite":
        @event.listens_for(engine, "connect")
        def _durable(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            try:
                cursor.execute("PRAGMA synchronous = FULL")
            finally:
                cursor.close()
        engine.dispose()  # connections opened by the check above predate the hook
    migrate(engine)
    return engine


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: a free one)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Inherited by accepted connections: a reply's head and body go out in two writes, and
    # with Nagle the body would wait for the client's (delayed, ~40 ms) ACK of the head.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def listening_url(sock: socket.socket, base_path: str) -> str:
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}{base_path}"


def _server(app: Any) -> uvicorn.Server:
    return uvicorn.Server(uvicorn.Config(
        app, log_config=None, access_log=False,  # our own log lines, with the token redacted
        proxy_headers=False,  # X-Forwarded-For is believed only from INTAKE_TRUSTED_PROXIES, by the app
        server_header=False, timeout_graceful_shutdown=GRACEFUL_S, lifespan="off", log_level="warning"))


def _close_writer(app: Any) -> None:
    writer = getattr(getattr(getattr(app, "state", None), "intake", None), "writer", None)
    if writer is not None:
        writer.close()  # uvicorn has let the requests in flight finish: their packets are committed


def serve(app: Any, sock: socket.socket, *, out: TextIO = sys.stdout, base_path: str = "") -> None:
    """Serve ``app`` on ``sock`` until SIGTERM/SIGINT; print the one ``intake listening on …`` line first."""
    server = _server(app)
    out.write(f"intake listening on {listening_url(sock, base_path)}\n")
    out.flush()
    if threading.current_thread() is threading.main_thread():
        # uvicorn re-raises the signal that stopped it once it has shut down, to the handler
        # in place before it ran; a no-op one makes a graceful stop exit 0, not "killed by SIGTERM".
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: None)
    try:
        server.run(sockets=[sock])
    finally:
        _close_writer(app)


class BackgroundIntake:
    """The intake served from a thread of another command (``schedule --with-intake``).

    The command keeps its own signal handling; ``stop()`` lets the deliveries in flight
    finish (their packets are committed before their replies) and returns.
    """

    def __init__(self, app: Any, sock: socket.socket, *, out: TextIO = sys.stdout, base_path: str = "") -> None:
        self.app = app
        self.server = _server(app)
        self.url = listening_url(sock, base_path)
        self._thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, name="intake",
                                        daemon=True)
        self._thread.start()
        out.write(f"intake listening on {self.url}\n")
        out.flush()

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join(timeout=GRACEFUL_S + 5)
        _close_writer(self.app)
