"""The run report: what admissions staff review after ``--dry-run`` and operators read after a run.

One view of a ``RunSummary`` (and its ``Plan`` when kept), rendered four ways:

* ``md`` and ``html`` for people: totals first, then problems grouped by kind with
  what to do, then poll forms, then every answer with its contact, deals and problems;
* ``csv`` for spreadsheets: one row per (answer, deal) and per (answer, problem),
  UTF-8 with a BOM so Excel reads Cyrillic;
* ``json`` for machines: the summary and the plan, with the same masking.

Personal data (respondents' e-mails, names, phones; poll owners' e-mails) are masked
unless ``show_personal_data`` is set, in every format: deal titles carry names, so
they are masked too, and free texts (errors, params of unknown problem codes) are
scrubbed of anything that looks like an e-mail or a phone number. Secrets are always
removed with ``redact()``. Every value from the public is escaped for its format.

Texts live in ``sync.report.messages`` (Russian and English); a problem code this module
does not know is shown by its code and params rather than failing the report.

This module is the public entry point (``render_report``, ``write_report``); the work
is split by job: ``masking``, ``texts``, ``summary`` (the one-line summary), ``model``
(the view built from a summary and its plan) and one module per format
(``as_markdown``, ``as_html``, ``as_csv``, ``as_json``).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Literal

from sync.report.as_csv import CSV_COLUMNS, render_csv
from sync.report.as_html import render_html
from sync.report.as_json import render_json
from sync.report.as_markdown import render_md
from sync.report.masking import mask_email, mask_name, mask_params, mask_phone, mask_title, scrub_text
from sync.report.model import ReportView, build_view
from sync.report.summary import format_summary_line
from sync.report.texts import Language, problem_text
from sync.options import RunSummary

Format = Literal["md", "html", "json", "csv"]

FORMATS: tuple[str, ...] = ("md", "html", "json", "csv")
EXTENSIONS: dict[str, str] = {".md": "md", ".html": "html", ".htm": "html", ".json": "json", ".csv": "csv"}

_RENDERERS: dict[str, Callable[[ReportView], str]] = {"md": render_md, "html": render_html, "csv": render_csv,
                                                 "json": render_json}


def render_report(summary: RunSummary, *, fmt: Format, language: Language = "ru",
                  show_personal_data: bool = False, crm_url: str | None = None) -> str:
    """The report of ``summary`` as text in ``fmt`` (md, html, json or csv).

    Totals come first, then problems grouped by kind with what to do, then poll forms
    and answers (when ``summary.plan`` was kept). Personal data are masked unless
    ``show_personal_data``. ``crm_url`` (see ``portal_url``) links contacts and deals to
    their cards. A CSV starts with a BOM so Excel reads it as UTF-8.
    """
    renderer = _RENDERERS.get(fmt)
    if renderer is None:
        raise ValueError(f"unsupported report format {fmt!r}; supported: {', '.join(FORMATS)}")
    return renderer(build_view(summary, language, show_personal_data, crm_url))


def portal_url(webhook_url: Any) -> str | None:
    """``https://<portal>`` of a webhook URL: scheme and host only, never its path (the secret is there)."""
    from urllib.parse import urlsplit
    text = webhook_url.get_secret_value() if hasattr(webhook_url, "get_secret_value") else webhook_url
    if not text:
        return None
    try:
        parts = urlsplit(str(text).strip())
        host, port = parts.hostname, parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not host:
        return None
    host = f"[{host}]" if ":" in host else host
    return f"{parts.scheme}://{host}" + (f":{port}" if port else "")


def format_for_path(path: Path) -> Format:
    """The report format a file name asks for; ``ValueError`` naming the supported extensions otherwise."""
    fmt = EXTENSIONS.get(Path(path).suffix.lower())
    if fmt is None:
        raise ValueError(f"cannot write a report to {path}: unsupported extension {Path(path).suffix or '(none)'!r}; "
                         f"supported: {', '.join(EXTENSIONS)}")
    return fmt  # type: ignore[return-value]


def write_report(summary: RunSummary, path: Path, *, language: Language = "ru",
                 show_personal_data: bool = False, crm_url: str | None = None) -> Path:
    """Write the report to ``path`` in the format its extension names; return the path.

    Supported: ``.md``, ``.html``/``.htm``, ``.json``, ``.csv`` (anything else is a
    ``ValueError`` listing them). The file is written whole or not at all.
    """
    path = Path(path)
    fmt = format_for_path(path)
    text = render_report(summary, fmt=fmt, language=language, show_personal_data=show_personal_data,
                         crm_url=crm_url)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    try:
        with open(partial, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return path


__all__ = ["CSV_COLUMNS", "EXTENSIONS", "FORMATS", "format_for_path", "format_summary_line", "mask_email",
           "mask_name", "mask_params", "mask_phone", "mask_title", "portal_url", "problem_text", "render_report",
           "scrub_text", "write_report"]
