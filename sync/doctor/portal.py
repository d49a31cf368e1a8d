"""The portal as the mapping checks see it: cached read-only Bitrix24 calls and the field comparison."""
from __future__ import annotations

import difflib
from typing import Any, Callable, Iterable

from core.errors import CommandError, UpstreamError
from sync.doctor.checklist import Problem
from sync.doctor.texts import Texts
from sync.mapping import FieldMapping

STRINGISH = frozenset({"string", "char", "url"})
NUMBERS = frozenset({"integer", "double"})
DEAL_ENTITY_TYPE_ID = 2


class Portal:
    """The read-only Bitrix24 calls the checks make, each made once."""

    def __init__(self, client: Any, mapping_file: str, t: Texts) -> None:
        self.client = client
        self.file = mapping_file  # named in every fix
        self.t = t  # the run's language, for the problems the checks find
        self._cache: dict[str, Any] = {}

    def _once(self, key: str, load: Callable[[], Any]) -> Any:
        if key not in self._cache:
            self._cache[key] = load()
        return self._cache[key]

    def fields(self, method: str) -> dict[str, dict]:
        result = self._once(method, lambda: self.client.call(method).result)
        return result if isinstance(result, dict) else {}

    def item_fields(self, entity_type_id: int) -> dict[str, dict] | None:
        """The smart process's fields by camelCase name; None if there is no such smart process."""
        def load() -> dict | None:
            try:
                result = self.client.call("crm.item.fields", {"entityTypeId": entity_type_id}).result
            except CommandError as exc:
                if (exc.code or "").upper() == "NOT_FOUND":
                    return None
                raise
            fields = result.get("fields") if isinstance(result, dict) else None
            return fields if isinstance(fields, dict) else {}
        return self._once(f"item:{entity_type_id}", load)

    def smart_processes(self) -> str:
        """``1036 «Title», 1040 «Title»`` from crm.type.list (best effort, for messages)."""
        def load() -> str:
            try:
                result = self.client.call("crm.type.list").result
            except UpstreamError:
                return ""
            types = result.get("types") if isinstance(result, dict) else result
            return ", ".join(f"{t.get('entityTypeId')} «{t.get('title')}»" for t in types or []
                             if isinstance(t, dict))
        return self._once("types", load)

    def categories(self) -> dict[int, str]:
        def load() -> dict[int, str]:
            result = self.client.call("crm.category.list", {"entityTypeId": DEAL_ENTITY_TYPE_ID}).result
            rows = result.get("categories", []) if isinstance(result, dict) else result or []
            out = {}
            for row in rows:
                if isinstance(row, dict) and str(row.get("id", row.get("ID", ""))).lstrip("-").isdigit():
                    out[int(row.get("id", row.get("ID")))] = str(row.get("name", row.get("NAME", "")))
            return out
        return self._once("categories", load)

    def statuses(self, entity_id: str) -> dict[str, str]:
        def load() -> dict[str, str]:
            rows = self.client.list_all("crm.status.list", {"filter": {"ENTITY_ID": entity_id},
                                                            "order": {"SORT": "ASC"}})
            return {str(r.get("STATUS_ID")): str(r.get("NAME") or "") for r in rows if isinstance(r, dict)}
        return self._once(f"status:{entity_id}", load)

    def user(self, user_id: int) -> dict | None:
        def load() -> dict | None:
            rows = self.client.call("user.get", {"FILTER": {"ID": str(user_id)}}).result or []
            return next((r for r in rows if isinstance(r, dict) and str(r.get("ID")) == str(user_id)), None)
        return self._once(f"user:{user_id}", load)


def similar(name: str, candidates: Iterable[str], t: Texts) -> str:
    """`` (did you mean X?)`` for a near or case-folded match among ``candidates``, else ""."""
    names = list(candidates)
    close = difflib.get_close_matches(name, names, n=1, cutoff=0.75)
    if not close:
        folded = {c.lower(): c for c in names}
        close = [folded[name.lower()]] if name.lower() in folded else []
    return t.similar(close[0] if close else None)


def expected_types(source: str, mapping: FieldMapping) -> frozenset[str] | None:
    """The field types a value source can be written to (None: any — consts are checked by value)."""
    consent = mapping.questions.consent
    if consent and source == f"question:{consent}":
        return frozenset({"boolean"})
    if source.startswith("const:"):
        return None
    if source == "owner":
        return frozenset({"user", "integer"})
    if source in ("answer:answer_id", "answer:poll_id", "poll:poll_id"):
        return STRINGISH | NUMBERS
    if source in ("answer:created_at", "answer:updated_at"):
        return STRINGISH | {"datetime", "date"}
    return STRINGISH


def types_text(types: Iterable[str]) -> str:
    """``date/datetime/string``: field types for a message."""
    return "/".join(sorted(types))


def stage_entity(category_id: int) -> str:
    """The crm.status.list ENTITY_ID of a pipeline's stages."""
    return "DEAL_STAGE" if category_id == 0 else f"DEAL_STAGE_{category_id}"


def status_entity_of(descriptor: dict, category_id: int) -> str | None:
    """The crm.status.list ENTITY_ID a ``crm_status`` field takes its values from, if it says."""
    entity = descriptor.get("statusType")
    if not isinstance(entity, str) or not entity:
        return None
    return stage_entity(category_id) if entity == "DEAL_STAGE" else entity


def field_problems(portal: Portal, fields: dict[str, dict], *, entity: str, where: str,
                   wanted: list[tuple[str, str, str | None]], mapping: FieldMapping,
                   create_fix: str, category_id: int = 0, item: bool = False) -> list[Problem]:
    """Existence and type of ``(mapping path, field code, value source or None)`` in ``fields``.

    ``entity`` is already in the run's language (``t("entity.deals")``): the problems read in it.
    """
    t, problems = portal.t, []
    upper = {str(d.get("upperName")): name for name, d in fields.items() if isinstance(d, dict) and d.get("upperName")}
    for path, code, source in wanted:
        descriptor = fields.get(code)
        if not isinstance(descriptor, dict):
            if item and code in upper:
                problems.append(Problem(t("field.original", path=path, code=code, upper=upper[code]),
                                        t("field.fix_original", upper=upper[code], file=portal.file, path=path)))
                continue
            problems.append(Problem(t("field.missing", path=path, code=code, entity=entity, where=where,
                                      hint=similar(code, fields, t)),
                                    t("field.fix_missing", path=path, file=portal.file, create=create_fix)))
            continue
        if source is None:
            continue
        field_type = str(descriptor.get("type") or "")
        expected = expected_types(source, mapping)
        if expected is not None and field_type not in expected:
            problems.append(Problem(t("field.type", path=path, code=code, type=field_type or "?", source=source,
                                      expected=types_text(expected)),
                                    t("field.fix_type", source=source, expected=types_text(expected),
                                      file=portal.file)))
        elif source.startswith("const:") and field_type == "crm_status":
            status_entity = status_entity_of(descriptor, category_id)
            value = source.partition(":")[2]
            if status_entity:
                known = portal.statuses(status_entity)
                if value not in known:
                    problems.append(Problem(t("field.status", path=path, value=repr(value), entity=status_entity,
                                              known=", ".join(known) or t("none"), hint=similar(value, known, t)),
                                            t("field.fix_status", entity=status_entity, path=path,
                                              file=portal.file)))
    return problems
