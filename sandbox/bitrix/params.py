"""Request parameters the way the Bitrix24 REST server (PHP) sees them.

PHP has one container type, the ordered array; here it is a ``dict`` whose keys are
``str`` (integer keys are kept as their decimal string, so ``"0"``) for everything
parsed from a query string or a form, and the native ``dict``/``list`` for JSON bodies.
Method code must therefore accept both shapes; :func:`values_of` and :func:`php_get`
smooth that over.

What is reproduced (bitrix24-rest.md §1 "Server-side parsing", §4 "Encoding"):

* ``parse_str``: ``&``-separated pairs, ``+`` and ``%XX`` decoded in names and values,
  bracket paths (``a[b][c]=v``), ``[]`` appends with the next integer key, spaces and
  dots in the top-level name become ``_``, an unclosed ``[`` becomes ``_``;
* ``parse_url`` for batch commands: ``#`` starts a fragment (dropped), ``?`` splits the
  method from its query;
* request merge: query string, then the form fields or -- when there are none -- the raw
  body: ``application/json`` decoded (invalid JSON silently ``{}``), any other content
  type through ``parse_str``; body keys replace query keys at the top level.
"""
from __future__ import annotations

import json
import re
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any
from urllib.parse import unquote_plus

_INT_KEY = re.compile(r"^(0|-?[1-9][0-9]*)$")
_PHP_INT_MAX = 2**63 - 1


def php_key(key: Any) -> Any:
    """PHP array-key cast: canonical decimal strings become ints, other strings stay."""
    if isinstance(key, bool):
        return int(key)
    if isinstance(key, int):
        return key
    if isinstance(key, str) and _INT_KEY.match(key) and abs(int(key)) <= _PHP_INT_MAX:
        return int(key)
    return key if isinstance(key, str) else str(key)


def _next_index(container: dict) -> str:
    ints = [int(k) for k in container if _INT_KEY.match(k)]
    return str(max(ints) + 1 if ints and max(ints) >= 0 else 0)


def _register(target: dict, name: str, value: Any) -> None:
    """php_register_variable: store ``value`` under a bracketed ``name``."""
    name = name.lstrip(" ")
    if not name:
        return
    bracket = name.find("[")
    if bracket == -1:
        base, rest = name, ""
    else:
        base, rest = name[:bracket], name[bracket:]
    # PHP mangles the top-level name: ' ' and '.' become '_'.
    base = base.replace(" ", "_").replace(".", "_")
    segments: list[str | None] = []
    while rest.startswith("["):
        close = rest.find("]")
        if close == -1:
            # An unclosed '[' in the first segment turns into '_' and the rest is literal.
            if not segments:
                base = base + "_" + rest[1:].replace(" ", "_").replace(".", "_")
            break
        inner = rest[1:close]
        segments.append(None if inner == "" else inner)
        rest = rest[close + 1:]
    if not base:
        return
    if not segments:
        target[base] = value
        return
    node = target.get(base)
    if not isinstance(node, dict):
        node = {}
        target[base] = node
    for i, seg in enumerate(segments):
        last = i == len(segments) - 1
        key = _next_index(node) if seg is None else str(php_key(seg))
        if last:
            node[key] = value
        else:
            child = node.get(key)
            if not isinstance(child, dict):
                child = {}
                node[key] = child
            node = child


def parse_str(query: str) -> dict:
    """PHP ``parse_str``: decode a query string into nested dicts (string keys)."""
    result: dict = {}
    if not query:
        return result
    for pair in query.split("&"):
        if not pair:
            continue
        name, sep, value = pair.partition("=")
        _register(result, unquote_plus(name), unquote_plus(value) if sep else "")
    return result


def parse_pairs(pairs: list[tuple[str, Any]]) -> dict:
    """Register already-decoded (name, value) pairs, as PHP does for multipart fields."""
    result: dict = {}
    for name, value in pairs:
        _register(result, name, value)
    return result


def parse_url(command: str) -> tuple[str, str]:
    """The ``path`` and ``query`` parts of a batch command, as PHP ``parse_url`` gives them."""
    command = command.split("#", 1)[0]
    path, _, query = command.partition("?")
    return path, query


def _parse_multipart(content_type: str, body: bytes) -> list[tuple[str, Any]]:
    message = BytesParser(policy=HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body)
    pairs: list[tuple[str, Any]] = []
    if not message.is_multipart():
        return pairs
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if name is None:
            continue
        payload = part.get_payload(decode=True) or b""
        if part.get_filename() is not None:
            # Uploaded files arrive in $_FILES, not in the parameters; keep name and bytes.
            pairs.append((name, {"name": part.get_filename(), "size": len(payload)}))
        else:
            pairs.append((name, payload.decode("utf-8", "replace")))
    return pairs


def request_params(query_string: str, method: str, content_type: str | None, body: bytes) -> dict:
    """The parameters a REST method receives for this HTTP request (rest_util.php ``getRequestData``)."""
    params = parse_str(query_string)
    if method != "POST":
        return params
    ctype = (content_type or "").split(";", 1)[0].strip().lower()
    post: Any = {}
    if ctype == "application/x-www-form-urlencoded":
        post = parse_str(body.decode("utf-8", "replace").strip())
    elif ctype == "multipart/form-data":
        post = parse_pairs(_parse_multipart(content_type or "", body))
    if not post:
        raw = body.decode("utf-8", "replace").strip()
        if ctype == "application/json":
            try:
                post = json.loads(raw) if raw else {}
            except ValueError:
                post = {}
            if isinstance(post, list):
                post = {str(i): v for i, v in enumerate(post)}
            elif not isinstance(post, dict):
                post = {}
        elif raw:
            post = parse_str(raw)
    params.update(post)
    return params


# --- helpers for method code: PHP arrays may be dicts (forms) or lists (JSON) ---------------

def is_array(value: Any) -> bool:
    return isinstance(value, (dict, list))


def values_of(value: Any) -> list:
    """The values of a PHP array in order; a scalar is not an array and gives ``[]``."""
    if isinstance(value, dict):
        return list(value.values())
    if isinstance(value, list):
        return list(value)
    return []


def items_of(value: Any) -> list[tuple[Any, Any]]:
    if isinstance(value, dict):
        return list(value.items())
    if isinstance(value, list):
        return list(enumerate(value))
    return []


def php_get(container: Any, key: Any) -> tuple[bool, Any]:
    """``isset($container[$key])`` and the value: absent and ``null`` are both unset."""
    if isinstance(container, dict):
        if key in container:
            value = container[key]
        else:
            pk = php_key(key)
            value = None
            for k, v in container.items():
                if php_key(k) == pk:
                    value = v
                    break
        return value is not None, value
    if isinstance(container, list):
        pk = php_key(key)
        if isinstance(pk, int) and 0 <= pk < len(container):
            value = container[pk]
            return value is not None, value
        return False, None
    if isinstance(container, str):
        pk = php_key(key)
        if isinstance(pk, int) and -len(container) <= pk < len(container):
            return True, container[pk]
    return False, None


def php_truthy(value: Any) -> bool:
    """PHP ``(bool)`` cast: ``""``, ``"0"``, ``0``, ``0.0``, ``null`` and ``[]`` are false."""
    if value is None:
        return False
    if isinstance(value, str):
        return value not in ("", "0")
    if isinstance(value, (dict, list)):
        return len(value) > 0
    return bool(value)


def php_intval(value: Any) -> int:
    """PHP ``intval``: leading integer of a string, 1 for a non-empty array, 0 otherwise."""
    if type(value) is str and value.isdigit():
        return int(value)
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value)
    if isinstance(value, (dict, list)):
        return 1 if value else 0
    if isinstance(value, str):
        m = re.match(r"\s*([+-]?\d+)", value)
        return int(m.group(1)) if m else 0
    return 0


def php_json_shape(section: dict) -> Any:
    """How PHP ``json_encode`` emits an array: ``[]`` when empty, a list for keys 0..n-1."""
    if not section:
        return []
    keys = [php_key(k) for k in section]
    if keys == list(range(len(keys))):
        return list(section.values())
    return {str(k): v for k, v in zip(keys, section.values())}


def pick(params: dict, *names: str, default: Any = None) -> Any:
    """The first of ``names`` that is set (not ``None``) in ``params``."""
    for name in names:
        value = params.get(name)
        if value is not None:
            return value
    return default


def resolve_array_param(params: dict, name: str) -> Any:
    """CRM ``resolveArrayParam``: ``name``, ``NAME``, ``Name`` or ``arName``."""
    cap = name[:1].upper() + name[1:]
    return pick(params, name.lower(), name.upper(), cap, "ar" + cap)


def resolve_multipart_param(params: dict, parts: list[str]) -> Any:
    """CRM ``resolveMultiPartParam``: ``ENTITY_TYPE``, ``entity_type``, ``EntityType``, ``arEntityType``."""
    upper = "_".join(parts).upper()
    hungary = "".join(p[:1].upper() + p[1:] for p in parts)
    return pick(params, upper, upper.lower(), hungary, "ar" + hungary)


def resolve_entity_id(params: dict) -> int:
    """CRM ``resolveEntityID``: ``ID`` then ``id``, cast with ``intval``."""
    value = pick(params, "ID", "id")
    return php_intval(value) if value is not None else 0
