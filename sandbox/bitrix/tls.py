"""A throw-away TLS certificate for the loopback emulator.

Some clients (b24pysdk) always build ``https://{domain}/rest/...`` URLs, so to run them
unchanged the emulator can serve HTTPS. The certificate is generated on demand with the
``openssl`` command line tool (no Python dependency), valid for ``127.0.0.1`` and
``localhost``; point the client at it with ``REQUESTS_CA_BUNDLE=<certfile>``.
"""
from __future__ import annotations

import shutil
import ssl
import subprocess
from pathlib import Path


def make_loopback_cert(directory: str | Path, *, days: int = 2) -> tuple[Path, Path]:
    """Write ``loopback-cert.pem`` and ``loopback-key.pem`` into ``directory``; return their paths."""
    openssl = shutil.which("openssl")
    if openssl is None:
        raise RuntimeError("the 'openssl' command is needed to make a loopback TLS certificate; "
                           "install it (apt-get install openssl) or run the emulator over plain http")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / "loopback-cert.pem", directory / "loopback-key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256", "-days", str(days),
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True)
    return cert, key


def server_context(certfile: str | Path, keyfile: str | Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(certfile), str(keyfile))
    return context
