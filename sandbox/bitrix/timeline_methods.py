"""``crm.timeline.comment.{add,get,list,update,delete,fields}`` over :mod:`.timeline`.

Shapes follow the legacy CRM dialect (strings, ISO dates; ``add`` -> int id). Since crm
23.100 only a lower-case ``fields`` key is accepted (bitrix24-rest.md §10); the emulator
refuses ``FIELDS``/``Fields`` with an error instead of dropping the comment silently, so a
client that sends the wrong case fails loudly in tests. The texts of the validation errors
below are the emulator's own (the real ones are not in the reference): ``""`` code, HTTP 400.
"""
from __future__ import annotations

from .methods import PAGE_SIZE, Context, Result, legacy_error, method
from .params import items_of, php_intval, pick, resolve_array_param, resolve_entity_id, values_of
from .state import iso
from .timeline import ENTITY_TYPES

_FIELDS = {
    "ID": ("integer", "ID", True, False),
    "CREATED": ("datetime", "Дата добавления", True, False),
    "ENTITY_ID": ("integer", "ID элемента", False, True),
    "ENTITY_TYPE": ("string", "Тип элемента", False, True),
    "AUTHOR_ID": ("integer", "Автор", False, True),
    "COMMENT": ("string", "Текст комментария", False, False),
    "FILES": ("attached_diskfile", "Файлы", False, False),
}


def _row(ctx: Context, c: dict, select: list[str] | None = None) -> dict:
    row = {"ID": str(c["ID"]), "CREATED": iso(c["CREATED"], ctx.tz), "ENTITY_ID": str(c["ENTITY_ID"]),
           "ENTITY_TYPE": c["ENTITY_TYPE"], "AUTHOR_ID": str(c["AUTHOR_ID"]), "COMMENT": c["COMMENT"]}
    if select:
        row = {k: v for k, v in row.items() if k in select or k == "ID"}
    return row


def _owner_exists(ctx: Context, entity_type: str, entity_id: int) -> bool:
    if entity_type == "deal":
        return entity_id in ctx.crm.deals.records
    if entity_type == "contact":
        return entity_id in ctx.crm.contacts.records
    return False   # leads, companies and orders are not emulated


def _owner(ctx: Context, fields: dict) -> tuple[str, int]:
    entity_type = str(fields.get("ENTITY_TYPE") or "").strip().lower()
    entity_id = php_intval(fields.get("ENTITY_ID")) if fields.get("ENTITY_ID") is not None else 0
    if entity_id <= 0:
        raise legacy_error("ENTITY_ID is not defined or invalid.")
    if entity_type not in ENTITY_TYPES:
        raise legacy_error("ENTITY_TYPE is not defined or invalid.")
    return entity_type, entity_id


@method("crm.timeline.comment.fields", "crm")
def comment_fields(ctx: Context, params: dict, start: int | None) -> Result:
    return Result({name: {"type": t, "isRequired": req, "isReadOnly": ro, "isImmutable": req,
                          "isMultiple": name == "FILES", "isDynamic": False, "title": title}
                   for name, (t, title, ro, req) in _FIELDS.items()})


@method("crm.timeline.comment.add", "crm")
def comment_add(ctx: Context, params: dict, start: int | None) -> Result:
    fields = params.get("fields")
    if not isinstance(fields, (dict, list)):
        raise legacy_error("Parameter 'fields' must be array (only the lower-case key 'fields' is accepted).")
    fields = dict(items_of(fields))
    entity_type, entity_id = _owner(ctx, fields)
    if not _owner_exists(ctx, entity_type, entity_id):
        raise legacy_error("Not found")
    comment = fields.get("COMMENT")
    if not isinstance(comment, (str, int, float)) or not str(comment).strip():
        raise legacy_error("Empty comment message.")
    author = php_intval(fields.get("AUTHOR_ID")) if fields.get("AUTHOR_ID") not in (None, "") else ctx.user_id
    return Result(ctx.crm.timeline.add(entity_type, entity_id, str(comment), author=author or ctx.user_id))


def _comment(ctx: Context, params: dict) -> dict:
    cid = resolve_entity_id(params)
    if cid <= 0:
        raise legacy_error("ID is not defined or invalid.")
    c = ctx.crm.timeline.comments.get(cid)
    if c is None:
        raise legacy_error("Not found")
    return c


@method("crm.timeline.comment.get", "crm")
def comment_get(ctx: Context, params: dict, start: int | None) -> Result:
    return Result(_row(ctx, _comment(ctx, params)))


@method("crm.timeline.comment.update", "crm")
def comment_update(ctx: Context, params: dict, start: int | None) -> Result:
    c = _comment(ctx, params)
    fields = params.get("fields")
    comment = fields.get("COMMENT") if isinstance(fields, dict) else None
    if not isinstance(comment, (str, int, float)) or not str(comment).strip():
        raise legacy_error("Empty comment message.")
    ctx.crm.timeline.update(c["ID"], str(comment))
    return Result(c["ID"])


@method("crm.timeline.comment.delete", "crm")
def comment_delete(ctx: Context, params: dict, start: int | None) -> Result:
    c = _comment(ctx, params)
    ctx.crm.timeline.delete(c["ID"])
    return Result(True)


@method("crm.timeline.comment.list", "crm")
def comment_list(ctx: Context, params: dict, start: int | None) -> Result:
    """Comments of one record: ``filter`` needs ``ENTITY_ID`` and ``ENTITY_TYPE`` (the docs
    mark both required); ``order`` by ``ID``/``CREATED``; pages of 50 with ``total``/``next``."""
    filt = resolve_array_param(params, "filter")
    filt = dict(items_of(filt)) if isinstance(filt, (dict, list)) else {}
    entity_type, entity_id = _owner(ctx, filt)
    rows = ctx.crm.timeline.of(entity_type, entity_id)
    order = resolve_array_param(params, "order")
    for key, direction in reversed(items_of(order) if isinstance(order, (dict, list)) else []):
        if key in ("ID", "CREATED"):
            rows.sort(key=lambda c, k=key: c[k], reverse=str(direction).upper() == "DESC")
    select = [str(s) for s in values_of(pick(params, "select", "SELECT"))]
    if "*" in select:
        select = []
    offset = max(start or 0, 0)
    page = rows[offset:offset + PAGE_SIZE]
    more = offset + PAGE_SIZE < len(rows)
    return Result([_row(ctx, c, select or None) for c in page], total=len(rows),
                  next=offset + PAGE_SIZE if more else None)
