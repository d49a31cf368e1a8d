"""A loopback HTTP server that runs in a background thread.

Both emulators build on it so that tests, the demo and the benchmarks can start them
in-process and the CLI can serve them until Ctrl-C. Handlers are plain
``BaseHTTPRequestHandler`` subclasses; this module only owns the thread and the
socket life cycle.
"""
from __future__ import annotations

import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # Many clients (and the benchmarks) open bursts of connections.
    request_queue_size = 128
    ssl_context: ssl.SSLContext | None = None

    def finish_request(self, request, client_address) -> None:  # type: ignore[override]
        if self.ssl_context is None:
            super().finish_request(request, client_address)
            return
        # The TLS handshake runs here, in the connection's own thread, not in the accept loop.
        try:
            tls = self.ssl_context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            return
        try:
            super().finish_request(tls, client_address)
        finally:
            self.shutdown_request(tls)


class LoopbackServer:
    """Serve ``handler_class`` on ``host:port`` (port 0 picks a free one) in a thread.

    The handler reaches its owner through ``self.server.owner``. With ``ssl_context`` the
    server speaks HTTPS (for clients that hard-code ``https://``, such as b24pysdk).
    """

    def __init__(self, handler_class: type[BaseHTTPRequestHandler], *, owner: object,
                 host: str = "127.0.0.1", port: int = 0, ssl_context: ssl.SSLContext | None = None) -> None:
        self._httpd = _Server((host, port), handler_class)
        self._httpd.owner = owner  # type: ignore[attr-defined]
        self._httpd.ssl_context = ssl_context
        self._thread: threading.Thread | None = None

    @property
    def host(self) -> str:
        return self._httpd.server_address[0]

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    @property
    def scheme(self) -> str:
        return "https" if self._httpd.ssl_context is not None else "http"

    @property
    def base_url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    def start(self) -> "LoopbackServer":
        # shutdown() waits for the serve loop's next poll: a short interval makes stopping the
        # hundreds of emulators a test run starts cost milliseconds, not seconds.
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.005},
                                        name=f"sandbox-{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)


def drop_connection(handler: BaseHTTPRequestHandler) -> None:
    """Close the client's connection without sending a response (a 'connection reset')."""
    handler.close_connection = True
    try:
        handler.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        handler.connection.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def serve_until_stopped(stop) -> None:
    """Block until SIGTERM or Ctrl-C, then call ``stop()``: the command-line servers' main loop."""
    import signal

    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    try:
        while not stopping.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        stop()
