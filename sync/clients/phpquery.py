"""PHP ``http_build_query`` for the commands inside a Bitrix24 ``batch``.

A batch command is ``"method?query"``; the server splits it with ``parse_url`` and
reads the query with PHP ``parse_str`` (bitrix24-rest.md §4). So nested parameters
use bracket keys (``fields[EMAIL][0][VALUE]=...``), lists are indexed ``[0]``,
``[1]``, and every ``+ & # % = ?`` inside a value must be percent-encoded (an
unencoded ``+`` becomes a space, ``#`` cuts the command short).

Rules, and why:

* ``True``/``False`` → ``Y``/``N`` (the CRM's boolean convention; ``1``/``0`` is the
  caller's choice by passing strings);
* ``None`` is omitted (a query string cannot carry null; omitted means "unchanged");
* empty dicts/lists are omitted, as PHP does;
* ``$result[name][...]`` references are kept readable (``$``, ``[``, ``]`` are not
  encoded in values; ``parse_str`` gives the same string either way);
* top-level keys with ``.``, space or brackets are refused: ``parse_str`` would
  silently rename them (``a.b`` → ``a_b``); nested keys with brackets likewise.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import quote

_VALUE_SAFE = "-_.~$[]"
_KEY_SAFE = "-_.~"


def _key(part: Any, *, top: bool) -> str:
    text = str(part)
    if text == "":
        raise ValueError("empty parameter name: PHP parse_str would drop it")
    forbidden = "[] ." if top else "[]"
    bad = [c for c in forbidden if c in text]
    if bad:
        raise ValueError(f"parameter name {text!r} contains {''.join(bad)!r}: PHP parse_str would change it")
    return quote(text, safe=_KEY_SAFE)


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "Y" if value else "N"
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"cannot send {value!r} to Bitrix24")
        return repr(value)
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    raise TypeError(f"cannot encode {type(value).__name__} value {value!r} as a query parameter")


def _flatten(prefix: str, value: Any, out: list[str]) -> None:
    if value is None:
        return
    if isinstance(value, Mapping):
        for k, v in value.items():
            _flatten(f"{prefix}[{_key(k, top=False)}]", v, out)
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _flatten(f"{prefix}[{i}]", v, out)
    elif isinstance(value, (set, frozenset)):
        raise TypeError(f"cannot encode a set for {prefix!r}: its order is undefined; pass a list")
    else:
        out.append(f"{prefix}={quote(_scalar(value), safe=_VALUE_SAFE)}")


def http_build_query(params: Mapping[str, Any] | None) -> str:
    """Encode ``params`` the way PHP's ``http_build_query`` does (RFC 3986, UTF-8)."""
    if not params:
        return ""
    if not isinstance(params, Mapping):
        raise TypeError(f"params must be a mapping, got {type(params).__name__}")
    out: list[str] = []
    for key, value in params.items():
        _flatten(_key(key, top=True), value, out)
    return "&".join(out)


def build_command(method: str, params: Mapping[str, Any] | None) -> str:
    """One batch command string: ``method`` or ``method?<query>``."""
    query = http_build_query(params)
    return f"{method}?{query}" if query else method
