"""http_build_query for batch commands, checked against a PHP parse_str written here.

``php_parse_str`` follows PHP's rules that matter to Bitrix24: the pair is split on
the first '=', key and value are urldecoded ('+' is a space), the top-level name has
'.' and ' ' turned into '_', '[a][b]' nests, '[]' appends, and everything is a string.
"""
from __future__ import annotations

import re
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any
from urllib.parse import unquote_plus, urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sync.clients.phpquery import build_command, http_build_query


def php_parse_str(query: str) -> dict:
    out: dict = {}
    for pair in query.split("&"):
        if not pair:
            continue
        raw_key, _, raw_value = pair.partition("=")
        key, value = unquote_plus(raw_key), unquote_plus(raw_value)
        bracket = key.find("[")
        base, rest = (key, "") if bracket <= 0 else (key[:bracket], key[bracket:])
        base = base.replace(".", "_").replace(" ", "_")
        if not base:
            continue
        segments = []
        while rest.startswith("["):
            close = rest.find("]")
            if close == -1:
                break
            segments.append(rest[1:close])
            rest = rest[close + 1:]
        target = out
        path = [base] + segments
        for i, seg in enumerate(path):
            last = i == len(path) - 1
            if seg == "" and i > 0:
                ints = [int(k) for k in target if re.fullmatch(r"-?\d+", k)]
                seg = str(max(ints) + 1 if ints else 0)
            if last:
                target[seg] = value
            else:
                if not isinstance(target.get(seg), dict):
                    target[seg] = {}
                target = target[seg]
    return out


def php_view(value: Any) -> Any:
    """What PHP sees after parse_str for a Python value: strings everywhere, lists as 0..n-1 maps."""
    if isinstance(value, dict):
        out = {str(k): php_view(v) for k, v in value.items() if v is not None}
        return {k: v for k, v in out.items() if v != {}}
    if isinstance(value, (list, tuple)):
        return php_view({str(i): v for i, v in enumerate(value)})
    if isinstance(value, bool):
        return "Y" if value else "N"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def test_nested_multifield_is_bracketed_and_indexed() -> None:
    query = http_build_query({"fields": {"NAME": "Иван", "EMAIL": [{"VALUE": "a@b.ru", "VALUE_TYPE": "WORK"}]}})
    assert query == ("fields[NAME]=%D0%98%D0%B2%D0%B0%D0%BD"
                     "&fields[EMAIL][0][VALUE]=a%40b.ru&fields[EMAIL][0][VALUE_TYPE]=WORK")


def test_booleans_become_y_n_and_none_is_omitted() -> None:
    assert http_build_query({"params": {"REGISTER_SONET_EVENT": False, "IMPORT": True}, "x": None}) == \
        "params[REGISTER_SONET_EVENT]=N&params[IMPORT]=Y"


def test_special_characters_are_percent_encoded() -> None:
    query = http_build_query({"fields": {"PHONE": [{"VALUE": "+7 (916) 123-45-67"}], "COMMENTS": "a&b=c#d%e?f"}})
    assert "+" not in query.replace("%2B", "")
    assert "fields[PHONE][0][VALUE]=%2B7%20%28916%29%20123-45-67" in query
    assert "fields[COMMENTS]=a%26b%3Dc%23d%25e%3Ff" in query
    assert php_parse_str(query)["fields"]["COMMENTS"] == "a&b=c#d%e?f"


def test_filter_prefixes_in_keys_survive() -> None:
    query = http_build_query({"filter": {">ID": 5, "!STAGE_ID": "WON", "=%NAME": "Ив%", "@ID": [1, 2]}})
    assert php_parse_str(query) == {"filter": {">ID": "5", "!STAGE_ID": "WON", "=%NAME": "Ив%",
                                               "@ID": {"0": "1", "1": "2"}}}


def test_result_references_pass_through_readably() -> None:
    command = build_command("crm.deal.add", {"fields": {"CONTACT_ID": "$result[contact_814573982]",
                                                        "TITLE": "x"}})
    assert command == "crm.deal.add?fields[CONTACT_ID]=$result[contact_814573982]&fields[TITLE]=x"
    parts = urlsplit(command)  # what PHP parse_url does with a command
    assert parts.path == "crm.deal.add"
    assert php_parse_str(parts.query)["fields"]["CONTACT_ID"] == "$result[contact_814573982]"


def test_scalars_of_other_types() -> None:
    q = http_build_query({"a": 1.5, "b": Decimal("10.10"), "c": date(2025, 10, 20),
                          "d": datetime(2025, 10, 20, 9, 15, 2, tzinfo=timezone.utc), "e": 0, "f": ""})
    assert php_parse_str(q) == {"a": "1.5", "b": "10.10", "c": "2025-10-20", "d": "2025-10-20T09:15:02+00:00",
                                "e": "0", "f": ""}


def test_empty_containers_are_omitted_like_php() -> None:
    assert http_build_query({"select": [], "filter": {}, "order": {"ID": "ASC"}}) == "order[ID]=ASC"
    assert build_command("server.time", None) == "server.time"
    assert build_command("server.time", {}) == "server.time"


@pytest.mark.parametrize("params", [{"a.b": 1}, {"a b": 1}, {"a[b]": 1}, {"": 1}, {"f": {"x]y": 1}}])
def test_names_parse_str_would_change_are_refused(params: dict) -> None:
    with pytest.raises(ValueError):
        http_build_query(params)


@pytest.mark.parametrize("value", [{1, 2}, object(), float("nan")])
def test_unencodable_values_are_refused(value: Any) -> None:
    with pytest.raises((TypeError, ValueError)):
        http_build_query({"x": value})


# Top-level names: what Bitrix24 uses (letters, digits, _), nested keys: anything without brackets.
top_keys = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,8}", fullmatch=True)
nested_keys = st.text(st.characters(blacklist_characters="[]", blacklist_categories=("Cs",)), min_size=1,
                      max_size=8)
scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12),
                    st.floats(allow_nan=False, allow_infinity=False),
                    st.text(st.characters(blacklist_categories=("Cs",)), max_size=20))
values = st.recursive(scalars, lambda children: st.one_of(st.lists(children, max_size=4),
                                                          st.dictionaries(nested_keys, children, max_size=4)),
                      max_leaves=20)


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(top_keys, values, max_size=5))
def test_round_trips_through_php_parse_str(params: dict) -> None:
    assert php_parse_str(http_build_query(params)) == php_view(params)
