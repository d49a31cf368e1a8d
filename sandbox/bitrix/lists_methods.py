"""``lists.get``, ``lists.field.get`` and ``lists.element.{get,add,update,delete}`` over :mod:`.lists`.

Parameter handling follows ``Bitrix\\Lists\\Service\\Param``: keys are upper-cased at every
level (``iblock_id`` works), ``IBLOCK_ID``/``IBLOCK_CODE`` and ``ELEMENT_ID``/``ELEMENT_CODE``
stand in for each other, and when several required parameters are missing the *last* one
is reported. Errors (all HTTP 400, from the lists REST service and bitrix24-rest.md §6.9/§10):

* ``ERROR_REQUIRED_PARAMETERS_MISSING`` -- ``Required parameter "X" is missing``;
* ``ERROR_IBLOCK_NOT_FOUND`` -- ``Iblock not found``;
* ``ERROR_ELEMENT_ALREADY_EXISTS`` -- ``Element already exists`` (add with a code in use);
* ``ERROR_ELEMENT_NOT_FOUND`` -- ``Element not found`` (update/delete);
* ``ERROR_ELEMENT_FIELD_VALUE`` -- ``The field "<title>" is required`` (add and update);
* ``ERROR_ARGUMENT`` -- ``Filter field not allowed: X`` for a filter key the list does not have.
"""
from __future__ import annotations

from typing import Any

from .lists import PAGE_SIZE, FieldValueError, ListField, UniversalList
from .methods import Context, RestError, Result, method
from .params import php_intval
from .state import _like, split_operator

_INTERCHANGEABLE = {"IBLOCK_ID": "IBLOCK_CODE", "IBLOCK_CODE": "IBLOCK_ID",
                    "ELEMENT_ID": "ELEMENT_CODE", "ELEMENT_CODE": "ELEMENT_ID"}
_BASE_FILTER_FIELDS = ("ID", "NAME", "CODE", "ACTIVE", "CREATED_BY", "MODIFIED_BY", "SORT", "IBLOCK_ID")
_ORDERS = ("asc", "desc", "nulls,asc", "asc,nulls", "nulls,desc", "desc,nulls")


def _upper_keys(value: Any) -> Any:
    """``Param::changeKeyCaseRecursive``: every array key upper-cased."""
    if isinstance(value, dict):
        return {str(k).upper(): _upper_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_upper_keys(v) for v in value]
    return value


def _isset(params: dict, name: str) -> bool:
    return params.get(name) is not None


def _require(params: dict, names: list[Any]) -> None:
    """``Param::checkRequiredInputParams``: the last missing parameter is the reported one."""
    missing = []
    for name in names:
        if isinstance(name, tuple):
            outer, inner = name
            container = params.get(outer)
            if not (isinstance(container, dict) and container.get(inner) is not None):
                missing.append(inner)
        elif not _isset(params, name) and not (name in _INTERCHANGEABLE and _isset(params, _INTERCHANGEABLE[name])):
            missing.append(name)
    if missing:
        raise RestError("ERROR_REQUIRED_PARAMETERS_MISSING", f"Required parameter \"{missing[-1]}\" is missing")


def _list(ctx: Context, params: dict) -> UniversalList:
    lst = ctx.crm.lists.find(str(params.get("IBLOCK_TYPE_ID")), params.get("IBLOCK_ID"), params.get("IBLOCK_CODE"))
    if lst is None:
        raise RestError("ERROR_IBLOCK_NOT_FOUND", "Iblock not found")
    return lst


def _fields_param(params: dict) -> dict:
    fields = params.get("FIELDS")
    return fields if isinstance(fields, dict) else {}


# --- lists.get, lists.field.get ------------------------------------------------------------

@method("lists.get", "lists")
def lists_get(ctx: Context, params: dict, start: int | None) -> Result:
    params = _upper_keys(params)
    _require(params, ["IBLOCK_TYPE_ID"])
    wanted_id, wanted_code = params.get("IBLOCK_ID"), params.get("IBLOCK_CODE")
    rows = []
    for lst in sorted(ctx.crm.lists.lists.values(), key=lambda x: x.iblock_id):
        if lst.iblock_type_id != str(params["IBLOCK_TYPE_ID"]):
            continue
        if wanted_id not in (None, "") and lst.iblock_id != php_intval(wanted_id):
            continue
        if wanted_code not in (None, "") and lst.code != str(wanted_code):
            continue
        rows.append({"ID": str(lst.iblock_id), "IBLOCK_TYPE_ID": lst.iblock_type_id, "CODE": lst.code,
                     "NAME": lst.name, "ACTIVE": "Y", "SORT": "500", "DESCRIPTION": "",
                     "SOCNET_GROUP_ID": None, "BIZPROC": "N"})
    # getLists answers a bare [] (no total) when nothing matches.
    return _nav(rows, start) if rows else Result([])


def field_row(f: ListField) -> dict:
    row: dict[str, Any] = {"FIELD_ID": f.field_id, "SORT": str(f.sort), "NAME": f.name,
                           "IS_REQUIRED": "Y" if f.required else "N", "MULTIPLE": "Y" if f.multiple else "N",
                           "DEFAULT_VALUE": f.default, "TYPE": f.type, "SETTINGS": {"SHOW_ADD_FORM": "Y",
                                                                                    "SHOW_EDIT_FORM": "Y"}}
    if f.is_property:
        user_type = f.type.split(":", 1)[1] if ":" in f.type else None
        row.update({"ID": str(f.prop_id), "CODE": f.code, "PROPERTY_TYPE": f.base_type,
                    "PROPERTY_USER_TYPE": {"USER_TYPE": user_type} if user_type else False,
                    "LINK_IBLOCK_ID": str(f.link_iblock_id or 0), "ROW_COUNT": "1", "COL_COUNT": "30"})
        if f.values is not None:
            row["DISPLAY_VALUES_FORM"] = dict(f.values)
    return row


@method("lists.field.get", "lists")
def lists_field_get(ctx: Context, params: dict, start: int | None) -> Result:
    params = _upper_keys(params)
    _require(params, ["IBLOCK_TYPE_ID", "IBLOCK_CODE", "IBLOCK_ID"])
    lst = _list(ctx, params)
    field_id = params.get("FIELD_ID")
    fields = [f for f in lst.fields.values() if field_id in (None, "") or f.field_id == str(field_id)]
    return Result({f.field_id: field_row(f) for f in fields})


# --- lists.element.get ---------------------------------------------------------------------

def _nav(rows: list, start: int | None) -> Result:
    offset = max(start or 0, 0)
    page = rows[offset:offset + PAGE_SIZE]
    more = offset + PAGE_SIZE < len(rows)
    return Result(page, total=len(rows), next=offset + PAGE_SIZE if more else None)


def _filter_test(ctx: Context, lst: UniversalList, key: str, raw: Any):
    op, name = split_operator(key)
    if name not in _BASE_FILTER_FIELDS and lst.property_by_key(name) is None:
        raise RestError("ERROR_ARGUMENT", f"Filter field not allowed: {name}")
    seq = list(raw.values()) if isinstance(raw, dict) else list(raw) if isinstance(raw, list) else None
    numeric = name in ("ID", "CREATED_BY", "MODIFIED_BY", "SORT", "IBLOCK_ID")

    def norm(v: Any) -> Any:
        return php_intval(v) if numeric else ("" if v is None else str(v))

    if op in ("%", "!%"):
        needle = str(raw if seq is None else (seq[0] if seq else "")).lower()
        base = (lambda vals: any(needle in str(v).lower() for v in vals))
    elif op == "" and not numeric and seq is None:
        # An iblock string filter without an operator is a case-insensitive LIKE pattern
        # (bitrix24-rest.md §10): "Журн%" matches, "журналистика" matches "Журналистика".
        rx = _like(str(raw))
        base = (lambda vals: any(rx.match(str(v)) for v in vals))
    elif op in ("><", "!><"):
        lo, hi = ((seq or []) + [None, None])[:2]
        lo, hi = norm(lo), norm(hi)
        base = (lambda vals: any(lo <= norm(v) <= hi for v in vals))
    elif seq is not None or op in ("@", "!@"):
        wanted = {norm(v) for v in (seq if seq is not None else str(raw).split(","))}
        base = (lambda vals: any(norm(v) in wanted for v in vals))
    elif op in ("", "=", "!", "!="):
        # "=" is exact and case-sensitive here: the portal's collation decides, so a job must
        # not rely on "=NAME" folding case (real-portal.md: match names locally).
        want = norm(raw)
        base = (lambda vals: any(norm(v) == want for v in vals))
    else:
        want = norm(raw)
        cmp = {">": lambda a: a > want, ">=": lambda a: a >= want,
               "<": lambda a: a < want, "<=": lambda a: a <= want}[op]

        def base(vals: list) -> bool:
            for v in vals:
                try:
                    if cmp(norm(v)):
                        return True
                except TypeError:
                    continue
            return False
    negate = op.startswith("!")

    def test(eid: int) -> bool:
        value = ctx.crm.lists.value_of(lst, eid, name)
        vals = value if isinstance(value, list) else ([] if value is None else [value])
        return base(vals) != negate
    return test


def _sort_key(value: Any) -> tuple:
    if isinstance(value, list):
        value = value[0] if value else None
    if value is None or value == "":
        return (0, 0, "")
    if isinstance(value, int) or (isinstance(value, str) and value.lstrip("-").isdigit()):
        return (1, int(value), "")
    return (2, 0, str(value).lower())


def _order(lst: UniversalList, raw: Any) -> list[tuple[str, bool]]:
    """``Element::getOrder``: known, single-valued fields with a known direction; else ``ID asc``."""
    sortable = {"ID"} | {f.field_id for f in lst.fields.values() if not f.multiple}
    out = []
    if isinstance(raw, dict):
        for key, direction in raw.items():
            direction = str(direction).lower()
            if key in sortable and direction in _ORDERS:
                out.append((key, "desc" in direction))
    return out or [("ID", False)]


@method("lists.element.get", "lists")
def lists_element_get(ctx: Context, params: dict, start: int | None) -> Result:
    params = _upper_keys(params)
    _require(params, ["IBLOCK_TYPE_ID", "IBLOCK_CODE", "IBLOCK_ID"])
    lst = _list(ctx, params)
    store = ctx.crm.lists
    tests = []
    if params.get("ELEMENT_ID") not in (None, "", 0, "0"):
        wanted_id = php_intval(params["ELEMENT_ID"])
        tests.append(lambda eid: eid == wanted_id)
    if params.get("ELEMENT_CODE") not in (None, ""):
        wanted_code = str(params["ELEMENT_CODE"])
        tests.append(lambda eid: lst.elements[eid]["CODE"] == wanted_code)
    filt = params.get("FILTER")
    if isinstance(filt, dict):
        tests.extend(_filter_test(ctx, lst, str(k), v) for k, v in filt.items())
    ids = [eid for eid in lst.ids if all(t(eid) for t in tests)]
    for key, desc in reversed(_order(lst, params.get("ELEMENT_ORDER"))):
        ids.sort(key=lambda eid, k=key: _sort_key(store.value_of(lst, eid, k)), reverse=desc)
    if not ids:
        # getElement answers a bare [] (no total, no next) when nothing matches.
        return Result([])
    return _nav([store.row(lst, eid) for eid in ids], start)


# --- writes --------------------------------------------------------------------------------

def _validate(ctx: Context, lst: UniversalList, fields: dict) -> None:
    try:
        ctx.crm.lists.validate(lst, fields)
    except FieldValueError as err:
        raise RestError("ERROR_ELEMENT_FIELD_VALUE", str(err)) from None


@method("lists.element.add", "lists")
def lists_element_add(ctx: Context, params: dict, start: int | None) -> Result:
    params = _upper_keys(params)
    _require(params, ["IBLOCK_TYPE_ID", "IBLOCK_CODE", "IBLOCK_ID", "ELEMENT_CODE", ("FIELDS", "NAME")])
    lst = _list(ctx, params)
    store = ctx.crm.lists
    if store.find_element(lst, params.get("ELEMENT_ID"), params.get("ELEMENT_CODE")) is not None:
        raise RestError("ERROR_ELEMENT_ALREADY_EXISTS", "Element already exists")
    fields = _fields_param(params)
    _validate(ctx, lst, fields)
    code = params.get("ELEMENT_CODE")
    return Result(store.add(lst, str(code) if code not in (None, "") else None, fields, author=ctx.user_id))


def _element(ctx: Context, params: dict) -> tuple[UniversalList, int]:
    _require(params, ["IBLOCK_TYPE_ID", "IBLOCK_CODE", "IBLOCK_ID", "ELEMENT_CODE", "ELEMENT_ID"])
    lst = _list(ctx, params)
    eid = ctx.crm.lists.find_element(lst, params.get("ELEMENT_ID"), params.get("ELEMENT_CODE"))
    if eid is None:
        raise RestError("ERROR_ELEMENT_NOT_FOUND", "Element not found")
    return lst, eid


@method("lists.element.update", "lists")
def lists_element_update(ctx: Context, params: dict, start: int | None) -> Result:
    """Overwrites the element: fields absent from ``FIELDS`` are cleared, and so is the code
    when the element is addressed by ``ELEMENT_ID`` alone (``CODE => ELEMENT_CODE``)."""
    params = _upper_keys(params)
    lst, eid = _element(ctx, params)
    fields = _fields_param(params)
    _validate(ctx, lst, fields)
    code = params.get("ELEMENT_CODE")
    ctx.crm.lists.update(lst, eid, str(code) if code not in (None, "") else None, fields, author=ctx.user_id)
    return Result(True)


@method("lists.element.delete", "lists")
def lists_element_delete(ctx: Context, params: dict, start: int | None) -> Result:
    params = _upper_keys(params)
    lst, eid = _element(ctx, params)
    ctx.crm.lists.delete(lst, eid)
    return Result(True)
