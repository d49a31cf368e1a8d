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

from core.errors import FatalError, UpstreamError
from sync.doctor.checklist import CONFIG, SYSTEM, Checklist, Problem, Skip, one_line
from sync.doctor.checks_bitrix import WEBHOOK_FIX
from sync.doctor.checks_mapping import join_problems
from sync.doctor.portal import Portal, similar
from sync.mapping import FieldMapping, PollFormMapping, ProgrammesMapping

LISTS_SCOPE = "lists"
# lists.field.get TYPE values, as the lists module names them.
NAME_TYPES = frozenset({"NAME", "S"})
STRING = frozenset({"S"})
NUMBER_OR_STRING = frozenset({"S", "N"})
EMPLOYEE = frozenset({"S:employee"})
TYPE_WORDS = {"NAME": "the element's name", "S": "string", "N": "number", "S:employee": "employee (user)",
              "L": "list", "E": "link to elements", "E:EList": "link to elements", "F": "file",
              "S:Date": "date", "S:DateTime": "date and time"}
PLACE = "Lists → the list → List settings → Fields"


def _type_text(types: frozenset[str] | str) -> str:
    names = sorted(types) if not isinstance(types, str) else [types]
    return " or ".join(f"{t} ({TYPE_WORDS[t]})" if t in TYPE_WORDS else t for t in names)


class Lists:
    """The read-only lists calls the checks make, each made once (on top of ``Portal``'s deal fields)."""

    def __init__(self, portal: Portal) -> None:
        self.portal = portal
        self.client = portal.client
        self.file = portal.file
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


def _where(section: str, box: Any) -> str:
    return f"universal list {box.iblock_id} ({section}.iblock_id, type {box.iblock_type_id!r})"


def _find_list(lists: Lists, section: str, box: PollFormMapping | ProgrammesMapping) -> tuple[str, list[Problem]]:
    """The list's name; a problem naming the lists that do exist when it is not there."""
    name = lists.list_name(box.iblock_type_id, box.iblock_id)
    if name is not None:
        return name, []
    known = lists.all_lists(box.iblock_type_id)
    listed = ", ".join(f"{k} «{v}»" for k, v in sorted(known.items())) or "none"
    return "", [Problem(f"{section}.iblock_id {box.iblock_id}: there is no universal list {box.iblock_id} of type "
                        f"{box.iblock_type_id!r} on the portal (lists.get; lists of this type: {listed})",
                        f"set {section}.iblock_id in {lists.file} to the list's ID (Lists → the list: the number in "
                        f"its address), or correct {section}.iblock_type_id")]


def _field_label(row: dict) -> str:
    label = f"«{row.get('NAME')}»" if row.get("NAME") else ""
    code = f" (code {row.get('CODE')})" if row.get("CODE") else ""
    return f"{label}{code}".strip()


def _typed_field(lists: Lists, fields: dict[str, dict], *, path: str, code: str, types: frozenset[str],
                 iblock_id: int) -> list[Problem]:
    """The field exists in the list (by its FIELD_ID, e.g. PROPERTY_64) and has one of ``types``."""
    row = fields.get(code)
    if row is None:
        by_code = {f"PROPERTY_{r.get('CODE')}": fid for fid, r in fields.items() if r.get("CODE")}
        hint = (f" ({code} is the field's symbolic code; the list calls it {by_code[code]})" if code in by_code
                else similar(code, fields))
        listed = ", ".join(f"{fid} {_field_label(r)}".strip() for fid, r in fields.items())
        return [Problem(f"{path}: {code} is not a field of list {iblock_id} (lists.field.get: {listed}){hint}",
                        f"correct {path} in {lists.file} to one of these field IDs, or create the field "
                        f"({PLACE})")]
    field_type = str(row.get("TYPE") or "")
    if field_type not in types:
        return [Problem(f"{path}: {code} {_field_label(row)} of list {iblock_id} is of type "
                        f"{_type_text(field_type or '?')}, but the job writes {_type_text(types)} there",
                        f"point {path} in {lists.file} at a field of type {_type_text(types)}, or change the "
                        f"field's type ({PLACE})")]
    return []


def _poll_form_list(lists: Lists, mapping: FieldMapping) -> tuple[str, list[Problem]]:
    pf = mapping.poll_form
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
            fix = f"set poll_form.url_template in {lists.file} (e.g. \"https://portal.example.edu/polls/{{poll_id}}.html\")"
        else:
            fix = (f"fill it from the mapping (poll_form.fields.{fid} = a value source in {lists.file}), or make "
                   f"the field optional ({PLACE})")
        problems.append(Problem(f"{fid} {_field_label(row)} is required in list {pf.iblock_id}, but the job does "
                                f"not fill it: lists.element.add would refuse every new poll form", fix))
    return (f"{_where('poll_form', pf)} «{name}» has {len(wanted)} fields of the right types, and the job fills "
            f"every required one"), problems


def _programme_list(lists: Lists, mapping: FieldMapping) -> tuple[str, list[Problem]]:
    pm = mapping.programmes
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
            listed = ", ".join(f"{k} «{v}»" for k, v in values.items()) or "none"
            for value in pm.active_values:
                if value not in values:
                    by_text = next((k for k, v in values.items() if v.casefold() == value.casefold()), None)
                    hint = f" (the value «{value}» has the ID {by_text})" if by_text else ""
                    problems.append(Problem(f"programmes.active_values: {value!r} is not a value of "
                                            f"{pm.status_field} {_field_label(row)} (values: {listed}){hint}",
                                            f"list the value IDs meaning «active» in programmes.active_values in "
                                            f"{lists.file}"))
            if not pm.active_values:
                problems.append(Problem(f"programmes.status_field is {pm.status_field}, but programmes.active_values "
                                        f"is empty: the status is ignored and every programme counts as active "
                                        f"(values: {listed})",
                                        f"list the value IDs meaning «active» in programmes.active_values in "
                                        f"{lists.file}, or remove programmes.status_field"))
            shown = ", ".join(f"{v} «{values.get(v, '?')}»" for v in pm.active_values)
            status = f"; active: {shown}" if shown else ""
    elif pm.active_values:
        problems.append(Problem("programmes.active_values is set, but programmes.status_field is not: every "
                                "programme counts as active",
                                f"set programmes.status_field in {lists.file} to the list's status field "
                                f"(a list-type field, lists.field.get)"))
    return f"{_where('programmes', pm)} «{name}» has the title field {pm.title_field}{status}", problems


def _deal_programme_link(lists: Lists, mapping: FieldMapping) -> tuple[str, list[Problem]]:
    pm, code = mapping.programmes, mapping.deal.programme_link_field
    if not code:
        return "deal.programme_link_field is not set: deals name their programme only in the title", []
    descriptor = lists.portal.fields("crm.deal.fields").get(code)
    create = (f"create a deal field of type «Привязка к элементам информационных блоков» (iblock_element) on list "
              f"{pm.iblock_id} (CRM → Deals → Settings → Custom fields) and put its code in deal.programme_link_field "
              f"in {lists.file}")
    if not isinstance(descriptor, dict):
        return "", [Problem(f"deal.programme_link_field: {code} is not a field of deals (crm.deal.fields)"
                            f"{similar(code, lists.portal.fields('crm.deal.fields'))}", create)]
    field_type = str(descriptor.get("type") or "")
    label = descriptor.get("formLabel") or descriptor.get("listLabel") or ""
    label = f" «{label}»" if label and label != code else ""
    if field_type != "iblock_element":
        return "", [Problem(f"deal.programme_link_field: {code}{label} is of type {field_type or '?'}, not "
                            f"iblock_element: it cannot hold an element of list {pm.iblock_id}", create)]
    settings = descriptor.get("settings") if isinstance(descriptor.get("settings"), dict) else {}
    linked = str(settings.get("IBLOCK_ID") or "")
    if linked != str(pm.iblock_id):
        return "", [Problem(f"deal.programme_link_field: {code}{label} links to list {linked or '(none)'}, but the "
                            f"programmes are list {pm.iblock_id} (programmes.iblock_id)",
                            f"choose list {pm.iblock_id} in the field's settings (CRM → Deals → Settings → Custom "
                            f"fields → {code}), or point deal.programme_link_field in {lists.file} at the field "
                            f"that links to it")]
    return f"deal.programme_link_field {code}{label} links deals to list {pm.iblock_id}", []


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
    lists = Lists(Portal(client, mapping_file)) if client is not None else None
    for name, check, needs in plan:
        try:
            ck.needs("Bitrix24 webhook", *needs)
            if lists is None:
                raise Skip("Bitrix24 is not usable")
            if check is None:
                _scope_check(ck, lists, mapping)
                continue
            ok_detail, problems = check(lists, mapping)
        except Skip as why:
            ck.skip(name, str(why), CONFIG)
            continue
        except FatalError as exc:
            ck.fail(name, f"Bitrix24 refused a look-up: {one_line(exc)}", WEBHOOK_FIX, SYSTEM)
            continue
        except UpstreamError as exc:
            ck.fail(name, f"Bitrix24 look-up failed: {one_line(exc)}", "run doctor again once Bitrix24 answers",
                    SYSTEM)
            continue
        if problems:
            detail, fix = join_problems(problems)
            ck.fail(name, detail, fix, CONFIG)
        else:
            ck.ok(name, ok_detail)


def _scope_check(ck: Checklist, lists: Lists, mapping: FieldMapping) -> None:
    kept = [what for what, box in (("poll forms", mapping.poll_form), ("programmes", mapping.programmes))
            if box.is_list]
    scopes = lists.scopes()
    if LISTS_SCOPE in scopes:
        ck.ok("lists scope", f"the mapping keeps {' and '.join(kept)} in universal lists (lists.*); the webhook has "
                             f"the 'lists' scope")
        return
    ck.fail("lists scope", f"the mapping keeps {' and '.join(kept)} in universal lists, but the webhook lacks the "
                           f"'lists' scope (it has: {', '.join(sorted(scopes)) or 'none'})",
            "tick 'lists' on the inbound webhook (Developer resources → Integrations → your webhook → Permissions) "
            "and save; the URL stays the same", SYSTEM)
