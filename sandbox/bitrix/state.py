"""The in-memory CRM behind the emulator: schemas, records, indexes and queries.

Records are stored in an *internal* typed form and rendered by :mod:`.methods` into
the two REST dialects: legacy ``crm.contact.*``/``crm.deal.*`` (UPPER_CASE names, every
scalar a string) and ``crm.item.*`` (camelCase names, typed values).

Internal values by field type: integer-like (``integer``, ``user``, ``crm_*`` bindings,
``enumeration``) -> ``int``; ``double`` -> ``float``; ``datetime`` -> unix seconds
(``float``); ``date`` -> ``"YYYY-MM-DD"``; ``boolean`` -> ``bool``; everything else
``str``; unset -> ``None``; multiple -> ``list``. Multi-fields (``EMAIL``, ``PHONE`` ...)
live in their own table keyed by a global id, like ``b_crm_field_multi``.

Indexes keep the look-ups a sync makes cheap at 200,000 deals: equality indexes on the
external keys (``ORIGINATOR_ID``, ``ORIGIN_ID``), on ``CONTACT_ID`` and on every smart
process user field, an exact-value index per multi-field type, and the normalised
communication index ``crm.duplicate.findbycomm`` reads.
"""
from __future__ import annotations

import bisect
import copy
import json
import re
import threading
from dataclasses import dataclass, field as dc_field
from functools import cached_property
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from .lists import ListStore
from .params import php_intval, php_truthy
from .timeline import TimelineStore

DEFAULT_PORTAL_PATH = Path(__file__).resolve().parent.parent / "portal.json"
REAL_PORTAL_PATH = Path(__file__).resolve().parent.parent / "real-portal.json"
# Names accepted wherever a portal file is expected: the smart-process portal the project
# was first built for, and the admissions office's real portal (universal lists).
PORTAL_NAMES = {"smart": DEFAULT_PORTAL_PATH, "real": REAL_PORTAL_PATH}
MULTI_FIELD_TYPES = ("PHONE", "EMAIL", "WEB", "IM", "LINK")
MULTI_FIELD_VALUE_MAX = 250

INT_TYPES = {"integer", "user", "crm_contact", "crm_company", "crm_category", "crm_entity", "crm_lead",
             "crm_quote", "enumeration", "crm_deal", "iblock_element"}

CONTACT_ENTITY_TYPE_ID = 3
DEAL_ENTITY_TYPE_ID = 2


def load_portal(path: str | Path | None = None) -> dict:
    """A portal description from a file path or one of :data:`PORTAL_NAMES` (default ``"smart"``)."""
    if isinstance(path, str) and path in PORTAL_NAMES:
        path = PORTAL_NAMES[path]
    with open(path or DEFAULT_PORTAL_PATH, encoding="utf-8") as fh:
        return json.load(fh)


# --- names ---------------------------------------------------------------------------------

_ITEM_RENAMES = {
    "DATE_CREATE": "createdTime", "DATE_MODIFY": "updatedTime", "CREATED_BY_ID": "createdBy",
    "MODIFY_BY_ID": "updatedBy", "MOVED_BY_ID": "movedBy", "MOVED_TIME": "movedTime",
    "BEGINDATE": "begindate", "CLOSEDATE": "closedate", "BIRTHDATE": "birthdate",
}


def upper_to_camel(name: str) -> str:
    """``ASSIGNED_BY_ID`` -> ``assignedById``; ``UF_CRM_6_POLL_ID`` -> ``ufCrm6PollId``;
    ``UF_CRM_1721244707107`` -> ``ufCrm_1721244707107`` (a trailing all-digit suffix keeps its
    underscore, as in the crm.item docs)."""
    if name in _ITEM_RENAMES:
        return _ITEM_RENAMES[name]
    parts = name.lower().split("_")
    out = parts[0]
    for i, part in enumerate(parts[1:], start=1):
        if not part:
            continue
        if part.isdigit() and i == len(parts) - 1 and name.startswith("UF_") and len(parts) == 3:
            out += "_" + part
        else:
            out += part[:1].upper() + part[1:]
    return out


# --- schema --------------------------------------------------------------------------------

@dataclass
class Field:
    name: str                      # legacy UPPER_CASE name (UF_CRM_* for user fields)
    type: str
    title: str
    required: bool = False
    read_only: bool = False
    immutable: bool = False
    multiple: bool = False
    dynamic: bool = False
    status_type: str | None = None
    items: list[dict] | None = None
    camel: str = ""
    in_star: bool = True           # selected by "*" in legacy lists
    filterable: bool = True
    settings: dict | None = None   # user-field settings, e.g. {"IBLOCK_ID": 18} for iblock_element

    def __post_init__(self) -> None:
        if not self.camel:
            self.camel = upper_to_camel(self.name)

    @cached_property
    def kind(self) -> str:
        if self.type == "crm_multifield":
            return "multi"
        if self.type in INT_TYPES:
            return "int"
        if self.type == "double":
            return "float"
        if self.type in ("datetime", "date", "boolean"):
            return self.type
        return "str"


def _f(name: str, type_: str, title: str, **kw: Any) -> Field:
    return Field(name=name, type=type_, title=title, **kw)


def _ro(name: str, type_: str, title: str, **kw: Any) -> Field:
    return Field(name=name, type=type_, title=title, read_only=True, **kw)


_UTM = [_f(f"UTM_{p}", "string", f"UTM {p.lower()}") for p in ("SOURCE", "MEDIUM", "CAMPAIGN", "CONTENT", "TERM")]


def deal_standard_fields(relations: Iterable[str]) -> list[Field]:
    fields = [
        _ro("ID", "integer", "ID"),
        _f("TITLE", "string", "Название"),
        _f("TYPE_ID", "crm_status", "Тип", status_type="DEAL_TYPE"),
        _f("CATEGORY_ID", "crm_category", "Воронка", immutable=True),
        _f("STAGE_ID", "crm_status", "Стадия сделки", status_type="DEAL_STAGE"),
        _ro("STAGE_SEMANTIC_ID", "string", "Группа стадии"),
        _ro("IS_NEW", "char", "Новая сделка"),
        _f("IS_RECURRING", "char", "Регулярная сделка"),
        _ro("IS_RETURN_CUSTOMER", "char", "Повторная сделка"),
        _ro("IS_REPEATED_APPROACH", "char", "Повторное обращение"),
        _f("PROBABILITY", "integer", "Вероятность"),
        _f("CURRENCY_ID", "crm_currency", "Валюта"),
        _f("OPPORTUNITY", "double", "Сумма"),
        _f("IS_MANUAL_OPPORTUNITY", "char", "Сумма заполнена вручную"),
        _f("TAX_VALUE", "double", "Ставка налога"),
        _f("COMPANY_ID", "crm_company", "Компания"),
        _f("CONTACT_ID", "crm_contact", "Контакт"),
        _f("CONTACT_IDS", "crm_contact", "Контакты", multiple=True, in_star=False, filterable=False),
        _f("QUOTE_ID", "crm_quote", "Предложение"),
        _f("BEGINDATE", "date", "Дата начала"),
        _f("CLOSEDATE", "date", "Дата завершения"),
        _f("OPENED", "char", "Доступна для всех"),
        _f("CLOSED", "char", "Закрыта"),
        _f("COMMENTS", "string", "Комментарий"),
        _f("ASSIGNED_BY_ID", "user", "Ответственный"),
        _ro("CREATED_BY_ID", "user", "Кем создана"),
        _ro("MODIFY_BY_ID", "user", "Кем изменена"),
        _ro("MOVED_BY_ID", "user", "Кем перемещена"),
        _ro("DATE_CREATE", "datetime", "Дата создания"),
        _ro("DATE_MODIFY", "datetime", "Дата изменения"),
        _ro("MOVED_TIME", "datetime", "Дата перемещения"),
        _f("SOURCE_ID", "crm_status", "Источник", status_type="SOURCE"),
        _f("SOURCE_DESCRIPTION", "string", "Дополнительно об источнике"),
        _ro("LEAD_ID", "crm_lead", "Лид"),
        _f("ADDITIONAL_INFO", "string", "Дополнительная информация"),
        _f("ORIGINATOR_ID", "string", "Внешний источник"),
        _f("ORIGIN_ID", "string", "Идентификатор элемента во внешнем источнике"),
        *copy.deepcopy(_UTM),
        _ro("LAST_ACTIVITY_TIME", "datetime", "Последняя активность"),
        _ro("LAST_ACTIVITY_BY", "user", "Автор последней активности"),
    ]
    for rel in relations:
        fields.append(_f(rel, "crm_entity", f"Связь {rel.rsplit('_', 1)[-1]}"))
    return fields


def contact_standard_fields() -> list[Field]:
    fields = [
        _ro("ID", "integer", "ID"),
        _f("HONORIFIC", "crm_status", "Обращение", status_type="HONORIFIC"),
        _f("NAME", "string", "Имя"),
        _f("SECOND_NAME", "string", "Отчество"),
        _f("LAST_NAME", "string", "Фамилия"),
        _f("PHOTO", "file", "Фотография"),
        _f("BIRTHDATE", "date", "Дата рождения"),
        _f("TYPE_ID", "crm_status", "Тип контакта", status_type="CONTACT_TYPE"),
        _f("SOURCE_ID", "crm_status", "Источник", status_type="SOURCE"),
        _f("SOURCE_DESCRIPTION", "string", "Дополнительно об источнике"),
        _f("POST", "string", "Должность"),
        _f("COMMENTS", "string", "Комментарий"),
        _f("OPENED", "char", "Доступен для всех"),
        _f("EXPORT", "char", "Участвует в экспорте контактов"),
        _ro("HAS_PHONE", "char", "Задан телефон"),
        _ro("HAS_EMAIL", "char", "Задан e-mail"),
        _ro("HAS_IMOL", "char", "Задана открытая линия"),
        _f("ASSIGNED_BY_ID", "user", "Ответственный"),
        _ro("CREATED_BY_ID", "user", "Кем создан"),
        _ro("MODIFY_BY_ID", "user", "Кем изменен"),
        _ro("DATE_CREATE", "datetime", "Дата создания"),
        _ro("DATE_MODIFY", "datetime", "Дата изменения"),
        _f("COMPANY_ID", "crm_company", "Компания"),
        _f("COMPANY_IDS", "crm_company", "Компании", multiple=True, in_star=False, filterable=False),
        _ro("LEAD_ID", "crm_lead", "Лид"),
        _f("ORIGINATOR_ID", "string", "Внешний источник"),
        _f("ORIGIN_ID", "string", "Идентификатор элемента во внешнем источнике"),
        _f("ORIGIN_VERSION", "string", "Версия оригинала"),
        *copy.deepcopy(_UTM),
        _ro("LAST_ACTIVITY_TIME", "datetime", "Последняя активность"),
        _ro("LAST_ACTIVITY_BY", "user", "Автор последней активности"),
    ]
    titles = {"PHONE": "Телефон", "EMAIL": "E-mail", "WEB": "Сайт", "IM": "Мессенджер", "LINK": "Ссылка"}
    for mf in MULTI_FIELD_TYPES:
        fields.append(_f(mf, "crm_multifield", titles[mf], multiple=True, in_star=False))
    return fields


def _enum_items(items: Any) -> list[dict] | None:
    """Enumeration items as ``[{"ID", "VALUE"}]`` from that list form or an ``{id: value}`` map."""
    if isinstance(items, dict):
        return [{"ID": str(k), "VALUE": v} for k, v in items.items()] or None
    return [{"ID": str(i["ID"]), "VALUE": i["VALUE"]} for i in items or []] or None


def _user_fields(spec: dict) -> list[Field]:
    out = []
    for name, uf in (spec or {}).items():
        out.append(Field(name=name, type=uf.get("type", "string"), title=uf.get("title", name),
                         required=bool(uf.get("isRequired", False)),
                         multiple=bool(uf.get("isMultiple", uf.get("multiple", False))),
                         dynamic=True, items=_enum_items(uf.get("items")), settings=uf.get("settings")))
    return out


@dataclass
class Schema:
    """The fields of one entity type, by legacy name and by crm.item name."""
    entity_type_id: int
    fields: list[Field]
    indexed: tuple[str, ...] = ()
    by_name: dict[str, Field] = dc_field(default_factory=dict)
    by_camel: dict[str, Field] = dc_field(default_factory=dict)

    def __post_init__(self) -> None:
        self.by_name = {f.name: f for f in self.fields}
        self.by_camel = {f.camel: f for f in self.fields}

    def resolve(self, name: str) -> Field | None:
        """A field by its legacy or crm.item name."""
        return self.by_name.get(name) or self.by_camel.get(name)

    @property
    def user_fields(self) -> list[Field]:
        return [f for f in self.fields if f.dynamic]


@dataclass
class SmartProcess:
    entity_type_id: int
    type_id: int
    title: str
    schema: Schema


def _smart_process(spec: dict) -> SmartProcess:
    fields = [
        Field("ID", "integer", "ID", read_only=True, camel="id"),
        Field("XML_ID", "string", "Внешний код", camel="xmlId"),
        Field("TITLE", "string", "Название", camel="title"),
        Field("CREATED_BY", "user", "Кем создан", read_only=True, camel="createdBy"),
        Field("UPDATED_BY", "user", "Кем обновлен", read_only=True, camel="updatedBy"),
        Field("CREATED_TIME", "datetime", "Когда создан", read_only=True, camel="createdTime"),
        Field("UPDATED_TIME", "datetime", "Когда обновлен", read_only=True, camel="updatedTime"),
        Field("ASSIGNED_BY_ID", "user", "Ответственный", camel="assignedById"),
        Field("OPENED", "boolean", "Доступен для всех", camel="opened"),
    ]
    by_camel = {f.camel: f for f in fields}
    for camel, fs in spec.get("fields", {}).items():
        upper = fs.get("upperName") or re.sub(r"(?<!^)(?=[A-Z])", "_", camel).upper()
        dynamic = upper.startswith("UF_")
        items = [{"ID": str(i["ID"]), "VALUE": i["VALUE"]} for i in fs.get("items", [])] or None
        if camel in by_camel:
            f = by_camel[camel]
            f.title = fs.get("title", f.title)
            f.required = bool(fs.get("isRequired", f.required))
            f.type = fs.get("type", f.type)
            continue
        f = Field(upper, fs.get("type", "string"), fs.get("title", camel), required=bool(fs.get("isRequired")),
                  multiple=bool(fs.get("isMultiple")), dynamic=dynamic, camel=camel, items=items)
        fields.append(f)
        by_camel[camel] = f
    indexed = tuple(f.name for f in fields if f.dynamic) + ("TITLE",)
    etid = int(spec["entityTypeId"])
    return SmartProcess(etid, int(spec.get("id", 0)), spec.get("title", str(etid)), Schema(etid, fields, indexed))


# --- values --------------------------------------------------------------------------------

_DMY = re.compile(r"^(\d{2})\.(\d{2})\.(\d{4})(?:\s+(\d{2}):(\d{2})(?::(\d{2}))?)?$")


def parse_datetime(value: Any, tz: timezone) -> float | None:
    """Unix seconds from ISO-8601, ``YYYY-MM-DD[ hh:mm:ss]`` or ``DD.MM.YYYY[ hh:mm[:ss]]``;
    ``None`` when unparseable (the server silently drops such values)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    m = _DMY.match(text)
    try:
        if m:
            d, mo, y, hh, mi, ss = m.groups()
            dt = datetime(int(y), int(mo), int(d), int(hh or 0), int(mi or 0), int(ss or 0))
        else:
            dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=tz)
    return dt.timestamp()


def parse_date(value: Any, tz: timezone) -> str | None:
    ts = parse_datetime(value, tz)
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, tz).date().isoformat()


def iso(ts: float | None, tz: timezone) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, tz).isoformat(timespec="seconds")


def date_iso(day: str | None, tz: timezone) -> str | None:
    if not day:
        return None
    return datetime.combine(date.fromisoformat(day), datetime.min.time(), tz).isoformat(timespec="seconds")


class Invalid(Exception):
    """A value that cannot be stored: the caller decides to drop it or to report it."""


def internal_value(f: Field, value: Any, tz: timezone) -> Any:
    """Convert an incoming value for ``f`` to the internal form; raises :class:`Invalid`."""
    if f.multiple and f.kind != "multi":
        if value is None or value == "":
            return []
        seq = list(value.values()) if isinstance(value, dict) else value if isinstance(value, list) else [value]
        out = []
        for v in seq:
            if isinstance(v, (dict, list)):
                continue
            try:
                iv = _scalar(f, v, tz)
            except Invalid:
                continue
            if iv is not None:
                out.append(iv)
        return out
    return _scalar(f, value, tz)


def _scalar(f: Field, value: Any, tz: timezone) -> Any:
    kind = f.kind
    if value is None:
        return None
    if kind == "str" and type(value) is str:
        return value
    if kind == "int":
        if value == "" or value is False:
            return None
        if f.type == "enumeration":
            iv = php_intval(value)
            if not f.items or str(iv) not in {i["ID"] for i in f.items}:
                raise Invalid(value)
            return iv
        # PHP intval semantics, so a whole-array $result substitution becomes 1.
        return php_intval(value)
    if kind == "float":
        if isinstance(value, (dict, list)):
            raise Invalid(value)
        try:
            return float(str(value).replace(",", ".")) if value != "" else None
        except ValueError:
            raise Invalid(value) from None
    if kind == "datetime":
        ts = parse_datetime(value, tz)
        if ts is None:
            raise Invalid(value)
        return ts
    if kind == "date":
        d = parse_date(value, tz)
        if d is None:
            raise Invalid(value)
        return d
    if kind == "boolean":
        if isinstance(value, str) and value.upper() in ("Y", "TRUE"):
            return True
        if isinstance(value, str) and value.upper() in ("N", "FALSE"):
            return False
        return php_truthy(value)
    if isinstance(value, (dict, list)):
        raise Invalid(value)
    if isinstance(value, bool):
        return "Y" if value else "N"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


def normalize_email(value: str) -> str:
    return value.strip().lower()


def normalize_phone(value: str) -> str:
    # Drop an extension ("доб. 12", "ext 12", "#12", "x12") before keeping the digits.
    main = re.split(r"(?i)\s*(?:доб\.?|ext\.?|#|x)\s*\d+\s*$", value.strip())[0]
    return re.sub(r"\D", "", main)


def normalize_comm(type_id: str, value: str) -> str:
    return normalize_email(value) if type_id == "EMAIL" else normalize_phone(value)


# --- queries -------------------------------------------------------------------------------

_OPS = ("!><", "!=", "!@", "!%", ">=", "<=", "=%", "%=", "><", ">", "<", "=", "!", "@", "%")


def split_operator(key: str) -> tuple[str, str]:
    for op in _OPS:
        if key.startswith(op):
            return op, key[len(op):]
    return "", key


def _like(pattern: str) -> re.Pattern:
    out = []
    for ch in pattern:
        out.append(".*" if ch == "%" else "." if ch == "_" else re.escape(ch))
    return re.compile("^" + "".join(out) + "$", re.IGNORECASE | re.DOTALL)


@dataclass
class Condition:
    field: Field
    op: str            # "eq", "ne", "gt", "ge", "lt", "le", "in", "nin", "like", "nlike", "pattern", "between", "nbetween"
    values: list
    test: Callable[[Any], bool] | None = None


def _coerce_filter_value(f: Field, value: Any, tz: timezone) -> Any:
    if value is None or value == "":
        return None
    kind = f.kind
    try:
        if kind == "int":
            return php_intval(value)
        if kind == "float":
            return float(value)
        if kind == "datetime":
            return parse_datetime(value, tz)
        if kind == "date":
            return parse_date(value, tz)
        if kind == "boolean":
            return _scalar(f, value, tz)
    except (ValueError, Invalid):
        return None
    if isinstance(value, bool):
        return "Y" if value else "N"
    return str(value)


def make_condition(f: Field, op: str, raw: Any, tz: timezone) -> Condition:
    """One filter clause (operator prefix already split off) as a predicate on stored values."""
    seq = list(raw.values()) if isinstance(raw, dict) else list(raw) if isinstance(raw, list) else None
    if op in ("@", "!@") and seq is None:
        seq = [v.strip() for v in str(raw).split(",")] if raw not in (None, "") else []
    if f.kind == "multi":
        # Multi-field filters are exact matches only; any operator collapses to equality.
        wanted = {str(v) for v in (seq if seq is not None else [raw]) if v not in (None, "")}
        negate = op in ("!", "!=", "!@")
        return Condition(f, "ne" if negate else "eq", sorted(wanted))
    if op in ("%", "!%", "=%", "%="):
        text = str(raw if seq is None else (seq[0] if seq else ""))
        if op in ("%", "!%"):
            needle = text.lower()
            test = (lambda v, n=needle: v is not None and n in str(v).lower())
        else:
            rx = _like(text)
            test = (lambda v, r=rx: v is not None and bool(r.match(str(v))))
        if op == "!%":
            inner = test
            test = (lambda v, t=inner: not t(v))
        return Condition(f, "like", [text], _lift(f, test))
    if op in ("><", "!><"):
        lo, hi = ((seq + [None, None])[:2]) if seq is not None else (raw, None)
        lo, hi = _coerce_filter_value(f, lo, tz), _coerce_filter_value(f, hi, tz)
        test = (lambda v, a=lo, b=hi: v is not None and a is not None and b is not None and a <= v <= b)
        if op == "!><":
            inner = test
            test = (lambda v, t=inner: not t(v))
        return Condition(f, "between", [lo, hi], _lift(f, test))
    if seq is not None or op in ("@", "!@"):
        values = [_coerce_filter_value(f, v, tz) for v in (seq or [])]
        negate = op in ("!", "!=", "!@")
        wanted = set(values)
        test = (lambda v, w=wanted: _empty_to_none(v) in w)
        if negate:
            inner = test
            test = (lambda v, t=inner: not t(v))
        return Condition(f, "nin" if negate else "in", values, _lift(f, test))
    value = _coerce_filter_value(f, raw, tz)
    if op in ("", "="):
        test = (lambda v, w=value: _empty_to_none(v) == w)
        return Condition(f, "eq", [value], _lift(f, test))
    if op in ("!", "!="):
        test = (lambda v, w=value: _empty_to_none(v) != w)
        return Condition(f, "ne", [value], _lift(f, test, any_mode=False))
    cmp = {">": lambda a, b: a > b, ">=": lambda a, b: a >= b, "<": lambda a, b: a < b, "<=": lambda a, b: a <= b}[op]
    name = {">": "gt", ">=": "ge", "<": "lt", "<=": "le"}[op]

    def test(v: Any, w: Any = value, c: Callable = cmp) -> bool:
        if v is None or w is None:
            return False
        try:
            return c(v, w)
        except TypeError:
            return c(str(v), str(w))
    return Condition(f, name, [value], _lift(f, test))


def _empty_to_none(v: Any) -> Any:
    return None if v == "" or v == [] else v


def _lift(f: Field, test: Callable[[Any], bool], any_mode: bool = True) -> Callable[[Any], bool]:
    """For a multiple field, a clause matches when any element matches (all, for negations)."""
    if not f.multiple:
        return test
    if any_mode:
        return lambda vs: any(test(v) for v in (vs or [None]))
    return lambda vs: all(test(v) for v in (vs or [None]))


# --- the store -----------------------------------------------------------------------------

_EMPTY: frozenset = frozenset()
_DEAL_DEFAULTS = {"TYPE_ID": "SALE", "CURRENCY_ID": "RUB", "OPPORTUNITY": 0.0, "IS_MANUAL_OPPORTUNITY": "N",
                  "OPENED": "Y", "IS_NEW": "Y", "IS_RECURRING": "N", "IS_RETURN_CUSTOMER": "N",
                  "IS_REPEATED_APPROACH": "N"}


class Table:
    """Records of one entity type with sorted ids and equality indexes."""

    def __init__(self, schema: Schema) -> None:
        self.schema = schema
        self.records: dict[int, dict] = {}
        self.ids: list[int] = []
        self.index: dict[str, dict[Any, set[int]]] = {name: {} for name in schema.indexed}

    def _index_add(self, rid: int, rec: dict) -> None:
        for name, idx in self.index.items():
            v = rec.get(name)
            if v is None or v == "":
                continue
            if type(v) is list:
                for key in v:
                    if key is not None and key != "":
                        idx.setdefault(key, set()).add(rid)
                continue
            bucket = idx.get(v)
            if bucket is None:
                idx[v] = {rid}
            else:
                bucket.add(rid)

    def _index_remove(self, rid: int, rec: dict) -> None:
        for name, idx in self.index.items():
            v = rec.get(name)
            for key in (v if isinstance(v, list) else [v]):
                bucket = idx.get(key)
                if bucket is not None:
                    bucket.discard(rid)
                    if not bucket:
                        del idx[key]

    def insert(self, rid: int, rec: dict) -> None:
        self.records[rid] = rec
        if not self.ids or rid > self.ids[-1]:
            self.ids.append(rid)
        else:
            bisect.insort(self.ids, rid)
        self._index_add(rid, rec)

    def update(self, rid: int, changes: dict) -> None:
        rec = self.records[rid]
        touched = [k for k in changes if k in self.index]
        if touched:
            self._index_remove(rid, rec)
        rec.update(changes)
        if touched:
            self._index_add(rid, rec)

    def delete(self, rid: int) -> None:
        rec = self.records.pop(rid)
        self._index_remove(rid, rec)
        i = bisect.bisect_left(self.ids, rid)
        if i < len(self.ids) and self.ids[i] == rid:
            self.ids.pop(i)

    def candidates(self, conds: list[Condition], extra_sets: list[set[int]]) -> list[int] | None:
        """Ids narrowed by index look-ups (sorted), or ``None`` when no index applies."""
        sets: list[set[int]] = list(extra_sets)
        for c in conds:
            name = c.field.name
            if name == "ID" and c.op in ("eq", "in"):
                sets.append({v for v in c.values if isinstance(v, int) and v in self.records})
            elif name in self.index and c.op in ("eq", "in") and None not in c.values:
                idx = self.index[name]
                if len(c.values) == 1:
                    sets.append(idx.get(c.values[0], _EMPTY))
                else:
                    s: set[int] = set()
                    for v in c.values:
                        s |= idx.get(v, _EMPTY)
                    sets.append(s)
        if not sets:
            return None
        sets.sort(key=len)
        result = set(sets[0])
        for s in sets[1:]:
            result.intersection_update(s)
        return sorted(result)

    def id_range(self, conds: list[Condition]) -> tuple[int, int]:
        lo, hi = 0, len(self.ids)
        for c in conds:
            if c.field.name != "ID" or not c.values or not isinstance(c.values[0], int):
                continue
            v = c.values[0]
            if c.op == "gt":
                lo = max(lo, bisect.bisect_right(self.ids, v))
            elif c.op == "ge":
                lo = max(lo, bisect.bisect_left(self.ids, v))
            elif c.op == "lt":
                hi = min(hi, bisect.bisect_left(self.ids, v))
            elif c.op == "le":
                hi = min(hi, bisect.bisect_right(self.ids, v))
        return lo, hi


@dataclass
class Page:
    ids: list[int]
    total: int | None     # None when not counted (start = -1)
    more: bool


class CRM:
    """All CRM state of one portal; every public method expects the caller to hold ``lock``."""

    def __init__(self, portal: dict | str | Path, *, clock: Callable[[], float], tz: timezone, caller_id: int,
                 enforce_required: bool = False, php_booleans: bool | None = None) -> None:
        """``portal``: a description, a path to one, or a name from :data:`PORTAL_NAMES`.

        ``enforce_required``: ``crm.contact.add``/``update`` refuse a contact missing a field the
        portal flags required (real-portal.md: whether the real REST add enforces it is
        unconfirmed, so a test switches it on to see the job cope). ``php_booleans``: legacy
        ``crm.deal.*``/``crm.contact.*`` store boolean user fields as PHP's ``value ? 1 : 0``, so
        the string ``"N"`` is stored as yes (bitrix24-rest.md §10); default on for a portal with
        universal lists (the real one), off for the smart-process portal, whose tests and mapping
        were written against the Y/N reading.
        """
        if not isinstance(portal, dict):
            portal = load_portal(portal)
        self.lock = threading.RLock()
        self.portal = portal
        self.enforce_required = enforce_required
        self.php_booleans = ("lists" in portal) if php_booleans is None else php_booleans
        self.clock = clock
        self.tz = tz
        self.caller_id = caller_id
        self.default_responsible = int(portal.get("default_responsible_user_id") or caller_id)
        deal = portal.get("deal", {})
        self.categories = [{"ID": str(c["ID"]), "NAME": c["NAME"]} for c in deal.get("categories", [{"ID": "0", "NAME": "Общая"}])]
        # Stages are plain ids (semantics from the WON/LOSE suffix) or {"STATUS_ID", "SEMANTICS"}.
        self.stages: dict[int, list[str]] = {}
        self.stage_semantics: dict[str, str] = {}
        for cat, stages in deal.get("stages", {"0": ["NEW"]}).items():
            ids = []
            for st in stages:
                if isinstance(st, dict):
                    ids.append(str(st["STATUS_ID"]))
                    if st.get("SEMANTICS"):
                        self.stage_semantics[str(st["STATUS_ID"])] = str(st["SEMANTICS"]).upper()
                else:
                    ids.append(str(st))
            self.stages[int(cat)] = ids
        self.sources: list[str] = list(deal.get("sources", ["WEB"]))
        self.users: list[dict] = [dict(u) for u in portal.get("users", [])]
        contact_fields = contact_standard_fields() + _user_fields(portal.get("contact", {}).get("user_fields"))
        required = set(portal.get("contact", {}).get("required_fields", []))
        for f in contact_fields:
            if f.name in required:
                f.required = True
        self.contact_schema = Schema(CONTACT_ENTITY_TYPE_ID, contact_fields, indexed=("ORIGIN_ID", "ORIGINATOR_ID"))
        deal_ufs = _user_fields(deal.get("user_fields"))
        # The deal's programme link is looked up per contact and programme: index it like the answer id.
        links = tuple(f.name for f in deal_ufs if f.type == "iblock_element")
        self.deal_schema = Schema(DEAL_ENTITY_TYPE_ID, deal_standard_fields(deal.get("relations", [])) + deal_ufs,
                                  indexed=("ORIGIN_ID", "ORIGINATOR_ID", "CONTACT_ID", "UF_CRM_ANSWER_ID") + links)
        self.smart_processes: dict[int, SmartProcess] = {
            int(sp["entityTypeId"]): _smart_process(sp) for sp in portal.get("smart_processes", [])}
        self._templates: dict[tuple[int, int], tuple[dict, list[str]]] = {}
        self.reset()

    def _blank(self, schema: Schema, defaults: dict | None = None) -> dict:
        """A record with every stored field unset but ``defaults`` (fresh lists for multiple fields)."""
        key = (id(schema), id(defaults))
        cached = self._templates.get(key)
        if cached is None:
            stored = [f for f in schema.fields if f.kind != "multi"]
            template = {f.name: None for f in stored}
            template.update({k: v for k, v in (defaults or {}).items() if k in template})
            cached = (template, [f.name for f in stored if f.multiple])
            self._templates[key] = cached
        rec = dict(cached[0])
        for name in cached[1]:
            rec[name] = []
        return rec

    # ---- life cycle ----

    def reset(self) -> None:
        self.contacts = Table(self.contact_schema)
        self.deals = Table(self.deal_schema)
        self.items: dict[int, Table] = {etid: Table(sp.schema) for etid, sp in self.smart_processes.items()}
        self.multi: dict[int, dict] = {}                 # multi-field id -> row
        self.contact_multi: dict[int, list[int]] = {}    # contact id -> multi-field ids
        self.multi_exact: dict[str, dict[str, set[int]]] = {t: {} for t in MULTI_FIELD_TYPES}
        self.comm_index: dict[str, dict[str, set[int]]] = {"EMAIL": {}, "PHONE": {}}
        self.next_contact_id = 1
        self.next_deal_id = 1
        self.next_multi_id = 1
        self.next_item_id: dict[int, int] = {etid: 1 for etid in self.smart_processes}
        self.lists = ListStore(self.portal.get("lists", []), now=self.now, caller_id=self.caller_id)
        self.timeline = TimelineStore(now=self.now)
        for c in self.portal.get("existing_contacts", []):
            self.add_contact(dict(c))
        for d in self.portal.get("existing_deals", []):
            self.add_deal(self._seed_fields(self.deal_schema, d))
        for etid, sp_spec in ((int(sp["entityTypeId"]), sp) for sp in self.portal.get("smart_processes", [])):
            for item in sp_spec.get("items", []):
                self.add_item(etid, dict(item))

    def now(self) -> float:
        return self.clock()

    def _seed_fields(self, schema: Schema, row: dict) -> dict:
        """A seeded record's legacy fields in internal form (unknown or invalid values dropped)."""
        out: dict[str, Any] = {}
        for key, value in row.items():
            f = schema.by_name.get(key)
            if f is None:
                continue
            if f.kind == "multi" or key == "ID":
                out[key] = value
                continue
            try:
                out[key] = internal_value(f, value, self.tz)
            except Invalid:
                continue
        return out

    # ---- plain views for tests (take the lock themselves) ----

    def dump_list_elements(self, iblock_id: int) -> list[dict]:
        """Elements of universal list ``iblock_id``: ``{"ID", "NAME", "CODE", ..., "PROPERTY_<id>": [values]}``."""
        with self.lock:
            return self.lists.dump(self.lists.lists[int(iblock_id)])

    def dump_timeline_comments(self, entity_type: str | None = None, entity_id: int | None = None) -> list[dict]:
        """Timeline comments (of one record when given), oldest first, ``CREATED`` as ISO-8601."""
        with self.lock:
            return [dict(c, CREATED=iso(c["CREATED"], self.tz))
                    for c in self.timeline.of(entity_type, int(entity_id) if entity_id is not None else None)]

    # ---- users / statuses ----

    def user(self, user_id: int) -> dict | None:
        for u in self.users:
            if int(u["ID"]) == user_id:
                return u
        return None

    def stage_list(self, category_id: int) -> list[str]:
        return self.stages.get(category_id) or []

    # ---- multi-fields ----

    def multi_rows(self, contact_id: int, type_id: str | None = None) -> list[dict]:
        rows = [self.multi[m] for m in self.contact_multi.get(contact_id, [])]
        return [r for r in rows if type_id is None or r["TYPE_ID"] == type_id]

    def _multi_index(self, row: dict, add: bool) -> None:
        t, cid = row["TYPE_ID"], row["ELEMENT_ID"]
        keys = [(self.multi_exact[t], row["VALUE"])]
        if t in self.comm_index:
            norm = normalize_comm(t, row["VALUE"])
            if norm:
                keys.append((self.comm_index[t], norm))
        for idx, key in keys:
            if add:
                idx.setdefault(key, set()).add(cid)
            else:
                bucket = idx.get(key)
                if bucket is not None:
                    # Another value of the same contact may normalise to the same key.
                    still = any(r is not row and r["TYPE_ID"] == t and (
                        r["VALUE"] == key if idx is self.multi_exact[t] else normalize_comm(t, r["VALUE"]) == key)
                        for r in self.multi_rows(cid))
                    if not still:
                        bucket.discard(cid)
                        if not bucket:
                            del idx[key]

    def multi_add(self, contact_id: int, type_id: str, value: str, value_type: str) -> int:
        mid = self.next_multi_id
        self.next_multi_id += 1
        row = {"ID": mid, "TYPE_ID": type_id, "VALUE_TYPE": value_type, "VALUE": value, "ELEMENT_ID": contact_id}
        self.multi[mid] = row
        self.contact_multi.setdefault(contact_id, []).append(mid)
        self._multi_index(row, add=True)
        return mid

    def multi_update(self, mid: int, value: str, value_type: str | None) -> None:
        row = self.multi[mid]
        self._multi_index(row, add=False)
        row["VALUE"] = value
        if value_type:
            row["VALUE_TYPE"] = value_type
        self._multi_index(row, add=True)

    def multi_delete(self, mid: int) -> None:
        row = self.multi[mid]
        self.contact_multi[row["ELEMENT_ID"]].remove(mid)
        self._multi_index(row, add=False)
        del self.multi[mid]

    def apply_multi_fields(self, contact_id: int, incoming: dict[str, list[dict]], *, update: bool) -> None:
        """Multi-field semantics (bitrix24-rest.md §6.3): no ID -> append; ID + value -> update;
        ID + ``DELETE=Y`` or empty value -> delete; blank new values skipped; trimmed; <=250 chars."""
        for type_id, entries in incoming.items():
            own = {r["ID"]: r for r in self.multi_rows(contact_id, type_id)}
            for entry in entries:
                value = entry.get("VALUE")
                value = value.strip()[:MULTI_FIELD_VALUE_MAX] if isinstance(value, str) else (
                    str(value).strip() if isinstance(value, (int, float)) and not isinstance(value, bool) else "")
                value_type = entry.get("VALUE_TYPE")
                value_type = value_type.strip().upper() if isinstance(value_type, str) and value_type.strip() else None
                mid = php_intval(entry.get("ID")) if update and entry.get("ID") not in (None, "") else 0
                if mid:
                    if mid not in own:
                        continue
                    delete = str(entry.get("DELETE", "")).upper() == "Y" or not value
                    if delete:
                        self.multi_delete(mid)
                    else:
                        self.multi_update(mid, value, value_type)
                    continue
                if value:
                    self.multi_add(contact_id, type_id, value, value_type or "WORK")
        self._refresh_has_flags(contact_id)

    def _refresh_has_flags(self, contact_id: int) -> None:
        rec = self.contacts.records.get(contact_id)
        if rec is None:
            return
        types = {r["TYPE_ID"] for r in self.multi_rows(contact_id)}
        rec["HAS_PHONE"] = "Y" if "PHONE" in types else "N"
        rec["HAS_EMAIL"] = "Y" if "EMAIL" in types else "N"
        rec["HAS_IMOL"] = "Y" if any(r["TYPE_ID"] == "IM" and r["VALUE_TYPE"] in ("OPENLINE", "IMOL")
                                     for r in self.multi_rows(contact_id)) else "N"

    # ---- contacts ----

    def add_contact(self, fields: dict, *, author: int | None = None) -> int:
        """Insert a contact from already-internalised legacy fields plus raw multi-field lists."""
        author = author or self.caller_id
        rid = int(fields.pop("ID", 0) or 0) or self.next_contact_id
        self.next_contact_id = max(self.next_contact_id, rid + 1)
        multi = {t: fields.pop(t) for t in list(fields) if t in MULTI_FIELD_TYPES}
        now = self.now()
        rec = self._blank(self.contact_schema)
        rec.update({"OPENED": "Y", "EXPORT": "Y", "TYPE_ID": "CLIENT", "SOURCE_ID": self.sources[0] if self.sources else None,
                    "ASSIGNED_BY_ID": author, "CREATED_BY_ID": author, "MODIFY_BY_ID": author,
                    "DATE_CREATE": now, "DATE_MODIFY": now})
        rec.update({k: v for k, v in fields.items() if k in rec})
        if not (rec.get("NAME") or "").strip() and not (rec.get("LAST_NAME") or "").strip():
            rec["NAME"] = "Без имени"
        rec["ID"] = rid
        self.contacts.insert(rid, rec)
        self.contact_multi.setdefault(rid, [])
        self.apply_multi_fields(rid, {t: _entries(v) for t, v in multi.items()}, update=False)
        return rid

    def update_contact(self, rid: int, fields: dict, *, author: int | None = None) -> None:
        multi = {t: fields.pop(t) for t in list(fields) if t in MULTI_FIELD_TYPES}
        changes = {k: v for k, v in fields.items() if k in self.contacts.records[rid]}
        changes["MODIFY_BY_ID"] = author or self.caller_id
        changes["DATE_MODIFY"] = self.now()
        self.contacts.update(rid, changes)
        if multi:
            self.apply_multi_fields(rid, {t: _entries(v) for t, v in multi.items()}, update=True)

    # ---- deals ----

    def add_deal(self, fields: dict, *, author: int | None = None) -> int:
        author = author or self.caller_id
        rid = int(fields.pop("ID", 0) or 0) or self.next_deal_id
        self.next_deal_id = max(self.next_deal_id, rid + 1)
        now = self.now()
        category = fields.get("CATEGORY_ID")
        category = category if isinstance(category, int) and category in self.stages else 0
        stages = self.stage_list(category)
        begin, close = self._deal_dates(now)
        rec = self._blank(self.deal_schema, _DEAL_DEFAULTS)
        rec["ASSIGNED_BY_ID"] = rec["CREATED_BY_ID"] = rec["MODIFY_BY_ID"] = rec["MOVED_BY_ID"] = author
        rec["DATE_CREATE"] = rec["DATE_MODIFY"] = rec["MOVED_TIME"] = now
        rec["BEGINDATE"], rec["CLOSEDATE"] = begin, close
        for k, v in fields.items():
            if k in rec:
                rec[k] = v
        rec["ID"] = rid
        rec["CATEGORY_ID"] = category
        if rec.get("STAGE_ID") not in stages:
            rec["STAGE_ID"] = stages[0] if stages else None
        if not rec.get("TITLE"):
            rec["TITLE"] = f"Сделка #{rid}"
        self._sync_contacts(rec, fields)
        self._stage_semantics(rec)
        self.deals.insert(rid, rec)
        return rid

    def _deal_dates(self, now: float) -> tuple[str, str]:
        """Default BEGINDATE (today) and CLOSEDATE (+7 days), cached per day for bulk seeding."""
        day = int((now + self.tz.utcoffset(None).total_seconds()) // 86400)
        cached = getattr(self, "_deal_dates_cache", None)
        if cached is None or cached[0] != day:
            today = datetime.fromtimestamp(now, self.tz).date()
            cached = (day, today.isoformat(), (today + timedelta(days=7)).isoformat())
            self._deal_dates_cache = cached
        return cached[1], cached[2]

    def update_deal(self, rid: int, fields: dict, *, author: int | None = None) -> None:
        rec = self.deals.records[rid]
        changes = {k: v for k, v in fields.items() if k in rec and k != "CATEGORY_ID"}
        if "STAGE_ID" in changes and changes["STAGE_ID"] not in self.stage_list(rec["CATEGORY_ID"]):
            del changes["STAGE_ID"]
        if "STAGE_ID" in changes and changes["STAGE_ID"] != rec["STAGE_ID"]:
            changes["MOVED_TIME"] = self.now()
            changes["MOVED_BY_ID"] = author or self.caller_id
        merged = dict(rec, **changes)
        self._sync_contacts(merged, fields)
        changes["CONTACT_ID"], changes["CONTACT_IDS"] = merged["CONTACT_ID"], merged["CONTACT_IDS"]
        changes["MODIFY_BY_ID"] = author or self.caller_id
        changes["DATE_MODIFY"] = self.now()
        self._stage_semantics(merged)
        for k in ("STAGE_SEMANTIC_ID", "CLOSED"):
            changes[k] = merged[k]
        self.deals.update(rid, changes)

    @staticmethod
    def _sync_contacts(rec: dict, given: dict) -> None:
        """``CONTACT_IDS`` replaces the bindings; ``CONTACT_ID`` alone sets a single one."""
        if "CONTACT_IDS" in given:
            ids = [i for i in dict.fromkeys(given["CONTACT_IDS"] or []) if i]
            rec["CONTACT_IDS"] = ids
            rec["CONTACT_ID"] = ids[0] if ids else None
        elif "CONTACT_ID" in given:
            cid = given["CONTACT_ID"]
            rec["CONTACT_IDS"] = [cid] if cid else []
            rec["CONTACT_ID"] = cid or None

    def semantics_of(self, stage: str) -> str:
        """``P`` (in progress), ``S`` (won) or ``F`` (lost): as the portal declares, else by suffix."""
        if stage in self.stage_semantics:
            return self.stage_semantics[stage]
        return "S" if stage.endswith("WON") else "F" if stage.endswith("LOSE") else "P"

    def _stage_semantics(self, rec: dict) -> None:
        semantic = self.semantics_of(str(rec.get("STAGE_ID") or ""))
        rec["STAGE_SEMANTIC_ID"] = semantic
        rec["CLOSED"] = "N" if semantic == "P" else "Y"

    # ---- smart-process items ----

    def add_item(self, etid: int, fields: dict, *, author: int | None = None) -> int:
        """Insert an item from internal values keyed by legacy (UPPER) names or camel names."""
        table = self.items[etid]
        schema = table.schema
        author = author or self.caller_id
        rid = int(fields.pop("id", 0) or fields.pop("ID", 0) or 0) or self.next_item_id[etid]
        self.next_item_id[etid] = max(self.next_item_id[etid], rid + 1)
        now = self.now()
        rec = self._blank(schema)
        rec.update({"ASSIGNED_BY_ID": author, "CREATED_BY": author, "UPDATED_BY": author,
                    "CREATED_TIME": now, "UPDATED_TIME": now, "OPENED": True})
        for k, v in fields.items():
            f = schema.resolve(k)
            if f is not None:
                rec[f.name] = v
        rec["ID"] = rid
        table.insert(rid, rec)
        return rid

    def update_item(self, etid: int, rid: int, fields: dict, *, author: int | None = None) -> None:
        table = self.items[etid]
        changes = {}
        for k, v in fields.items():
            f = table.schema.resolve(k)
            if f is not None:
                changes[f.name] = v
        changes["UPDATED_BY"] = author or self.caller_id
        changes["UPDATED_TIME"] = self.now()
        table.update(rid, changes)

    # ---- queries ----

    def table(self, entity_type_id: int) -> Table | None:
        if entity_type_id == CONTACT_ENTITY_TYPE_ID:
            return self.contacts
        if entity_type_id == DEAL_ENTITY_TYPE_ID:
            return self.deals
        return self.items.get(entity_type_id)

    def query(self, table: Table, conds: list[Condition], order: list[tuple[str, bool]], *,
              offset: int, limit: int, count: bool) -> Page:
        """Rows matching every condition, ordered, one page of ``limit`` from ``offset``."""
        multi_conds = [c for c in conds if c.field.kind == "multi"]
        plain = [c for c in conds if c.field.kind != "multi"]
        extra: list[set[int]] = []
        for c in multi_conds:
            if c.op == "eq":
                idx = self.multi_exact.get(c.field.name, {})
                s: set[int] = set()
                for v in c.values:
                    s |= idx.get(v, _EMPTY)
                extra.append(s)
        negated_multi = [c for c in multi_conds if c.op == "ne"]
        tests = [(c.field.name, c.test) for c in plain if c.test is not None]

        def matches(rid: int) -> bool:
            rec = table.records[rid]
            for name, test in tests:
                if not test(rec.get(name)):
                    return False
            for c in negated_multi:
                vals = {r["VALUE"] for r in self.multi_rows(rid, c.field.name)}
                if vals & set(c.values):
                    return False
            return True

        by_id_only = not order or (len(order) == 1 and order[0][0] == "ID")
        descending = bool(order) and order[0][1]
        cands = table.candidates(plain, extra)
        if cands is None:
            lo, hi = table.id_range(plain)
            source: Iterable[int] = table.ids[lo:hi]
        else:
            source = cands
        if by_id_only:
            iterator: Iterator[int] = iter(reversed(list(source)) if descending else source)
            if not count:
                out = []
                for rid in iterator:
                    if matches(rid):
                        if offset > 0:
                            offset -= 1
                            continue
                        out.append(rid)
                        if len(out) > limit:
                            break
                return Page(out[:limit], None, len(out) > limit)
            matched = [rid for rid in iterator if matches(rid)]
        else:
            matched = [rid for rid in source if matches(rid)]
            for name, desc in reversed(order):
                matched.sort(key=lambda rid, n=name: _sort_key(table.records[rid].get(n)), reverse=desc)
        page = matched[offset:offset + limit]
        return Page(page, len(matched) if count else None, offset + limit < len(matched))

    # ---- plain dumps (admin) ----

    def dump_contact(self, rid: int) -> dict:
        rec = dict(self.contacts.records[rid])
        for t in MULTI_FIELD_TYPES:
            rows = self.multi_rows(rid, t)
            if rows:
                rec[t] = [{"ID": r["ID"], "VALUE_TYPE": r["VALUE_TYPE"], "VALUE": r["VALUE"], "TYPE_ID": t} for r in rows]
        return _plain(rec, self.tz)

    def dump_deal(self, rid: int) -> dict:
        return _plain(dict(self.deals.records[rid]), self.tz)

    def dump_item(self, etid: int, rid: int) -> dict:
        table = self.items[etid]
        rec = table.records[rid]
        out = {"entityTypeId": etid}
        for f in table.schema.fields:
            out[f.camel] = _plain_value(f, rec.get(f.name), self.tz)
        return out


def _entries(value: Any) -> list[dict]:
    """Multi-field input as a list of entry dicts; a bare string becomes one entry."""
    if isinstance(value, str):
        return [{"VALUE": value}]
    seq = list(value.values()) if isinstance(value, dict) else value if isinstance(value, list) else []
    return [e for e in seq if isinstance(e, dict)]


def _sort_key(v: Any) -> tuple:
    if v is None:
        return (0, 0, "")
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return (1, v, "")
    return (2, 0, str(v).lower())


def _plain_value(f: Field, v: Any, tz: timezone) -> Any:
    if f.kind == "datetime" and isinstance(v, (int, float)):
        return iso(v, tz)
    if f.kind == "date" and isinstance(v, str):
        return date_iso(v, tz)
    return v


def _plain(rec: dict, tz: timezone) -> dict:
    out = {}
    for k, v in rec.items():
        if k in ("DATE_CREATE", "DATE_MODIFY", "MOVED_TIME", "LAST_ACTIVITY_TIME") and isinstance(v, (int, float)):
            v = iso(v, tz)
        out[k] = v
    return out
