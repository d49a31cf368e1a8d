"""One function per REST method, over :class:`.state.CRM`.

A method takes ``(ctx, params, start)`` -- ``start`` is the ``start`` query parameter
already taken out of ``params`` the way ``CRestServer::processCall`` does -- and returns
a :class:`Result` (``result`` plus the ``total``/``next`` the server lifts into the
envelope) or raises :class:`RestError`. The caller holds the CRM lock.

Two dialects are rendered here: legacy ``crm.contact.*``/``crm.deal.*`` rows (UPPER
names, every scalar a string, ``add`` -> ``int``, ``update`` -> ``true``, errors with an
empty ``error`` code) and ``crm.item.*`` (camelCase, typed, ``{"item": ...}``).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable

from .params import (is_array, items_of, php_intval, php_truthy, pick, resolve_array_param, resolve_entity_id,
                     resolve_multipart_param, values_of)
from .state import (CONTACT_ENTITY_TYPE_ID, CRM, DEAL_ENTITY_TYPE_ID, MULTI_FIELD_TYPES, Condition, Field, Invalid,
                    Schema, Table, date_iso, internal_value, iso, make_condition, normalize_comm, split_operator)

PAGE_SIZE = 50


class RestError(Exception):
    """A REST error answer: ``{"error": code, "error_description": description}`` with ``status``."""

    def __init__(self, code: str, description: str, status: int = 400, extra: dict | None = None) -> None:
        super().__init__(f"{code}: {description}")
        self.code = code
        self.description = description
        self.status = status
        self.extra = extra or {}

    def body(self) -> dict:
        return {"error": self.code, "error_description": self.description, **self.extra}


def legacy_error(description: str) -> RestError:
    return RestError("", description, 400)


@dataclass
class Result:
    result: Any
    total: int | None = None
    next: int | None = None


@dataclass
class Context:
    crm: CRM
    user_id: int
    scopes: tuple[str, ...]
    tz: timezone
    batch_import_max: int = 20
    license: str = "ru_project"


@dataclass
class Method:
    name: str
    scope: str          # "" = global (no scope needed)
    fn: Callable[[Context, dict, int | None], Result]


REGISTRY: dict[str, Method] = {}
ALL_SCOPES = ("crm", "user", "user_brief", "user_basic", "lists", "department", "entity", "im", "task", "disk")


def method(name: str, scope: str) -> Callable:
    def deco(fn: Callable) -> Callable:
        REGISTRY[name.lower()] = Method(name, scope, fn)
        return fn
    return deco


# --- value rendering -----------------------------------------------------------------------

def _php_float(v: float) -> str:
    text = repr(float(v))
    return text[:-2] if text.endswith(".0") else text


def legacy_value(f: Field, v: Any, tz: timezone) -> Any:
    """A stored value as the legacy CRM REST renders it: strings, ``null``, ISO dates."""
    if v is None:
        return None
    if isinstance(v, list):
        return [legacy_value(_scalar_field(f), x, tz) for x in v]
    kind = f.kind
    if kind == "datetime":
        return iso(v, tz)
    if kind == "date":
        return date_iso(v, tz)
    if kind == "boolean":
        return "1" if v else "0"
    if kind == "float":
        return f"{v:.2f}" if f.name in ("OPPORTUNITY", "TAX_VALUE") else _php_float(v)
    return str(v)


def item_value(f: Field, v: Any, tz: timezone) -> Any:
    """A stored value as ``crm.item.*`` renders it: typed JSON."""
    if v is None:
        return [] if f.multiple else None
    if isinstance(v, list):
        return [item_value(_scalar_field(f), x, tz) for x in v]
    kind = f.kind
    if kind == "datetime":
        return iso(v, tz)
    if kind == "date":
        return date_iso(v, tz)
    if kind == "boolean":
        return "Y" if v else "N"
    return v


def _scalar_field(f: Field) -> Field:
    return Field(f.name, f.type, f.title, camel=f.camel)


def multi_rows_legacy(crm: CRM, contact_id: int, type_id: str) -> list[dict]:
    return [{"ID": str(r["ID"]), "VALUE_TYPE": r["VALUE_TYPE"], "VALUE": r["VALUE"], "TYPE_ID": type_id}
            for r in crm.multi_rows(contact_id, type_id)]


def descriptor(f: Field, *, item: bool, use_original: bool = False) -> dict:
    d: dict[str, Any] = {"type": f.type, "isRequired": f.required, "isReadOnly": f.read_only,
                         "isImmutable": f.immutable, "isMultiple": f.multiple, "isDynamic": f.dynamic,
                         "title": f.name if (f.dynamic and not item) else f.title}
    if f.status_type:
        d["statusType"] = f.status_type
    if f.items is not None:
        d["items"] = [dict(i) for i in f.items]
    if f.dynamic:
        d.update({"listLabel": f.title, "formLabel": f.title, "filterLabel": f.title,
                  "settings": dict(f.settings or {})})
    if item:
        d["upperName"] = f.name
        if f.dynamic and not use_original:
            d["title"] = f.title
    return d


# --- shared request parsing ----------------------------------------------------------------

def _array_param(params: dict, name: str) -> Any:
    value = resolve_array_param(params, name)
    if value is None or value == "":
        return None
    if not is_array(value):
        raise legacy_error(f"Parameter '{name}' must be array.")
    return value


def _order(value: Any, resolve: Callable[[str], Field | None], *, strict: bool) -> list[tuple[str, bool]]:
    out = []
    for key, direction in items_of(value):
        f = resolve(str(key))
        if f is None:
            if strict:
                raise RestError("INVALID_ARG_VALUE", f"Invalid order: field '{key}' is not allowed in order")
            continue
        out.append((f.name, str(direction).strip().upper() == "DESC"))
    return out


def _conditions(crm: CRM, value: Any, resolve: Callable[[str], Field | None], *, strict: bool) -> list[Condition]:
    conds = []
    for key, raw in items_of(value):
        op, name = split_operator(str(key))
        f = resolve(name)
        if f is None or not f.filterable:
            if strict:
                raise RestError("INVALID_ARG_VALUE", f"Invalid filter: field '{name}' is not allowed in filter")
            continue
        conds.append(make_condition(f, op, raw, crm.tz))
    return conds


def _legacy_nav(start: int | None) -> tuple[int, bool]:
    """(offset, count): ``start >= 0`` pages of 50 (rounded down to a page); ``< 0`` no count."""
    if start is None:
        return 0, True
    if start < 0:
        return 0, False
    return (start // PAGE_SIZE) * PAGE_SIZE, True


def _page_result(rows: list, page, offset: int) -> Result:
    if page.total is None:
        return Result(rows, total=0)
    return Result(rows, total=page.total, next=(offset + PAGE_SIZE) if page.more else None)


# --- legacy entities -----------------------------------------------------------------------

_EMAIL_RX = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_EMAIL_TYPE_TITLES = {"WORK": "Work", "HOME": "Home", "MAILING": "Mailing", "OTHER": "Other"}


def _internalize_legacy(ctx: Context, schema: Schema, fields: Any, *, update: bool) -> dict:
    """Known, writable fields converted to internal values; everything else silently dropped."""
    out: dict[str, Any] = {}
    for key, value in items_of(fields):
        f = schema.by_name.get(str(key))
        if f is None or f.read_only or (update and f.immutable):
            continue
        if f.kind == "multi":
            if is_array(value) or isinstance(value, str):
                out[f.name] = value
            continue
        if f.kind == "boolean" and f.dynamic and ctx.crm.php_booleans:
            # main's BooleanType stores (value ? 1 : 0): the string "N" is truthy in PHP.
            out[f.name] = php_truthy(value)
            continue
        try:
            out[f.name] = internal_value(f, value, ctx.tz)
        except Invalid:
            continue
    return out


def _check_required_contact(ctx: Context, data: dict, *, update: bool) -> None:
    """With ``enforce_required``: ``CCrmContact::CheckFields`` refuses an empty required field
    (on update only the fields being written). The wording of a real portal is unconfirmed
    (bitrix24-rest.md §7): this is CRM's ``CRM_ERROR_FIELD_IS_MISSING`` with its ``<br />``."""
    if not ctx.crm.enforce_required:
        return
    for f in ctx.crm.contact_schema.fields:
        if not f.required or (update and f.name not in data):
            continue
        value = data.get(f.name)
        if value is None or (isinstance(value, str) and not value.strip()):
            raise RestError("ERROR_CORE", f"Не заполнено обязательное поле \"{f.title}\"<br />", 400)


def _check_emails(fields: dict) -> None:
    entries = fields.get("EMAIL")
    seq = [{"VALUE": entries}] if isinstance(entries, str) else values_of(entries)
    for entry in seq:
        if not isinstance(entry, dict):
            continue
        value = entry.get("VALUE")
        if not isinstance(value, str) or not value.strip():
            continue
        if str(entry.get("DELETE", "")).upper() == "Y":
            continue
        if not _EMAIL_RX.match(value.strip()):
            vt = str(entry.get("VALUE_TYPE") or "WORK").upper()
            label = _EMAIL_TYPE_TITLES.get(vt, vt.title())
            raise RestError("ERROR_CORE", f"Field \"{label} e-mail\" contains an invalid e-mail address: "
                                          f"\"{value.strip()}\"", 400)


def legacy_select(schema: Schema, select: Any) -> list[Field]:
    names = [str(n) for n in values_of(select) if isinstance(n, (str, int))]
    if not names:
        names = ["*", "UF_*"]
    chosen: dict[str, Field] = {"ID": schema.by_name["ID"]}
    for n in names:
        if n == "*":
            chosen.update({f.name: f for f in schema.fields if f.in_star and not f.dynamic})
        elif n == "UF_*":
            chosen.update({f.name: f for f in schema.fields if f.dynamic})
        else:
            f = schema.by_name.get(n)
            if f is not None and (f.in_star or f.kind == "multi" or f.dynamic):
                chosen[f.name] = f
    order = {f.name: i for i, f in enumerate(schema.fields)}
    return sorted(chosen.values(), key=lambda f: order[f.name])


def legacy_row(ctx: Context, schema: Schema, rec: dict, fields: list[Field]) -> dict:
    row: dict[str, Any] = {}
    for f in fields:
        if f.kind == "multi":
            rows = multi_rows_legacy(ctx.crm, rec["ID"], f.name)
            if rows:
                row[f.name] = rows
            continue
        row[f.name] = legacy_value(f, rec.get(f.name), ctx.tz)
    return row


def _legacy_table(ctx: Context, entity: str) -> Table:
    return ctx.crm.contacts if entity == "contact" else ctx.crm.deals


def _legacy_list(ctx: Context, params: dict, start: int | None, entity: str) -> Result:
    table = _legacy_table(ctx, entity)
    schema = table.schema
    filt = _array_param(params, "filter")
    order_p = _array_param(params, "order")
    select = _array_param(params, "select")
    conds = _conditions(ctx.crm, filt, schema.by_name.get, strict=False)
    order = _order(order_p, schema.by_name.get, strict=False) or [("ID", False)]
    offset, count = _legacy_nav(start)
    page = ctx.crm.query(table, conds, order, offset=offset, limit=PAGE_SIZE, count=count)
    fields = legacy_select(schema, select)
    rows = [legacy_row(ctx, schema, table.records[rid], fields) for rid in page.ids]
    return _page_result(rows, page, offset)


def _legacy_get(ctx: Context, params: dict, entity: str) -> Result:
    rid = resolve_entity_id(params)
    if rid <= 0:
        raise legacy_error("ID is not defined or invalid.")
    table = _legacy_table(ctx, entity)
    rec = table.records.get(rid)
    if rec is None:
        raise legacy_error("Not found")
    fields = [f for f in table.schema.fields if f.name != "CONTACT_IDS"]
    return Result(legacy_row(ctx, table.schema, rec, fields))


@method("crm.contact.fields", "crm")
def contact_fields(ctx: Context, params: dict, start: int | None) -> Result:
    return Result({f.name: descriptor(f, item=False) for f in ctx.crm.contact_schema.fields})


@method("crm.deal.fields", "crm")
def deal_fields(ctx: Context, params: dict, start: int | None) -> Result:
    return Result({f.name: descriptor(f, item=False) for f in ctx.crm.deal_schema.fields})


@method("crm.contact.add", "crm")
def contact_add(ctx: Context, params: dict, start: int | None) -> Result:
    fields = resolve_array_param(params, "fields")
    if not is_array(fields):
        raise legacy_error("Parameter 'fields' must be array.")
    data = _internalize_legacy(ctx, ctx.crm.contact_schema, fields, update=False)
    _check_required_contact(ctx, data, update=False)
    _check_emails(data)
    return Result(ctx.crm.add_contact(data, author=ctx.user_id))


@method("crm.contact.update", "crm")
def contact_update(ctx: Context, params: dict, start: int | None) -> Result:
    rid = resolve_entity_id(params)
    if rid <= 0:
        raise legacy_error("ID is not defined or invalid.")
    fields = resolve_array_param(params, "fields")
    if not is_array(fields):
        raise legacy_error("Parameter 'fields' must be array.")
    if rid not in ctx.crm.contacts.records:
        raise legacy_error("Contact is not found")
    data = _internalize_legacy(ctx, ctx.crm.contact_schema, fields, update=True)
    _check_required_contact(ctx, data, update=True)
    _check_emails(data)
    ctx.crm.update_contact(rid, data, author=ctx.user_id)
    return Result(True)


@method("crm.contact.get", "crm")
def contact_get(ctx: Context, params: dict, start: int | None) -> Result:
    return _legacy_get(ctx, params, "contact")


@method("crm.contact.list", "crm")
def contact_list(ctx: Context, params: dict, start: int | None) -> Result:
    return _legacy_list(ctx, params, start, "contact")


@method("crm.deal.add", "crm")
def deal_add(ctx: Context, params: dict, start: int | None) -> Result:
    fields = resolve_array_param(params, "fields")
    if not is_array(fields):
        raise legacy_error("Parameter 'fields' must be array.")
    data = _internalize_legacy(ctx, ctx.crm.deal_schema, fields, update=False)
    return Result(ctx.crm.add_deal(data, author=ctx.user_id))


@method("crm.deal.update", "crm")
def deal_update(ctx: Context, params: dict, start: int | None) -> Result:
    rid = resolve_entity_id(params)
    if rid <= 0:
        raise legacy_error("ID is not defined or invalid.")
    fields = resolve_array_param(params, "fields")
    if not is_array(fields):
        raise legacy_error("Parameter 'fields' must be array.")
    if rid not in ctx.crm.deals.records:
        raise legacy_error("Not found")
    data = _internalize_legacy(ctx, ctx.crm.deal_schema, fields, update=True)
    ctx.crm.update_deal(rid, data, author=ctx.user_id)
    return Result(True)


@method("crm.deal.get", "crm")
def deal_get(ctx: Context, params: dict, start: int | None) -> Result:
    return _legacy_get(ctx, params, "deal")


@method("crm.deal.list", "crm")
def deal_list(ctx: Context, params: dict, start: int | None) -> Result:
    return _legacy_list(ctx, params, start, "deal")


@method("crm.deal.contact.items.get", "crm")
def deal_contact_items_get(ctx: Context, params: dict, start: int | None) -> Result:
    rid = resolve_entity_id(params)
    if rid <= 0:
        raise legacy_error("ID is not defined or invalid.")
    rec = ctx.crm.deals.records.get(rid)
    if rec is None:
        raise legacy_error("Not found")
    ids = rec.get("CONTACT_IDS") or []
    return Result([{"CONTACT_ID": cid, "SORT": 10 * (i + 1), "ROLE_ID": 0, "IS_PRIMARY": "Y" if i == 0 else "N"}
                   for i, cid in enumerate(ids)])


# --- crm.duplicate.findbycomm --------------------------------------------------------------

@method("crm.duplicate.findbycomm", "crm")
def duplicate_findbycomm(ctx: Context, params: dict, start: int | None) -> Result:
    type_ = pick(params, "type", "TYPE", "Type")
    if not isinstance(type_, str) or not type_.strip():
        raise legacy_error("Communication type is not defined.")
    type_ = type_.strip().upper()
    if type_ not in ("EMAIL", "PHONE"):
        raise legacy_error(f"Communication type '{type_}' is not supported in current context.")
    values = pick(params, "values", "VALUES", "Values")
    if not is_array(values) or not values:
        raise legacy_error("Communication values is not defined.")
    entity = resolve_multipart_param(params, ["entity", "type"])
    entity = str(entity).strip().upper() if entity not in (None, "") else ""
    if entity == "DEAL":
        raise legacy_error("Deal is not supported in current context.")
    if entity and entity not in ("LEAD", "CONTACT", "COMPANY"):
        raise legacy_error(f"Entity type '{entity}' is not supported in current context.")
    seen: list[str] = []
    for v in values_of(values):
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            v = str(v)
        if not isinstance(v, str) or not v.strip() or v in seen:
            continue
        seen.append(v)
        if len(seen) == 20:
            break
    contact_ids: list[int] = []
    if entity in ("", "CONTACT"):
        index = ctx.crm.comm_index[type_]
        for v in seen:
            norm = normalize_comm(type_, v)
            hits = sorted(index.get(norm, ()))[:20] if norm else []
            contact_ids.extend(h for h in hits if h not in contact_ids)
    return Result({"CONTACT": contact_ids} if contact_ids else [])


# --- crm.item.* ----------------------------------------------------------------------------

def _entity_type_id(params: dict) -> int:
    value = pick(params, "entityTypeId", "ENTITY_TYPE_ID", "entityTypeID", "entity_type_id", "EntityTypeId")
    return php_intval(value) if value is not None else 0


def _item_table(ctx: Context, params: dict) -> tuple[int, Table]:
    etid = _entity_type_id(params)
    table = ctx.crm.table(etid)
    if table is None:
        raise RestError("NOT_FOUND", "Smart process not found", 400)
    return etid, table


def _use_original(params: dict) -> bool:
    value = pick(params, "useOriginalUfNames", "USE_ORIGINAL_UF_NAMES")
    return isinstance(value, str) and value.upper() == "Y" or value is True


def _item_key(f: Field, use_original: bool) -> str:
    return f.name if (f.dynamic and use_original) else f.camel


def _item_fields(table: Table) -> list[Field]:
    # crm.item speaks of deal contacts as contactIds; multi-fields travel as "fm".
    return [f for f in table.schema.fields if f.kind != "multi" and f.name != "COMPANY_IDS"]


def item_view(ctx: Context, etid: int, table: Table, rec: dict, *, use_original: bool,
              select: list[Field] | None = None, with_fm: bool = True) -> dict:
    out: dict[str, Any] = {}
    for f in select if select is not None else _item_fields(table):
        out[_item_key(f, use_original)] = item_value(f, rec.get(f.name), ctx.tz)
    out["entityTypeId"] = etid
    if etid == CONTACT_ENTITY_TYPE_ID and with_fm:
        out["fm"] = [{"id": r["ID"], "typeId": r["TYPE_ID"], "valueType": r["VALUE_TYPE"], "value": r["VALUE"]}
                     for r in ctx.crm.multi_rows(rec["ID"])]
    return out


def _item_internalize(ctx: Context, etid: int, table: Table, fields: Any, *, update: bool,
                      batch_import: bool = False) -> tuple[dict, dict]:
    """(internal values by legacy name, multi-field changes) from crm.item camel/UF fields.

    ``batch_import``: ``crm.item.batchImport`` takes multi-fields as documented there --
    ``EMAIL``/``PHONE``/... lists of ``{VALUE, VALUE_TYPE}`` -- and ignores ``fm`` (review
    issue 11: an import with ``fm`` gave contacts without e-mail on the real portal)."""
    out: dict[str, Any] = {}
    multi: dict[str, list[dict]] = {}
    for key, value in items_of(fields):
        key = str(key)
        if etid == CONTACT_ENTITY_TYPE_ID and batch_import:
            if key in MULTI_FIELD_TYPES:
                multi.setdefault(key, []).extend(e for e in _multi_entries(value))
            if key == "fm" or key in MULTI_FIELD_TYPES:
                continue
        if etid == CONTACT_ENTITY_TYPE_ID and key == "fm":
            for mkey, entry in items_of(value):
                if not isinstance(entry, dict):
                    continue
                t = str(entry.get("typeId", "")).upper()
                if t not in MULTI_FIELD_TYPES:
                    continue
                e = {"VALUE": entry.get("value"), "VALUE_TYPE": entry.get("valueType")}
                if update and str(mkey).isdigit() and not isinstance(value, list):
                    e["ID"] = mkey
                multi.setdefault(t, []).append(e)
            continue
        f = table.schema.by_camel.get(key) or (table.schema.by_name.get(key) if key.startswith("UF_") else None)
        if f is None or f.read_only or f.kind == "multi" or (update and f.immutable and etid != DEAL_ENTITY_TYPE_ID):
            continue
        if f.multiple and not isinstance(value, (list, dict)) and value not in (None, ""):
            raise RestError("100", f"Expected iterable value for multiple field, but got {type(value).__name__} instead")
        try:
            out[f.name] = internal_value(f, value, ctx.tz)
        except Invalid:
            raise RestError("CRM_FIELD_ERROR_VALUE_NOT_VALID", f"Invalid value for field \"{f.title}\"") from None
    if etid == DEAL_ENTITY_TYPE_ID and "CONTACT_IDS" not in out and "CONTACT_ID" in out:
        out["CONTACT_IDS"] = [out["CONTACT_ID"]] if out["CONTACT_ID"] else []
    return out, multi


def _multi_entries(value: Any) -> list[dict]:
    """Legacy multi-field entries (``{VALUE, VALUE_TYPE}``); a bare string is one value."""
    if isinstance(value, str):
        return [{"VALUE": value}]
    return [{"VALUE": e.get("VALUE"), "VALUE_TYPE": e.get("VALUE_TYPE")} for e in values_of(value)
            if isinstance(e, dict)]


def _check_required(table: Table, data: dict, *, update: bool) -> None:
    for f in table.schema.fields:
        if not f.required:
            continue
        if update and f.name not in data:
            continue
        v = data.get(f.name)
        if v is None or v == "" or v == []:
            raise RestError("CRM_FIELD_ERROR_REQUIRED", f"The field \"{f.title}\" is required.")


def _item_add(ctx: Context, etid: int, table: Table, fields: Any, *, batch_import: bool = False) -> int:
    data, multi = _item_internalize(ctx, etid, table, fields, update=False, batch_import=batch_import)
    if etid == CONTACT_ENTITY_TYPE_ID:
        if ctx.crm.enforce_required:
            _check_required(table, data, update=False)
        data.update({t: entries for t, entries in multi.items()})
        _check_emails(data)
        return ctx.crm.add_contact(data, author=ctx.user_id)
    if etid == DEAL_ENTITY_TYPE_ID:
        return ctx.crm.add_deal(data, author=ctx.user_id)
    _check_required(table, data, update=False)
    return ctx.crm.add_item(etid, data, author=ctx.user_id)


def _item_record(ctx: Context, table: Table, params: dict) -> tuple[int, dict]:
    rid = php_intval(pick(params, "id", "ID", default=0))
    rec = table.records.get(rid) if rid > 0 else None
    if rec is None:
        raise RestError("NOT_FOUND", "Element not found", 400)
    return rid, rec


@method("crm.item.fields", "crm")
def item_fields(ctx: Context, params: dict, start: int | None) -> Result:
    etid, table = _item_table(ctx, params)
    use_original = _use_original(params)
    fields = {_item_key(f, use_original): descriptor(f, item=True, use_original=use_original)
              for f in _item_fields(table)}
    if etid == CONTACT_ENTITY_TYPE_ID:
        fields["fm"] = {"type": "crm_multifield", "isRequired": False, "isReadOnly": False, "isImmutable": False,
                        "isMultiple": True, "isDynamic": False, "title": "Мультиполя", "upperName": "FM"}
    return Result({"fields": fields})


@method("crm.item.add", "crm")
def item_add(ctx: Context, params: dict, start: int | None) -> Result:
    etid, table = _item_table(ctx, params)
    fields = pick(params, "fields", "FIELDS")
    if not is_array(fields):
        fields = {}
    rid = _item_add(ctx, etid, table, fields)
    return Result({"item": item_view(ctx, etid, table, table.records[rid], use_original=_use_original(params))})


@method("crm.item.update", "crm")
def item_update(ctx: Context, params: dict, start: int | None) -> Result:
    etid, table = _item_table(ctx, params)
    rid, rec = _item_record(ctx, table, params)
    fields = pick(params, "fields", "FIELDS")
    if not is_array(fields):
        fields = {}
    data, multi = _item_internalize(ctx, etid, table, fields, update=True)
    if etid == CONTACT_ENTITY_TYPE_ID:
        names = {k: data.get(k, rec.get(k)) for k in ("NAME", "LAST_NAME")}
        if not any(str(v or "").strip() for v in names.values()):
            raise RestError("CRM_FIELD_ERROR_REQUIRED", "The field \"Имя\" is required.")
        data.update({t: entries for t, entries in multi.items()})
        _check_emails(data)
        ctx.crm.update_contact(rid, data, author=ctx.user_id)
    elif etid == DEAL_ENTITY_TYPE_ID:
        category = data.pop("CATEGORY_ID", None)
        if category is not None and category != rec["CATEGORY_ID"] and category in ctx.crm.stages:
            # crm.item.update is the documented way to move a deal to another funnel.
            ctx.crm.deals.update(rid, {"CATEGORY_ID": category})
            if data.get("STAGE_ID") not in ctx.crm.stage_list(category):
                data["STAGE_ID"] = ctx.crm.stage_list(category)[0]
        ctx.crm.update_deal(rid, data, author=ctx.user_id)
    else:
        _check_required(table, data, update=True)
        ctx.crm.update_item(etid, rid, data, author=ctx.user_id)
    return Result({"item": item_view(ctx, etid, table, table.records[rid], use_original=_use_original(params))})


@method("crm.item.get", "crm")
def item_get(ctx: Context, params: dict, start: int | None) -> Result:
    etid, table = _item_table(ctx, params)
    _, rec = _item_record(ctx, table, params)
    return Result({"item": item_view(ctx, etid, table, rec, use_original=_use_original(params))})


@method("crm.item.list", "crm")
def item_list(ctx: Context, params: dict, start: int | None) -> Result:
    etid, table = _item_table(ctx, params)
    use_original = _use_original(params)
    schema = table.schema

    def resolve(name: str) -> Field | None:
        f = schema.by_camel.get(name) or (schema.by_name.get(name) if name.startswith("UF_") else None)
        return f if f is not None and f.kind != "multi" else None

    conds = _conditions(ctx.crm, pick(params, "filter", "FILTER"), resolve, strict=True)
    order = _order(pick(params, "order", "ORDER"), resolve, strict=True) or [("ID", False)]
    names = [str(n) for n in values_of(pick(params, "select", "SELECT")) if isinstance(n, (str, int))] or ["*"]
    star = "*" in names
    if star:
        select = None
    else:
        chosen = {"ID"}
        for n in names:
            if n.upper() == "UF_*":
                chosen.update(f.name for f in schema.user_fields)
            f = resolve(n)
            if f is not None:
                chosen.add(f.name)
        select = [f for f in _item_fields(table) if f.name in chosen]
    if start is not None and start < 0:
        offset, count = 0, False
    else:
        offset, count = max(start or 0, 0), True
    page = ctx.crm.query(table, conds, order, offset=offset, limit=PAGE_SIZE, count=count)
    items = [item_view(ctx, etid, table, table.records[rid], use_original=use_original, select=select, with_fm=star)
             for rid in page.ids]
    return _page_result({"items": items}, page, offset)


@method("crm.item.batchImport", "crm")
def item_batch_import(ctx: Context, params: dict, start: int | None) -> Result:
    etid, table = _item_table(ctx, params)
    data = pick(params, "data", "DATA")
    entries = values_of(data)
    if len(entries) > ctx.batch_import_max:
        raise RestError("MAX_IMPORT_BATCH_SIZE_EXCEEDED", f"You cannot import more than {ctx.batch_import_max} items")
    out = []
    for fields in entries:
        try:
            rid = _item_add(ctx, etid, table, fields if is_array(fields) else {}, batch_import=True)
            out.append({"item": {"id": rid}})
        except RestError as err:
            out.append({"error": err.code, "error_description": err.description})
    return Result({"items": out})


@method("crm.type.list", "crm")
def type_list(ctx: Context, params: dict, start: int | None) -> Result:
    types = [{"id": sp.type_id, "title": sp.title, "code": "", "entityTypeId": sp.entity_type_id,
              "isCategoriesEnabled": "N", "isStagesEnabled": "N", "isClientEnabled": "N", "isSourceEnabled": "N",
              "isUseInUserfieldEnabled": "Y", "isLinkWithProductsEnabled": "N", "isAutomationEnabled": "N"}
             for sp in ctx.crm.smart_processes.values()]
    return Result({"types": types}, total=len(types))


# --- categories, statuses ------------------------------------------------------------------

@method("crm.category.list", "crm")
def category_list(ctx: Context, params: dict, start: int | None) -> Result:
    etid = _entity_type_id(params)
    if etid == DEAL_ENTITY_TYPE_ID:
        cats = [{"id": int(c["ID"]), "name": c["NAME"], "sort": 100 * (i + 1), "entityTypeId": etid,
                 "isDefault": "Y" if int(c["ID"]) == 0 else "N"} for i, c in enumerate(ctx.crm.categories)]
    elif etid in ctx.crm.smart_processes:
        cats = []
    else:
        raise RestError("NOT_FOUND", "Smart process not found", 400)
    return Result({"categories": cats}, total=len(cats))


_SOURCE_NAMES = {"WEB": "Веб-сайт", "CALL": "Звонок", "EMAIL": "Электронная почта", "WEBFORM": "CRM-форма",
                 "OTHER": "Другое", "CALLBACK": "Обратный звонок", "ADVERTISING": "Реклама"}
_STAGE_NAMES = {"NEW": "Новая", "PREPARATION": "Подготовка документов", "PREPAYMENT_INVOICE": "Счёт на предоплату",
                "EXECUTING": "В работе", "FINAL_INVOICE": "Финальный счёт", "WON": "Сделка успешна",
                "LOSE": "Сделка провалена", "APOLOGY": "Анализ причины провала"}
_STAGE_COLORS = {"WON": "#7BD500", "LOSE": "#FF5752"}


def status_rows(crm: CRM) -> list[dict]:
    rows: list[dict] = []

    def add(entity: str, status: str, name: str, sort: int, category: int | None = None, stage: bool = False) -> None:
        row = {"ID": str(len(rows) + 1), "ENTITY_ID": entity, "STATUS_ID": status, "NAME": name, "NAME_INIT": name,
               "SORT": str(sort), "SYSTEM": "Y", "CATEGORY_ID": None if category is None else str(category),
               "COLOR": None, "SEMANTICS": None}
        if stage:
            code = status.split(":")[-1]
            semantics = {"S": "S", "F": "F"}.get(crm.semantics_of(status))
            color = _STAGE_COLORS.get(code, "#39A8EF")
            row.update({"COLOR": color, "SEMANTICS": semantics,
                        "EXTRA": {"SEMANTICS": {"S": "success", "F": "failure"}.get(semantics or "", "process"),
                                  "COLOR": color}})
        rows.append(row)

    for i, s in enumerate(crm.sources):
        add("SOURCE", s, _SOURCE_NAMES.get(s, s), 10 * (i + 1))
    for cat, stages in sorted(crm.stages.items()):
        entity = "DEAL_STAGE" if cat == 0 else f"DEAL_STAGE_{cat}"
        for i, s in enumerate(stages):
            add(entity, s, _STAGE_NAMES.get(s.split(":")[-1], s), 10 * (i + 1), None if cat == 0 else cat, stage=True)
    for i, (s, n) in enumerate((("SALE", "Продажа"), ("COMPLEX", "Комплексная продажа"), ("SERVICE", "Сервис"))):
        add("DEAL_TYPE", s, n, 10 * (i + 1))
    for i, (s, n) in enumerate((("CLIENT", "Клиенты"), ("SUPPLIER", "Поставщики"), ("PARTNER", "Партнеры"),
                                ("OTHER", "Другое"))):
        add("CONTACT_TYPE", s, n, 10 * (i + 1))
    return rows


@method("crm.status.list", "crm")
def status_list(ctx: Context, params: dict, start: int | None) -> Result:
    filt = _array_param(params, "filter")
    order = _array_param(params, "order")
    rows = status_rows(ctx.crm)
    for key, value in items_of(filt):
        op, name = split_operator(str(key))
        wanted = {str(v) for v in values_of(value)} if is_array(value) else {str(value)}
        neg = op in ("!", "!=", "!@")
        rows = [r for r in rows if (str(r.get(name)) in wanted) != neg]
    sort_keys = [(str(k), str(v).upper() == "DESC") for k, v in items_of(order)] or [("SORT", False)]
    for name, desc in reversed(sort_keys):
        rows.sort(key=lambda r, n=name: (int(r[n]) if str(r.get(n) or "").isdigit() else str(r.get(n) or "")),
                  reverse=desc)
    return Result(rows, total=len(rows))


# --- users and helpers ---------------------------------------------------------------------

def user_row(u: dict, tz: timezone) -> dict:
    return {"ID": str(u["ID"]), "XML_ID": None, "ACTIVE": bool(u.get("ACTIVE", True)), "NAME": u.get("NAME", ""),
            "LAST_NAME": u.get("LAST_NAME", ""), "SECOND_NAME": u.get("SECOND_NAME", ""), "EMAIL": u.get("EMAIL", ""),
            "LAST_LOGIN": "2024-07-25T13:06:54+03:00", "DATE_REGISTER": "2020-01-01T00:00:00+03:00",
            "TIMESTAMP_X": "24.08.2023 13:19:39", "LAST_ACTIVITY_DATE": "2024-08-29 10:30:11",
            "IS_ONLINE": "N", "TIME_ZONE_OFFSET": "0", "PERSONAL_GENDER": u.get("PERSONAL_GENDER", ""),
            "UF_DEPARTMENT": u.get("UF_DEPARTMENT", [1]), "USER_TYPE": u.get("USER_TYPE", "employee")}


_USER_RESERVED = {"sort", "order", "start", "select", "admin_mode", "filter", "fields", "auth"}


def _user_filter_test(name: str, op: str, value: Any) -> Callable[[dict], bool]:
    if name == "ACTIVE":
        want = value if isinstance(value, bool) else (
            str(value).strip().upper() in ("Y", "TRUE", "1") if value is not None else True)
        return lambda row: row["ACTIVE"] == want
    wanted = [str(v) for v in values_of(value)] if is_array(value) else [str(value)]
    if name == "EMAIL":
        wanted = [w.strip().lower() for w in wanted]
        get = lambda row: (row.get("EMAIL") or "").strip().lower()  # noqa: E731
    else:
        get = lambda row: str(row.get(name) if row.get(name) is not None else "")  # noqa: E731
    if op == "%":
        return lambda row: any(w.lower() in get(row).lower() for w in wanted)
    neg = op in ("!", "!=", "!@")
    return lambda row: (get(row) in wanted) != neg


@method("user.get", "user")
def user_get(ctx: Context, params: dict, start: int | None) -> Result:
    filt: dict = {}
    for key, value in params.items():
        if str(key).lower() not in _USER_RESERVED:
            filt[str(key)] = value
    for key, value in items_of(pick(params, "FILTER", "filter")):
        filt[str(key)] = value
    rows = [user_row(u, ctx.tz) for u in ctx.crm.users]
    for key, value in filt.items():
        op, name = split_operator(key)
        name = name.upper()
        if name not in ("ID", "EMAIL", "ACTIVE", "NAME", "LAST_NAME", "USER_TYPE", "XML_ID"):
            continue
        test = _user_filter_test(name, op, value)
        rows = [r for r in rows if test(r)]
    rows.sort(key=lambda r: int(r["ID"]))
    offset = max(start or 0, 0)
    page = rows[offset:offset + PAGE_SIZE]
    more = offset + PAGE_SIZE < len(rows)
    return Result(page, total=len(rows), next=offset + PAGE_SIZE if more else None)


@method("user.current", "user")
def user_current(ctx: Context, params: dict, start: int | None) -> Result:
    u = ctx.crm.user(ctx.user_id)
    return Result(user_row(u, ctx.tz) if u else [])


@method("profile", "")
def profile(ctx: Context, params: dict, start: int | None) -> Result:
    u = ctx.crm.user(ctx.user_id)
    if not u or not u.get("ACTIVE", True):
        return Result([])
    offset = int(datetime.now(ctx.tz).utcoffset().total_seconds())
    return Result({"ID": str(u["ID"]), "ADMIN": bool(u.get("ADMIN", int(u["ID"]) == 1)), "NAME": u.get("NAME", ""),
                   "LAST_NAME": u.get("LAST_NAME", ""), "PERSONAL_GENDER": u.get("PERSONAL_GENDER", ""),
                   "TIME_ZONE": "", "TIME_ZONE_OFFSET": offset})


@method("batch", "")
def batch_placeholder(ctx: Context, params: dict, start: int | None) -> Result:
    # The server runs batch itself (it needs the sub-call pipeline); registered for routing and scope.
    raise RestError("ERROR_BATCH_METHOD_NOT_ALLOWED", "Method is not allowed for batch usage", 405)


@method("server.time", "")
def server_time(ctx: Context, params: dict, start: int | None) -> Result:
    return Result(iso(ctx.crm.now(), ctx.tz))


@method("scope", "")
def scope(ctx: Context, params: dict, start: int | None) -> Result:
    if php_truthy(pick(params, "full", "FULL")) and str(pick(params, "full", "FULL")).lower() != "false":
        return Result(list(ALL_SCOPES))
    return Result(list(ctx.scopes))


@method("app.info", "")
def app_info(ctx: Context, params: dict, start: int | None) -> Result:
    return Result({"SCOPE": list(ctx.scopes), "LICENSE": ctx.license})


# lists.* and crm.timeline.comment.* live in their own modules; importing them registers them.
from . import lists_methods, timeline_methods  # noqa: E402,F401
