"""``cli.py explain``: one answer's versions, records, field sources and problems (``sync.explain``).

Registered in ``cli.py`` like the operations commands::

    from jobs.explain_cli import explain
    cli.add_command(explain)
"""
from __future__ import annotations

import sys

import click

from jobs.cli_common import cli_settings, guarded


@click.command()
@click.option("--answer", "answer_id", type=int, required=True, help="The answer's id on the survey platform.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@click.option("--offline", is_flag=True, help="Do not ask the CRM: rules and values from the store only.")
@guarded
def explain(answer_id: int, as_json: bool, offline: bool) -> None:
    """Why a deal or contact says what it says: one answer, field by field.

    Shows the answer's versions and when each arrived, the contact and deals it created
    or reused (with links), for every field the job writes the mapping rule and the
    value it took from the answer, and every problem with what to do. The language is
    REPORT_LANGUAGE (ru or en). Nothing is written anywhere.

    \b
    Examples:
      python cli.py explain --answer 814573981
      python cli.py explain --answer 814573981 --json > answer.json
      python cli.py explain --answer 814573981 --offline   # without calling Bitrix24
    """
    from core import exit_codes
    from core.redact import redact
    from storage.db import redact_url
    from sync.app import Context
    from sync.explain import gather
    from sync.report.explain_text import render_json, render_text

    settings = cli_settings()
    ctx = Context(settings)
    try:
        explanation = gather(ctx, answer_id, offline=offline)
    finally:
        if "bitrix" in ctx.__dict__:
            ctx.bitrix.close()
    if explanation is None:
        click.echo(f"error: answer {answer_id} is not in the store ({redact(redact_url(settings.database_url))}): "
                   f"check the id, or run `cli.py sync` so the answer is read first", err=True)
        sys.exit(exit_codes.USAGE_ERROR)
    language = settings.report_language
    click.echo(render_json(explanation, language) if as_json else render_text(explanation, language), nl=False)
