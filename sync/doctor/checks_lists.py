"""The mapping against the portal's universal lists: poll forms, programmes and the deal's link to a programme.

The real portal keeps poll forms and programmes in universal lists (real-portal.md §1);
``field_mapping.json`` says so with ``storage: "list"``. These checks run only for what
the mapping keeps in lists; what it keeps in smart processes is checked by
``checks_mapping`` (and the smart-process lines are skipped for a list, naming where
it lives instead)::

    lists scope          the webhook has the "lists" scope (scope)
    poll form list       lists.get finds poll_form's list; lists.field.get has the title, poll id, owner and
                         URL fields with the types the job writes (S, S:employee ...); every required field
                         of the list is one the job fills (else lists.element.add refuses every new form)
    programme list       lists.get finds programmes' list; it has the title and status fields; the status
                         field is a list (L) whose values include every one of programmes.active_values
    deal programme link  deal.programme_link_field is an iblock_element field whose settings IBLOCK_ID is
                         the programmes list (crm.deal.fields)

Each failure names the mapping key, what the portal has instead, and the fix.
"""
from __future__ import annotations

from typing import Any, Callable

from core.errors import UpstreamError
from sync.doctor.checklist import CONFIG, SYSTEM, Checklist, Problem, Skip, one_line
from sync.doctor.checks_mapping import run_check
from sync.doctor.portal import Portal, similar
from sync.doctor.texts import Texts
from sync.mapping import FieldMapping, PollFormMapping, ProgrammesMapping

LISTS_SCOPE = "lists"
# lists.field.get TYPE values, as the lists module names them.
NAME_TYPES = frozenset({"NAME", "S"})
STRING = frozenset({"S"})
NUMBER_OR_STRING = frozenset({"S", "N"})
EMPLOYEE = frozenset({"S:employee"})


def _type_text(t: Texts, types: frozenset[str] | str) -> str:
    """``S (string) or N (number)``: the TYPE codes as they are, with their meaning for people."""
    names = sorted(types) if not isinstance(types, str) else [types]
    return t("or").join(f"{n} ({t.type_word(n)})" if t.type_word(n) else n for n in names)


class Lists:
    """The read-only lists calls the checks make, each made once (on top of ``Portal``'s deal fields)."""

    def __init__(self, portal: Portal) -> None:
        self.portal = portal
        self.client = portal.client
        self.file = portal.file
        self.t = portal.t
        self._cache: dict[str, Any] = {}

    def _once(self, key: str, load: Callable[[], Any]) -> Any:
        if key not in self._cache:
            self._cache[key] = load()
        return self._cache[key]

    def scopes(self) -> set[str]:
        def load() -> set[str]:
            result = self.client.call("scope").result
            return {str(s) for s in result} if isinstance(result, list) else set()
        return self._once("scope", load)

    def all_lists(self, iblock_type_id: str) -> dict[int, str]:
        """``{iblock id: name}`` of every list of this type (for messages naming what exists)."""
        def load() -> dict[int, str]:
            result = self.client.call("lists.get", {"IBLOCK_TYPE_ID": iblock_type_id}).result
            out: dict[int, str] = {}
            for row in result if isinstance(result, list) else []:
                if isinstance(row, dict) and str(row.get("ID", "")).isdigit():
                    out[int(row["ID"])] = str(row.get("NAME") or "")
            return out
        return self._once(f"lists:{iblock_type_id}", load)

    def list_name(self, iblock_type_id: str, iblock_id: int) -> str | None:
        """The list's name, or None when ``lists.get`` does not find it (it answers a bare [])."""
        def load() -> str | None:
            result = self.client.call("lists.get", {"IBLOCK_TYPE_ID": iblock_type_id, "IBLOCK_ID": iblock_id}).result
            rows = [r for r in result if isinstance(r, dict)] if isinstance(result, list) else []
            row = next((r for r in rows if str(r.get("ID")) == str(iblock_id)), None)
            return None if row is None else str(row.get("NAME") or "")
        return self._once(f"list:{iblock_type_id}:{iblock_id}", load)

    def fields(self, iblock_type_id: str, iblock_id: int) -> dict[str, dict]:
        def load() -> dict[str, dict]:
            result = self.client.call("lists.field.get", {"IBLOCK_TYPE_ID": iblock_type_id,
                                                          "IBLOCK_ID": iblock_id}).result
            return {str(k): v for k, v in result.items() if isinstance(v, dict)} if isinstance(result, dict) else {}
        return self._once(f"fields:{iblock_type_id}:{iblock_id}", load)


def _where(t: Texts, section: str, box: Any) -> str:
    return t("lists.where", id=box.iblock_id, section=section, type=repr(box.iblock_type_id))


def _find_list(lists: Lists, section: str, box: PollFormMapping | ProgrammesMapping) -> tuple[str, list[Problem]]:
    """The list's name; a problem naming the lists that do exist when it is not there."""
    name = lists.list_name(box.iblock_type_id, box.iblock_id)
    if name is not None:
        return name, []
    t, known = lists.t, lists.all_lists(box.iblock_type_id)
    listed = ", ".join(f"{k} «{v}»" for k, v in sorted(known.items())) or t("none")
    return "", [Problem(t("lists.missing", section=section, id=box.iblock_id, type=repr(box.iblock_type_id),
                          listed=listed),
                        t("lists.fix_missing", section=section, file=lists.file))]


def _field_label(t: Texts, row: dict) -> str:
    label = f"«{row.get('NAME')}»" if row.get("NAME") else ""
    code = t("lists.code", code=row.get("CODE")) if row.get("CODE") else ""
    return f"{label}{code}".strip()


def _typed_field(lists: Lists, fields: dict[str, dict], *, path: str, code: str, types: frozenset[str],
                 iblock_id: int) -> list[Problem]:
    """The field exists in the list (by its FIELD_ID, e.g. PROPERTY_64) and has one of ``types``."""
    t, row = lists.t, fields.get(code)
    if row is None:
        by_code = {f"PROPERTY_{r.get('CODE')}": fid for fid, r in fields.items() if r.get("CODE")}
        hint = (t("lists.symbolic", code=code, fid=by_code[code]) if code in by_code
                else similar(code, fields, t))
        listed = ", ".join(f"{fid} {_field_label(t, r)}".strip() for fid, r in fields.items())
        return [Problem(t("lists.field_missing", path=path, code=code, id=iblock_id, listed=listed, hint=hint),
                        t("lists.fix_field_missing", path=path, file=lists.file, place=t("lists.place")))]
    field_type = str(row.get("TYPE") or "")
    if field_type not in types:
        return [Problem(t("lists.field_type", path=path, code=code, label=_field_label(t, row), id=iblock_id,
                          type=_type_text(t, field_type or "?"), types=_type_text(t, types)),
                        t("lists.fix_field_type", path=path, file=lists.file, types=_type_text(t, types),
                          place=t("lists.place")))]
    return []


def _poll_form_list(lists: Lists, mapping: FieldMapping) -> tuple[str, list[Problem]]:
    pf, t = mapping.poll_form, lists.t
    name, problems = _find_list(lists, "poll_form", pf)
    if problems:
        return "", problems
    fields = lists.fields(pf.iblock_type_id, pf.iblock_id)
    wanted: list[tuple[str, str, frozenset[str]]] = [
        ("poll_form.title_field", pf.title_field, NAME_TYPES),
        ("poll_form.poll_id_field", pf.poll_id_field, NUMBER_OR_STRING),
        ("poll_form.owner_field", pf.owner_field, EMPLOYEE)]
    if pf.url_field:
        wanted.append(("poll_form.url_field", pf.url_field, STRING))
    wanted += [(f"poll_form.fields.{code}", code, EMPLOYEE if source == "owner" else NUMBER_OR_STRING)
               for code, source in pf.fields.items()]
    for path, code, types in wanted:
        problems += _typed_field(lists, fields, path=path, code=code, types=types, iblock_id=pf.iblock_id)
    # What every lists.element.add sends (sync.plan.polls): a required field outside it makes the portal
    # refuse every new poll form ("The field ... is required").
    filled = {pf.title_field, pf.poll_id_field, pf.owner_field, *pf.fields}
    if pf.url_field and pf.url_template:
        filled.add(pf.url_field)
    for fid, row in fields.items():
        if str(row.get("IS_REQUIRED", "N")).upper() != "Y" or fid in filled:
            continue
        if fid == pf.url_field:
            fix = t("lists.fix_url", file=lists.file)
        else:
            fix = t("lists.fix_required", fid=fid, file=lists.file, place=t("lists.place"))
        problems.append(Problem(t("lists.required", fid=fid, label=_field_label(t, row), id=pf.iblock_id), fix))
    return t("lists.poll_ok", where=_where(t, "poll_form", pf), name=name, n=len(wanted)), problems


def _programme_list(lists: Lists, mapping: FieldMapping) -> tuple[str, list[Problem]]:
    pm, t = mapping.programmes, lists.t
    name, problems = _find_list(lists, "programmes", pm)
    if problems:
        return "", problems
    fields = lists.fields(pm.iblock_type_id, pm.iblock_id)
    problems += _typed_field(lists, fields, path="programmes.title_field", code=pm.title_field, types=NAME_TYPES,
                             iblock_id=pm.iblock_id)
    status = ""
    if pm.status_field:
        found = _typed_field(lists, fields, path="programmes.status_field", code=pm.status_field,
                             types=frozenset({"L"}), iblock_id=pm.iblock_id)
        problems += found
        if not found:
            row = fields[pm.status_field]
            values = {str(k): str(v) for k, v in (row.get("DISPLAY_VALUES_FORM") or {}).items()}
            listed = ", ".join(f"{k} «{v}»" for k, v in values.items()) or t("none")
            for value in pm.active_values:
                if value not in values:
                    by_text = next((k for k, v in values.items() if v.casefold() == value.casefold()), None)
                    hint = t("lists.value_id", value=value, id=by_text) if by_text else ""
                    problems.append(Problem(t("lists.not_a_value", value=repr(value), field=pm.status_field,
                                              label=_field_label(t, row), listed=listed, hint=hint),
                                            t("lists.fix_active", file=lists.file)))
            if not pm.active_values:
                problems.append(Problem(t("lists.active_empty", field=pm.status_field, listed=listed),
                                        t("lists.fix_active_empty", file=lists.file)))
            shown = ", ".join(f"{v} «{values.get(v, '?')}»" for v in pm.active_values)
            status = t("lists.active", shown=shown) if shown else ""
    elif pm.active_values:
        problems.append(Problem(t("lists.no_status"), t("lists.fix_no_status", file=lists.file)))
    return t("lists.programme_ok", where=_where(t, "programmes", pm), name=name, field=pm.title_field,
             status=status), problems


def _deal_programme_link(lists: Lists, mapping: FieldMapping) -> tuple[str, list[Problem]]:
    pm, code, t = mapping.programmes, mapping.deal.programme_link_field, lists.t
    if not code:
        return t("link.unset"), []
    deal_fields = lists.portal.fields("crm.deal.fields")
    descriptor = deal_fields.get(code)
    create = t("link.create", id=pm.iblock_id, file=lists.file)
    if not isinstance(descriptor, dict):
        return "", [Problem(t("field.missing", path="deal.programme_link_field", code=code, entity=t("entity.deals"),
                              where="crm.deal.fields", hint=similar(code, deal_fields, t)), create)]
    field_type = str(descriptor.get("type") or "")
    label = descriptor.get("formLabel") or descriptor.get("listLabel") or ""
    label = f" «{label}»" if label and label != code else ""
    if field_type != "iblock_element":
        return "", [Problem(t("link.type", code=code, label=label, type=field_type or "?", id=pm.iblock_id),
                            create)]
    settings = descriptor.get("settings") if isinstance(descriptor.get("settings"), dict) else {}
    linked = str(settings.get("IBLOCK_ID") or "")
    if linked != str(pm.iblock_id):
        return "", [Problem(t("link.other_list", code=code, label=label, linked=linked or t("link.none"),
                              id=pm.iblock_id),
                            t("link.fix_other_list", id=pm.iblock_id, code=code, file=lists.file))]
    return t("link.ok", code=code, label=label, id=pm.iblock_id), []


def list_checks(ck: Checklist, client: Any, mapping: FieldMapping | None, mapping_file: str) -> None:
    """The universal-list checks, for what the mapping keeps in lists (nothing for a smart-process mapping)."""
    if mapping is None or not (mapping.poll_form.is_list or mapping.programmes.is_list):
        return  # the smart-process lines of checks_mapping cover it
    plan: list[tuple[str, Callable, tuple[str, ...]]] = [("lists scope", None, ())]
    if mapping.poll_form.is_list:
        plan.append(("poll form list", _poll_form_list, ("lists scope",)))
    if mapping.programmes.is_list:
        plan.append(("programme list", _programme_list, ("lists scope",)))
        plan.append(("deal programme link", _deal_programme_link, ()))
    t = ck.t
    lists = Lists(Portal(client, mapping_file, t)) if client is not None else None
    for name, check, needs in plan:
        if check is None and lists is not None:
            try:
                ck.needs("Bitrix24 webhook", *needs)
            except Skip as why:
                ck.skip(name, str(why), CONFIG)
                continue
            try:
                _scope_check(ck, lists, mapping)
            except UpstreamError as exc:  # FatalError too: the portal could not say which scopes it has
                ck.fail(name, t("portal.failed", error=one_line(exc)), t("portal.fix_again"), SYSTEM)
            continue

        def attempt(check=check, needs=needs) -> tuple[str, list[Problem]]:
            ck.needs("Bitrix24 webhook", *needs)
            if lists is None:
                raise Skip(t("skip.unusable"))
            return check(lists, mapping)
        run_check(ck, name, attempt)


def _scope_check(ck: Checklist, lists: Lists, mapping: FieldMapping) -> None:
    t = ck.t
    kept = t("and").join(t(key) for key, box in (("kept.poll_forms", mapping.poll_form),
                                                  ("kept.programmes", mapping.programmes)) if box.is_list)
    scopes = lists.scopes()
    if LISTS_SCOPE in scopes:
        ck.ok("lists scope", t("lists_scope.ok", kept=kept))
        return
    ck.fail("lists scope", t("lists_scope.missing", kept=kept, have=", ".join(sorted(scopes)) or t("none")),
            t("scopes.fix", names=f"'{LISTS_SCOPE}'"), SYSTEM)
