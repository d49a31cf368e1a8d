"""The mapping against the portal: deal, contact and smart-process fields, pipeline, stage, source, user.

Each check returns ``(detail when it passes, problems)``; ``portal_checks`` runs them
in order, skipping those whose prerequisite failed or whose scope the webhook lacks.
"""
from __future__ import annotations

from typing import Any, Callable

from core.errors import FatalError, UpstreamError
from sync.doctor.checklist import CONFIG, SYSTEM, Checklist, Problem, Skip, one_line
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
    deal, t = mapping.deal, portal.t
    fields = portal.fields("crm.deal.fields")
    wanted: list[tuple[str, str, str | None]] = [
        ("deal.contact_field", deal.contact_field, None), ("deal.owner_field", deal.owner_field, None),
        (t("deal.external_key", code="ORIGINATOR_ID"), "ORIGINATOR_ID", None),
        (t("deal.external_key", code="ORIGIN_ID"), "ORIGIN_ID", None)]
    links = (("deal.poll_form_link_field", deal.poll_form_link_field, "poll_form", mapping.poll_form.entity_type_id),
             ("deal.programme_link_field", deal.programme_link_field, "programmes", mapping.programmes.entity_type_id))
    problems: list[Problem] = []
    for path, code, section, etid in links:
        if not code:
            continue
        wanted.append((path, code, None))
        if code.startswith("PARENT_ID_") and code != f"PARENT_ID_{etid}":
            problems.append(Problem(t("deal.parent", path=path, code=code, other=code.removeprefix("PARENT_ID_"),
                                      section=section, etid=etid),
                                    t("deal.fix_parent", path=path, section=section, file=portal.file)))
    wanted += [(f"deal.fields.{code}", code, source) for code, source in deal.fields.items()]
    create = t("deal.create")
    problems = field_problems(portal, fields, entity=t("entity.deals"), where="crm.deal.fields", wanted=wanted,
                              mapping=mapping, create_fix=create, category_id=deal.category_id) + problems
    for code, enum in deal.enumerations.items():
        path = f"deal.enumerations.{code}"
        descriptor = fields.get(code)
        if not isinstance(descriptor, dict):
            problems.append(Problem(t("field.missing", path=path, code=code, entity=t("entity.deals"),
                                      where="crm.deal.fields", hint=similar(code, fields, t)),
                                    t("field.fix_missing", path=path, file=portal.file, create=create)))
            continue
        if descriptor.get("type") != "enumeration":
            problems.append(Problem(t("enum.not_enum", path=path, code=code, type=descriptor.get("type")),
                                    t("enum.fix_not_enum", path=path, file=portal.file)))
            continue
        items = {str(i.get("ID")): str(i.get("VALUE")) for i in descriptor.get("items") or [] if isinstance(i, dict)}
        for answer, item_id in enum.values.items():
            if item_id not in items:
                listed = ", ".join(f"{k} «{v}»" for k, v in items.items()) or t("none")
                problems.append(Problem(t("enum.item", path=path, answer=repr(answer), item=item_id, code=code,
                                          items=listed),
                                        t("enum.fix_item", code=code, path=path, file=portal.file)))
    checked = len(wanted) + len(deal.enumerations)
    return t("deal.ok", n=checked), problems


def _deal_category(portal: Portal, mapping: FieldMapping) -> tuple[str, list[Problem]]:
    category, t = mapping.deal.category_id, portal.t
    known = portal.categories()
    if category in known or (category == 0 and not known):
        return t("pipeline.ok", id=category, name=known.get(category, t("pipeline.default"))), []
    listed = ", ".join(f"{k} «{v}»" for k, v in sorted(known.items())) or t("none")
    return "", [Problem(t("pipeline.missing", id=category, listed=listed), t("pipeline.fix", file=portal.file))]


def _deal_stage(portal: Portal, mapping: FieldMapping) -> tuple[str, list[Problem]]:
    deal, t = mapping.deal, portal.t
    entity = stage_entity(deal.category_id)
    stages = portal.statuses(entity)
    if deal.stage_id in stages:
        return t("stage.ok", id=deal.stage_id, name=stages[deal.stage_id], entity=entity), []
    return "", [Problem(t("stage.missing", id=repr(deal.stage_id), category=deal.category_id, entity=entity,
                          listed=", ".join(stages) or t("none"), hint=similar(deal.stage_id, stages, t)),
                        t("stage.fix", file=portal.file))]


def _deal_source(portal: Portal, mapping: FieldMapping) -> tuple[str, list[Problem]]:
    source, t = mapping.deal.source_id, portal.t
    if not source:
        return t("source.unset"), []
    sources = portal.statuses("SOURCE")
    if source in sources:
        return t("source.ok", id=source, name=sources[source]), []
    return "", [Problem(t("source.missing", id=repr(source), listed=", ".join(sources) or t("none"),
                          hint=similar(source, sources, t)),
                        t("source.fix", file=portal.file))]


def _contact_fields(portal: Portal, mapping: FieldMapping) -> tuple[str, list[Problem]]:
    contact = mapping.contact
    wanted: list[tuple[str, str, str | None]] = [
        ("contact.name_field", contact.name_field, "question:first_name"),
        ("contact.last_name_field", contact.last_name_field, "question:last_name"),
        ("contact.middle_name_field", contact.middle_name_field, "question:middle_name")]
    wanted += [(f"contact.on_create.{code}", code, source) for code, source in contact.on_create.items()]
    t = portal.t
    problems = field_problems(portal, portal.fields("crm.contact.fields"), entity=t("entity.contacts"),
                              where="crm.contact.fields", wanted=wanted, mapping=mapping,
                              create_fix=t("contact.create"))
    return t("contact.ok", n=len(wanted)), problems


def _smart_process_fields(portal: Portal, mapping: FieldMapping, section: str, entity_type_id: int,
                          wanted: list[tuple[str, str, str | None]]) -> tuple[str, list[Problem]]:
    t = portal.t
    fields = portal.item_fields(entity_type_id)
    if fields is None:
        known = portal.smart_processes()
        return "", [Problem(t("sp.missing", section=section, etid=entity_type_id)
                            + (t("sp.known", known=known) if known else ""),
                            t("sp.fix", section=section, file=portal.file))]
    problems = field_problems(portal, fields, entity=t("entity.smart_process", id=entity_type_id),
                              where=f"crm.item.fields entityTypeId={entity_type_id}", wanted=wanted, mapping=mapping,
                              create_fix=t("sp.create", etid=entity_type_id), item=True)
    if len(wanted) > 1:
        return t("sp.ok_many", etid=entity_type_id, n=len(wanted)), problems
    return t("sp.ok_one", etid=entity_type_id), problems


def _poll_forms(portal: Portal, mapping: FieldMapping) -> tuple[str, list[Problem]]:
    pf = mapping.poll_form
    if pf.is_list:  # checks_lists checks it
        raise Skip(portal.t("poll_forms.in_list", id=pf.iblock_id, title=portal.t.title("poll form list")))
    wanted: list[tuple[str, str, str | None]] = [
        ("poll_form.poll_id_field", pf.poll_id_field, "poll:poll_id"),
        ("poll_form.title_field", pf.title_field, "poll:poll_name"),
        ("poll_form.owner_field", pf.owner_field, "owner")]
    wanted += [(f"poll_form.fields.{code}", code, source) for code, source in pf.fields.items()]
    return _smart_process_fields(portal, mapping, "poll_form", pf.entity_type_id, wanted)


def _programmes(portal: Portal, mapping: FieldMapping) -> tuple[str, list[Problem]]:
    pm = mapping.programmes
    if pm.is_list:  # checks_lists checks it
        raise Skip(portal.t("programmes.in_list", id=pm.iblock_id, title=portal.t.title("programme list")))
    return _smart_process_fields(portal, mapping, "programmes", pm.entity_type_id,
                                 [("programmes.title_field", pm.title_field, "question:programmes")])


def _default_user(portal: Portal, mapping: FieldMapping) -> tuple[str, list[Problem]]:
    user_id, t = mapping.default_responsible_user_id, portal.t
    user = portal.user(user_id)
    fix = t("user.fix", file=portal.file)
    if user is None:
        return "", [Problem(t("user.missing", id=user_id), fix)]
    name = " ".join(str(user.get(k) or "") for k in ("NAME", "LAST_NAME")).strip() or t("user.no_name")
    if user.get("ACTIVE") not in (True, "Y", "1", 1, "true"):
        return "", [Problem(t("user.inactive", id=user_id, name=name), fix)]
    return t("user.ok", id=user_id, name=name), []


def portal_checks(ck: Checklist, client: Any, mapping: FieldMapping | None, scopes_missing: set[str],
                  mapping_file: str) -> None:
    """The mapping checks against the portal, each skipped if its prerequisite failed."""
    t = ck.t
    portal = Portal(client, mapping_file, t) if client is not None else None
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
        def attempt(check=check, needs=needs, scope=scope) -> tuple[str, list[Problem]]:
            ck.needs("mapping file", "Bitrix24 webhook", *needs)
            if portal is None or mapping is None:
                raise Skip(t("skip.unusable"))
            if scope in scopes_missing:
                raise Skip(t("skip.scope", scope=scope))
            return check(portal, mapping)
        run_check(ck, name, attempt)


def run_check(ck: Checklist, name: str, attempt: Callable[[], tuple[str, list[Problem]]]) -> None:
    """One portal check as a line: ``attempt()`` gives ``(ok detail, problems)`` or raises ``Skip``;
    a portal that refuses or fails becomes a failing line with what to do."""
    t = ck.t
    try:
        ok_detail, problems = attempt()
    except Skip as why:
        ck.skip(name, str(why), CONFIG)
        return
    except FatalError as exc:
        ck.fail(name, t("portal.refused", error=one_line(exc)), t("webhook.fix"), SYSTEM)
        return
    except UpstreamError as exc:
        ck.fail(name, t("portal.failed", error=one_line(exc)), t("portal.fix_again"), SYSTEM)
        return
    if problems:
        detail, fix = join_problems(problems)
        ck.fail(name, detail, fix, CONFIG)
    else:
        ck.ok(name, ok_detail)
