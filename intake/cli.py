"""``cli.py intake``: serve the intake until SIGTERM (registered in cli.py)."""
from __future__ import annotations

import sys

import click

from core import exit_codes
from core.errors import ConfigError, StoreError

# Stands in for BITRIX24_WEBHOOK_URL when the intake runs without it: it only
# needs the CRM for the optional employee check.
_NO_WEBHOOK = "http://unused.invalid/rest/1/intake-needs-no-webhook/"


def load_intake_settings(**overrides):
    """Settings for the intake: the pull API's settings are not needed, nor the webhook unless it checks employees."""
    from sync.settings import load_settings
    values = {"survey_source": "intake", **overrides}
    try:
        return load_settings(**values)
    except ConfigError as exc:
        first = exc
    settings = load_settings(**values, bitrix24_webhook_url=_NO_WEBHOOK)  # anything else wrong raises here
    if settings.intake_check_employee:
        raise first  # the check needs the real webhook: say what is wrong with it
    return settings

@click.command("intake")
@click.option("--host", default=None, help="Address to listen on (default: INTAKE_HOST, 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port (default: INTAKE_PORT, 8000; 0: any free port).")
def intake_command(host, port) -> None:
    """Receive the university portal's postPoll/postAnswer pushes and store them; nothing else.

    \b
    The portal's integration URL is http://HOST:PORT/api/v1/integration (INTAKE_BASE_PATH),
    plus /<INTAKE_TOKEN> when a token is set. The sync job reads what was stored
    with SURVEY_SOURCE=intake. SIGTERM finishes the deliveries in flight, then exits 0.

    \b
    Example:
      INTAKE_TOKEN=$(python -c 'import secrets; print(secrets.token_urlsafe(24))') \\
      INTAKE_ALLOWED_NETWORKS=10.20.0.0/16 python cli.py intake --host 0.0.0.0 --port 8000
    """
    from core.redact import redact
    from intake.app import create_app
    from intake.server import bind, make_intake_engine, serve
    from sync.logs import setup_logging

    try:
        settings = load_intake_settings(intake_host=host, intake_port=port)
        setup_logging(fmt=settings.log_format, level=settings.log_level)
        engine = make_intake_engine(settings.database_url)
        app = create_app(settings, engine)
    except ConfigError as exc:
        click.echo(f"error: {redact(str(exc))}", err=True)
        sys.exit(exit_codes.USAGE_ERROR)
    except StoreError as exc:
        click.echo(f"aborted (store): {redact(str(exc))}", err=True)
        sys.exit(exit_codes.ABORTED)
    try:
        sock = bind(settings.intake_host, settings.intake_port)
    except OSError as exc:
        click.echo(f"error: cannot listen on {settings.intake_host}:{settings.intake_port}: {exc.strerror} "
                   f"→ pick another --port (or INTAKE_PORT), or stop what is using it", err=True)
        sys.exit(exit_codes.USAGE_ERROR)
    try:
        serve(app, sock, base_path=settings.intake_base_path)
    finally:
        engine.dispose()
