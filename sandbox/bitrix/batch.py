"""The ``batch`` method: ``CRestProvider::methodsBatch`` and ``CRestUtil::processBatchElement``.

Commands run in order. Each is ``parse_url``-ed and its query ``parse_str``-ed, then
``$result[...]``-style references to *earlier* commands are substituted (see
:func:`substitute`); commands past the 50th are not run and get
``ERROR_BATCH_LENGTH_EXCEEDED``; a nested ``batch`` (and ``upload``/``download``) gets
``ERROR_BATCH_METHOD_NOT_ALLOWED``. A failing command never changes the HTTP 200: it is
an entry in ``result_error``. With ``halt`` the batch stops after the first error.
"""
from __future__ import annotations

import re
from typing import Any, Callable

from .params import parse_str, parse_url, php_get, php_json_shape, php_key, php_truthy

BATCH_MAX_LENGTH = 50
_SECTIONS = ("result", "next", "total", "time", "error")
_REF = re.compile(r"\$(" + "|".join(_SECTIONS) + r")(\S*)", re.IGNORECASE)
_ANY_REF = re.compile(r"\$()(\S*)")
_PATH = re.compile(r"\[([^\]]+)\]")

# (method, params) -> PHP-like result: {"result":..., "next":..., "total":..., "time":...} or {"error":..., ...}
SubCall = Callable[[str, dict], dict]


def _walk(store: dict, section: str, path: str) -> Any:
    # $arResult[$arMatch[1]]: the section is looked up as written, so "$RESULT" finds nothing.
    r: Any = store.get(section)
    for key in _PATH.findall(path):
        found, value = php_get(r, key)
        if not found:
            break
        r = value
    return r


def substitute(value: str, store: dict, pattern: re.Pattern = _REF) -> Any:
    """``processBatchElement``: a whole-value reference becomes the raw referenced value (an
    array too); an embedded one is string-replaced only by a string or number; a missing path
    segment stops the walk at the deepest existing level."""
    for match in list(pattern.finditer(value)) if isinstance(value, str) else []:
        path = match.group(2)
        if not _PATH.search(path):
            continue
        r = _walk(store, match.group(1), path)
        if match.group(0) == value:
            value = r
        else:
            if isinstance(r, bool) or not isinstance(r, (str, int, float)):
                continue
            if isinstance(r, float):
                r = repr(r)
            value = value.replace(match.group(0), str(r))
        if not isinstance(value, str):
            break
    return value


def substitute_structure(params: Any, store: dict) -> Any:
    """``processBatchStructure``: substitute in every value (and key) of the parsed query."""
    if not isinstance(params, dict):
        return params
    out: dict = {}
    for key, value in params.items():
        # Keys go through processBatchElement without the section list: any "$x[..]" key
        # resolves against nothing, so a whole-key reference becomes "" (PHP null key).
        new_key = substitute(key, {}, _ANY_REF)
        new_key = "" if new_key is None else new_key
        out[new_key if isinstance(new_key, str) else str(new_key)] = (
            substitute_structure(value, store) if isinstance(value, dict) else substitute(value, store))
    return out


def run_batch(params: dict, call: SubCall, *, on_command: Callable[[str], None] | None = None,
              fail_command: Any = None, fail_error: dict | None = None) -> dict:
    """Execute a batch. ``fail_command`` names one command that fails with ``fail_error``
    instead of running (the ``batch_command_error`` fault)."""
    query = {str(k).upper(): v for k, v in params.items()}
    halt = php_truthy(query.get("HALT"))
    cmd = query.get("CMD")
    store: dict[str, dict] = {s: {} for s in _SECTIONS}
    commands = list(cmd.items()) if isinstance(cmd, dict) else list(enumerate(cmd)) if isinstance(cmd, list) else []
    for count, (key, call_text) in enumerate(commands):
        key = php_key(key)
        if count < BATCH_MAX_LENGTH:
            if not isinstance(call_text, str):
                res = {"error": "ERROR_METHOD_NOT_FOUND", "error_description": "Method not found!"}
            else:
                path, query_text = parse_url(call_text)
                sub_params = substitute_structure(parse_str(query_text), store)
                method = path.strip().strip("/").lower()
                if method in ("batch", "upload", "download"):
                    res = {"error": "ERROR_BATCH_METHOD_NOT_ALLOWED",
                           "error_description": "Method is not allowed for batch usage"}
                elif fail_command is not None and php_key(fail_command) == key:
                    res = dict(fail_error or {"error": "INTERNAL_SERVER_ERROR",
                                              "error_description": "Internal server error"})
                else:
                    if on_command is not None:
                        on_command(method)
                    res = call(method, sub_params)
        else:
            res = {"error": "ERROR_BATCH_LENGTH_EXCEEDED", "error_description": "Max batch length exceeded"}
        if "error" in res:
            store["error"][key] = {"error": res["error"], "error_description": res.get("error_description", "")}
        else:
            for section in ("result", "next", "total", "time"):
                if section in res:
                    store[section][key] = res[section]
        if "error" in res and halt:
            break
    return {
        "result": php_json_shape(store["result"]),
        "result_error": php_json_shape(store["error"]),
        "result_total": php_json_shape(store["total"]),
        "result_next": php_json_shape(store["next"]),
        "result_time": php_json_shape(store["time"]),
    }
