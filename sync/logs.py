"""Logging with loguru: readable lines on a terminal, JSON lines with ``LOG_FORMAT=json``.

Every record carries the run id and passes through ``redact()``, so a webhook secret or
API token can never reach a log sink, whatever code logged it.
"""
from __future__ import annotations

import json
import sys

from loguru import logger

from core.redact import redact

_TEXT = "<green>{time:YYYY-MM-DD HH:mm:ss}</green> <level>{level: <7}</level> <cyan>{extra[run_id]}</cyan> {message}"


def _patch(record) -> None:
    record["message"] = redact(record["message"])
    record["extra"].setdefault("run_id", "-")
    if record["exception"] is not None:
        exc_type, exc, tb = record["exception"]
        if exc is not None:
            exc.args = tuple(redact(str(a)) if isinstance(a, str) else a for a in exc.args)


def _json_sink(message) -> None:
    record = message.record
    line = {"time": record["time"].isoformat(), "level": record["level"].name, "run_id": record["extra"].get("run_id"),
            "message": record["message"], "module": record["name"]}
    if record["exception"] is not None and record["exception"].value is not None:
        line["exception"] = redact(f"{type(record['exception'].value).__name__}: {record['exception'].value}")
    sys.stderr.write(json.dumps(line, ensure_ascii=False) + "\n")


def setup_logging(*, fmt: str = "text", level: str = "INFO", extra_sink=None) -> None:
    """Send logs to stderr (data goes to stdout), redacted, with the run id on every line."""
    logger.remove()
    logger.configure(patcher=_patch, extra={"run_id": "-"})
    if fmt == "json":
        logger.add(_json_sink, level=level.upper())
    else:
        logger.add(sys.stderr, level=level.upper(), format=_TEXT, colorize=sys.stderr.isatty(), backtrace=False,
                   diagnose=False)
    if extra_sink is not None:
        logger.add(extra_sink, level="DEBUG", format="{time} {level} {extra[run_id]} {message}")
