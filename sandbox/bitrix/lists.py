"""Universal lists (information blocks of type ``lists``): the store behind ``lists.*``.

The real portal keeps poll forms (list 17) and programmes (list 18) here (real-portal.md §1).
What is reproduced, from the ``lists`` module's REST service and ``Bitrix\\Lists\\Entity\\Element``
(bitrix24-rest.md §6.9, §10):

* element ids and property-value ids come from portal-wide sequences (``b_iblock_element``,
  ``b_iblock_element_property``), so ids are unique across lists;
* a property value is stored with its own value id and read back as ``{value_id: value}``;
  empty values are not stored (``GetProperty(..., EMPTY=N)`` never returns them);
* ``add`` and ``update`` write *every* field of the list: a field missing from ``FIELDS``
  is written as empty, i.e. cleared -- and so is the element's code when the update
  addresses the element by ``ELEMENT_ID`` only (``CODE => $params["ELEMENT_CODE"]``);
* the element code is unique within a list (``isExist`` by ``=CODE`` before ``add``).

Everything here expects the caller to hold the CRM lock.
"""
from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field as dc_field
from typing import Any, Callable

from .params import php_intval

PAGE_SIZE = 50
# Portal-wide sequences start well above the seeded ids, like a portal with history.
FIRST_VALUE_ID = 3000


@dataclass
class ListField:
    """One entry of ``lists.field.get``: the element's ``NAME`` or a ``PROPERTY_<id>``."""
    field_id: str
    name: str
    type: str                      # "NAME", "S", "S:employee", "E:EList", "L", "N", ...
    required: bool
    sort: int
    code: str = ""
    prop_id: int | None = None
    link_iblock_id: int | None = None
    multiple: bool = False
    default: str = ""
    values: dict[str, str] | None = None     # list ("L") fields: enum id -> text

    @property
    def is_property(self) -> bool:
        return self.prop_id is not None

    @property
    def base_type(self) -> str:
        """``PROPERTY_TYPE``: ``S``, ``N``, ``L``, ``E``, ``F`` (``S:employee`` -> ``S``)."""
        return self.type.split(":", 1)[0]


@dataclass
class UniversalList:
    iblock_type_id: str
    iblock_id: int
    code: str
    name: str
    fields: dict[str, ListField]
    elements: dict[int, dict] = dc_field(default_factory=dict)
    ids: list[int] = dc_field(default_factory=list)

    @property
    def properties(self) -> list[ListField]:
        return [f for f in self.fields.values() if f.is_property]

    def property_by_key(self, key: str) -> ListField | None:
        """``PROPERTY_64`` or ``PROPERTY_POLL_ID`` (the lists filter accepts both)."""
        f = self.fields.get(key)
        if f is not None and f.is_property:
            return f
        if key.startswith("PROPERTY_"):
            code = key[len("PROPERTY_"):]
            for f in self.properties:
                if f.code and f.code.upper() == code:
                    return f
        return None

    def element_by_code(self, code: str) -> int | None:
        for eid in self.ids:
            if self.elements[eid]["CODE"] == code:
                return eid
        return None


class FieldValueError(Exception):
    """A value ``validateFields`` refuses (``ERROR_ELEMENT_FIELD_VALUE``)."""


def _parse_fields(spec: dict) -> dict[str, ListField]:
    out: dict[str, ListField] = {}
    for i, (fid, fs) in enumerate(spec.items()):
        values = fs.get("VALUES") or fs.get("DISPLAY_VALUES_FORM")
        link = fs.get("LINK_IBLOCK_ID")
        out[fid] = ListField(
            field_id=fid, name=fs.get("NAME", fid), type=fs.get("TYPE", "S"),
            required=str(fs.get("IS_REQUIRED", "N")).upper() == "Y", sort=10 * (i + 1),
            code=fs.get("CODE") or "", prop_id=php_intval(fs["ID"]) if fs.get("ID") else None,
            link_iblock_id=php_intval(link) if link else None,
            multiple=str(fs.get("MULTIPLE", "N")).upper() == "Y", default=str(fs.get("DEFAULT_VALUE") or ""),
            values={str(k): str(v) for k, v in values.items()} if isinstance(values, dict) else None)
    return out


def php_empty(value: Any) -> bool:
    """PHP ``empty()``: ``null``, ``""``, ``"0"``, ``0``, ``false`` and ``[]``."""
    return value is None or value is False or value == "" or value == "0" or value == 0 or value in ([], {})


def _is_numeric(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, float)):
        return True
    return isinstance(value, str) and re.fullmatch(r"\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?", value) is not None


class ListStore:
    """All universal lists of the portal, seeded from ``portal["lists"]``."""

    def __init__(self, specs: list[dict], *, now: Callable[[], float], caller_id: int) -> None:
        self.now = now
        self.caller_id = caller_id
        self.lists: dict[int, UniversalList] = {}
        self.next_element_id = 1
        self.next_value_id = FIRST_VALUE_ID
        for spec in specs:
            lst = UniversalList(str(spec.get("IBLOCK_TYPE_ID", "lists")), int(spec["IBLOCK_ID"]),
                                str(spec.get("IBLOCK_CODE") or ""), str(spec.get("NAME", "")),
                                _parse_fields(spec.get("fields", {})))
            self.lists[lst.iblock_id] = lst
        seeded = [int(e["ID"]) for spec in specs for e in spec.get("elements", []) if e.get("ID")]
        self.next_element_id = max(seeded, default=0) + 1
        for spec in specs:
            lst = self.lists[int(spec["IBLOCK_ID"])]
            for e in spec.get("elements", []):
                values = {k: v for k, v in e.items() if k not in ("ID", "CODE")}
                self._insert(lst, php_intval(e.get("ID")) or None, e.get("CODE"), values, caller_id)

    # ---- look-ups ----

    def find(self, iblock_type_id: str, iblock_id: Any, iblock_code: Any) -> UniversalList | None:
        """The list by id, else by code, within the given iblock type (``Iblock::isExist``)."""
        for lst in self.lists.values():
            if lst.iblock_type_id != iblock_type_id:
                continue
            if iblock_id not in (None, "") and lst.iblock_id == php_intval(iblock_id):
                return lst
            if iblock_id in (None, "") and iblock_code not in (None, "") and lst.code == str(iblock_code):
                return lst
        return None

    def find_element(self, lst: UniversalList, element_id: Any, element_code: Any) -> int | None:
        """``Element::isExist``: ``ID`` and ``=CODE`` both applied, an empty one ignored."""
        eid = php_intval(element_id) if element_id not in (None, "") else None
        code = str(element_code) if element_code not in (None, "") else None
        if eid is None and code is None:
            return None
        candidates = [eid] if eid is not None else list(lst.ids)
        for cand in candidates:
            rec = lst.elements.get(cand)
            if rec is not None and (code is None or rec["CODE"] == code):
                return cand
        return None

    # ---- writes ----

    def validate(self, lst: UniversalList, fields: dict) -> None:
        """``Element::validateFields``: required fields, numbers; the *last* error is the one reported."""
        errors: list[str] = []
        for fid, f in lst.fields.items():
            value = fields.get(fid)
            if f.required and php_empty(value) and not _is_numeric(value):
                errors.append(f"The field \"{f.name}\" is required")
            if f.is_property and f.base_type == "N":
                for v in _flatten(value):
                    text = str(v).replace(",", ".").replace(" ", "") if v is not None else ""
                    if text and not php_empty(text) and not _is_numeric(text):
                        errors.append(f"Value of the \"{f.name}\" field is not correct")
        if errors:
            raise FieldValueError(errors[-1])

    def add(self, lst: UniversalList, code: str | None, fields: dict, *, author: int) -> int:
        return self._insert(lst, None, code, fields, author)

    def update(self, lst: UniversalList, eid: int, code: str | None, fields: dict, *, author: int) -> None:
        """Overwrite the element: every field of the list is rewritten from ``fields``."""
        rec = lst.elements[eid]
        old = rec["props"]
        rec["NAME"] = _base_value(fields.get("NAME")) or ""
        rec["CODE"] = code
        rec["MODIFIED_BY"] = author
        rec["TIMESTAMP_X"] = self.now()
        props: dict[int, list[tuple[int, str]]] = {}
        for f in lst.properties:
            new_values = self._property_values(f, fields.get(f.field_id))
            kept = {v: vid for vid, v in old.get(f.prop_id, [])}
            # An unchanged value keeps its row (and id); anything else is a new row.
            props[f.prop_id] = [(kept.pop(v) if v in kept else self._value_id(), v) for v in new_values]
        rec["props"] = {pid: vals for pid, vals in props.items() if vals}

    def delete(self, lst: UniversalList, eid: int) -> None:
        del lst.elements[eid]
        lst.ids.remove(eid)

    def _value_id(self) -> int:
        vid = self.next_value_id
        self.next_value_id += 1
        return vid

    def _insert(self, lst: UniversalList, eid: int | None, code: str | None, fields: dict, author: int) -> int:
        if eid is None:
            eid = self.next_element_id
        self.next_element_id = max(self.next_element_id, eid + 1)
        now = self.now()
        rec = {"ID": eid, "IBLOCK_ID": lst.iblock_id, "NAME": _base_value(fields.get("NAME")) or "",
               "CODE": str(code) if code not in (None, "") else None, "ACTIVE": "Y", "SORT": 500,
               "CREATED_BY": author, "MODIFIED_BY": author, "DATE_CREATE": now, "TIMESTAMP_X": now, "props": {}}
        for f in lst.properties:
            values = self._property_values(f, fields.get(f.field_id))
            if values:
                rec["props"][f.prop_id] = [(self._value_id(), v) for v in values]
        lst.elements[eid] = rec
        bisect.insort(lst.ids, eid)
        return eid

    @staticmethod
    def _property_values(f: ListField, raw: Any) -> list[str]:
        """``setPropertyValue`` + ``CIBlockElement``: the non-empty values that get stored.

        A scalar, a list, or ``{"n0": v}`` / ``{value_id: v}``; a single property keeps its first
        value; a list ("L") value must be one of the enum ids and a link ("E") or employee value
        must be a positive id, else nothing is stored (no error: the iblock drops it).
        """
        out: list[str] = []
        for v in _flatten(raw):
            if v is None or isinstance(v, (dict, list)):
                continue
            if isinstance(v, bool):
                v = "1" if v else ""
            text = str(v).strip() if not isinstance(v, float) else (str(int(v)) if v.is_integer() else str(v))
            if text == "":
                continue
            base = f.base_type
            if base == "L":
                if f.values is None or text not in f.values:
                    continue
            elif base == "E" or f.type == "S:employee":
                iv = php_intval(text)
                if iv <= 0:
                    continue
                text = str(iv)
            elif base == "N":
                text = text.replace(",", ".").replace(" ", "")
                if not _is_numeric(text):
                    continue
            out.append(text)
        if not f.multiple:
            out = out[:1]
        return out

    # ---- reads ----

    def row(self, lst: UniversalList, eid: int) -> dict:
        """An element as ``lists.element.get`` renders it: strings, properties keyed by value id."""
        rec = lst.elements[eid]
        row: dict[str, Any] = {"ID": str(rec["ID"]), "IBLOCK_ID": str(lst.iblock_id), "NAME": rec["NAME"],
                               "IBLOCK_SECTION_ID": None, "CREATED_BY": str(rec["CREATED_BY"]),
                               "BP_PUBLISHED": "Y", "CODE": rec["CODE"]}
        for f in lst.properties:
            values = rec["props"].get(f.prop_id)
            if values:
                row[f.field_id] = {str(vid): v for vid, v in values}
        return row

    def value_of(self, lst: UniversalList, eid: int, key: str) -> list[str] | str | int | None:
        """A field's comparable value(s) for filtering and sorting."""
        rec = lst.elements[eid]
        if key == "ID":
            return rec["ID"]
        if key in ("NAME", "CODE", "ACTIVE"):
            return rec[key]
        if key in ("CREATED_BY", "MODIFIED_BY", "SORT", "IBLOCK_ID"):
            return rec[key]
        f = lst.property_by_key(key)
        if f is None:
            return None
        return [v for _, v in rec["props"].get(f.prop_id, [])]

    def dump(self, lst: UniversalList) -> list[dict]:
        """Plain elements for tests: ids as ints, each property as a list of its values."""
        out = []
        for eid in lst.ids:
            rec = lst.elements[eid]
            item = {"ID": eid, "NAME": rec["NAME"], "CODE": rec["CODE"], "CREATED_BY": rec["CREATED_BY"],
                    "MODIFIED_BY": rec["MODIFIED_BY"]}
            for f in lst.properties:
                item[f.field_id] = [v for _, v in rec["props"].get(f.prop_id, [])]
            out.append(item)
        return out


def _flatten(raw: Any) -> list:
    """``setPropertyValue``'s walk: a scalar is one value; arrays one level (or two) deep."""
    if raw is None:
        return []
    seq = list(raw.values()) if isinstance(raw, dict) else raw if isinstance(raw, list) else [raw]
    out: list = []
    for v in seq:
        if isinstance(v, dict):
            out.extend(v.values())
        elif isinstance(v, list):
            out.extend(v)
        else:
            out.append(v)
    return out


def _base_value(raw: Any) -> str | None:
    """``setBaseValue``: an array gives its first value."""
    if isinstance(raw, dict):
        raw = next(iter(raw.values()), None)
    elif isinstance(raw, list):
        raw = raw[0] if raw else None
    if raw is None or isinstance(raw, (dict, list)):
        return None
    if isinstance(raw, bool):
        return "1" if raw else ""
    return str(raw)
