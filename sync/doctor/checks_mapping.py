"""The mapping against the portal: deal, contact and smart-process fields, pipeline, stage, source, user.

Each check returns ``(detail when it passes, problems)``; ``portal_checks`` runs them
in order, skipping those whose prerequisite failed or whose scope the webhook lacks.
"""
from __future__ import annotations

from typing import Any, Callable

from core.errors import FatalError, UpstreamError
from sync.doctor.checklist import CONFIG, SYSTEM, Checklist, Problem, Skip, one_line
from sync.doctor.checks_bitrix import WEBHOOK_FIX
from sync.doctor.portal import Portal, field_problems, similar, stage_entity
from sync.mapping import FieldMapping


def join_problems(problems: list[Problem]) -> tuple[str, str]:
    """One detail and one fix for a check line (each distinct fix once)."""
    fixes: list[str] = []
    for p in problems:
        if p.fix and p.fix not in fixes:
            fixes.append(p.fix)
    return "; ".join(p.detail for p in problems), "; ".join(fixes)


def _deal_fields(portal: Portal, mapping: FieldMapping) -> tuple[str, list[Problem]]:
    deal = mapping.deal
    fields = portal.fields("crm.deal.fields")
    wanted: list[tuple[str, str, str | None]] = [
        ("deal.contact_field", deal.contact_field, None), ("deal.owner_field", deal.owner_field, None),
        ("ORIGINATOR_ID (the external key)", "ORIGINATOR_ID", None), ("ORIGIN_ID (the external key)", "ORIGIN_ID", None)]
    links = (("deal.poll_form_link_field", deal.poll_form_link_field, "poll_form", mapping.poll_form.entity_type_id),
             ("deal.programme_link_field", deal.programme_link_field, "programmes", mapping.programmes.entity_type_id))
    problems: list[Problem] = []
    for path, code, section, etid in links:
        if not code:
            continue
        wanted.append((path, code, None))
        if code.startswith("PARENT_ID_") and code != f"PARENT_ID_{etid}":
            problems.append(Problem(f"{path}: {code} links to entity type {code.removeprefix('PARENT_ID_')}, but "
                                    f"{section}.entity_type_id is {etid}",
                                    f"make {path} PARENT_ID_<{section}.entity_type_id> in {portal.file}"))
    wanted += [(f"deal.fields.{code}", code, source) for code, source in deal.fields.items()]
    create = "create the user field in CRM → Deals → Settings → Custom fields"
    problems = field_problems(portal, fields, entity="deals", where="crm.deal.fields", wanted=wanted,
                              mapping=mapping, create_fix=create, category_id=deal.category_id) + problems
    for code, enum in deal.enumerations.items():
        path = f"deal.enumerations.{code}"
        descriptor = fields.get(code)
        if not isinstance(descriptor, dict):
            problems.append(Problem(f"{path}: {code} is not a field of deals (crm.deal.fields)"
                                    f"{similar(code, fields)}", f"correct {path} in {portal.file}, or {create}"))
            continue
        if descriptor.get("type") != "enumeration":
            problems.append(Problem(f"{path}: {code} is of type {descriptor.get('type')}, not enumeration",
                                    f"map {path} to a list (enumeration) field in {portal.file}"))
            continue
        items = {str(i.get("ID")): str(i.get("VALUE")) for i in descriptor.get("items") or [] if isinstance(i, dict)}
        for answer, item_id in enum.values.items():
            if item_id not in items:
                listed = ", ".join(f"{k} «{v}»" for k, v in items.items()) or "none"
                problems.append(Problem(f"{path}.values[{answer!r}]: item ID {item_id} is not an item of {code} "
                                        f"(items: {listed})",
                                        f"use the item IDs of {code} (crm.deal.fields) in {path}.values in "
                                        f"{portal.file}"))
    checked = len(wanted) + len(deal.enumerations)
    return f"all {checked} deal fields the mapping names exist with compatible types", problems


def _deal_category(portal: Portal, mapping: FieldMapping) -> tuple[str, list[Problem]]:
    category = mapping.deal.category_id
    known = portal.categories()
    if category in known or (category == 0 and not known):
        return f"deal.category_id {category} is the pipeline «{known.get(category, 'default')}»", []
    listed = ", ".join(f"{k} «{v}»" for k, v in sorted(known.items())) or "none"
    return "", [Problem(f"deal.category_id {category} is not a deal pipeline on the portal (crm.category.list: "
                        f"{listed})", f"set deal.category_id in {portal.file} to one of these IDs")]


def _deal_stage(portal: Portal, mapping: FieldMapping) -> tuple[str, list[Problem]]:
    deal = mapping.deal
    entity = stage_entity(deal.category_id)
    stages = portal.statuses(entity)
    if deal.stage_id in stages:
        return f"deal.stage_id {deal.stage_id} is «{stages[deal.stage_id]}» ({entity})", []
    return "", [Problem(f"deal.stage_id {deal.stage_id!r} is not a stage of pipeline {deal.category_id} "
                        f"(crm.status.list {entity}: {', '.join(stages) or 'none'}){similar(deal.stage_id, stages)}",
                        f"set deal.stage_id in {portal.file} to one of these")]


def _deal_source(portal: Portal, mapping: FieldMapping) -> tuple[str, list[Problem]]:
    source = mapping.deal.source_id
    if not source:
        return "deal.source_id is not set (the portal's default source is used)", []
    sources = portal.statuses("SOURCE")
    if source in sources:
        return f"deal.source_id {source} is «{sources[source]}»", []
    return "", [Problem(f"deal.source_id {source!r} is not a source on the portal (crm.status.list SOURCE: "
                        f"{', '.join(sources) or 'none'}){similar(source, sources)}",
                        f"set deal.source_id in {portal.file} to one of these, or add the source in CRM settings")]


def _contact_fields(portal: Portal, mapping: FieldMapping) -> tuple[str, list[Problem]]:
    contact = mapping.contact
    wanted: list[tuple[str, str, str | None]] = [
        ("contact.name_field", contact.name_field, "question:first_name"),
        ("contact.last_name_field", contact.last_name_field, "question:last_name"),
        ("contact.middle_name_field", contact.middle_name_field, "question:middle_name")]
    wanted += [(f"contact.on_create.{code}", code, source) for code, source in contact.on_create.items()]
    problems = field_problems(portal, portal.fields("crm.contact.fields"), entity="contacts",
                              where="crm.contact.fields", wanted=wanted, mapping=mapping,
                              create_fix="create the user field in CRM → Contacts → Settings → Custom fields")
    return f"all {len(wanted)} contact fields the mapping names exist with compatible types", problems


def _smart_process_fields(portal: Portal, mapping: FieldMapping, section: str, entity_type_id: int,
                          wanted: list[tuple[str, str, str | None]]) -> tuple[str, list[Problem]]:
    fields = portal.item_fields(entity_type_id)
    if fields is None:
        known = portal.smart_processes()
        return "", [Problem(f"{section}.entity_type_id {entity_type_id}: there is no smart process with this "
                            f"entityTypeId (crm.item.fields: NOT_FOUND)" + (f"; the portal has {known}" if known else ""),
                            f"set {section}.entity_type_id in {portal.file} to the smart process's entityTypeId "
                            f"(CRM → Smart processes, or crm.type.list)")]
    problems = field_problems(portal, fields, entity=f"smart process {entity_type_id}",
                              where=f"crm.item.fields entityTypeId={entity_type_id}", wanted=wanted, mapping=mapping,
                              create_fix=f"create the field in the smart process {entity_type_id}", item=True)
    count = f"all {len(wanted)} fields" if len(wanted) > 1 else "the field"
    return f"smart process {entity_type_id} has {count} the mapping names", problems


def _poll_forms(portal: Portal, mapping: FieldMapping) -> tuple[str, list[Problem]]:
    pf = mapping.poll_form
    if pf.is_list:  # checks_lists checks it
        raise Skip(f"poll forms live in universal list {pf.iblock_id}: see 'poll form list'")
    wanted: list[tuple[str, str, str | None]] = [
        ("poll_form.poll_id_field", pf.poll_id_field, "poll:poll_id"),
        ("poll_form.title_field", pf.title_field, "poll:poll_name"),
        ("poll_form.owner_field", pf.owner_field, "owner")]
    wanted += [(f"poll_form.fields.{code}", code, source) for code, source in pf.fields.items()]
    return _smart_process_fields(portal, mapping, "poll_form", pf.entity_type_id, wanted)


def _programmes(portal: Portal, mapping: FieldMapping) -> tuple[str, list[Problem]]:
    pm = mapping.programmes
    if pm.is_list:  # checks_lists checks it
        raise Skip(f"programmes live in universal list {pm.iblock_id}: see 'programme list'")
    return _smart_process_fields(portal, mapping, "programmes", pm.entity_type_id,
                                 [("programmes.title_field", pm.title_field, "question:programmes")])


def _default_user(portal: Portal, mapping: FieldMapping) -> tuple[str, list[Problem]]:
    user_id = mapping.default_responsible_user_id
    user = portal.user(user_id)
    fix = f"set default_responsible_user_id in {portal.file} to an active employee's ID (Company → Employees)"
    if user is None:
        return "", [Problem(f"default_responsible_user_id {user_id}: there is no such user on the portal "
                            f"(user.get)", fix)]
    name = " ".join(str(user.get(k) or "") for k in ("NAME", "LAST_NAME")).strip() or "no name"
    if user.get("ACTIVE") not in (True, "Y", "1", 1, "true"):
        return "", [Problem(f"default_responsible_user_id {user_id} ({name}) is inactive (dismissed)", fix)]
    return f"default_responsible_user_id {user_id} is {name}, active", []


def portal_checks(ck: Checklist, client: Any, mapping: FieldMapping | None, scopes_missing: set[str],
                  mapping_file: str) -> None:
    """The mapping checks against the portal, each skipped if its prerequisite failed."""
    portal = Portal(client, mapping_file) if client is not None else None
    plan: list[tuple[str, Callable, tuple[str, ...], str]] = [
        ("deal fields", _deal_fields, (), "crm"),
        ("deal pipeline", _deal_category, (), "crm"),
        ("deal stage", _deal_stage, ("deal pipeline",), "crm"),
        ("deal source", _deal_source, (), "crm"),
        ("contact fields", _contact_fields, (), "crm"),
        ("poll forms", _poll_forms, (), "crm"),
        ("programmes", _programmes, (), "crm"),
        ("default responsible user", _default_user, (), "user"),
    ]
    for name, check, needs, scope in plan:
        try:
            ck.needs("mapping file", "Bitrix24 webhook", *needs)
            if portal is None or mapping is None:
                raise Skip("Bitrix24 is not usable")
            if scope in scopes_missing:
                raise Skip(f"the webhook lacks the '{scope}' scope")
            ok_detail, problems = check(portal, mapping)
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
