"""``cli.py doctor``: everything a run needs, checked one line at a time, each failure with its fix.

``run_checks(settings)`` returns a ``Check`` per line, in this order; a check whose
prerequisite failed is *skipped* (``ok=False, skipped=True``) naming that reason, so an
unreachable portal gives one failure, not a crash or a dozen::

    configuration              every setting present and well-formed (load_settings)
    mapping file               FIELD_MAPPING exists and validates
    survey API                 one GET /polls?limit=1: the API answers and takes the token
    Bitrix24 webhook           server.time answers, the webhook is accepted, its user is active (profile)
    Bitrix24 scopes            the webhook has the crm and user scopes (scope)
    deal fields                crm.deal.fields has every field the mapping names, of a compatible type;
                               enumerations are enumerations holding every item ID the mapping uses
    deal pipeline              deal.category_id is in crm.category.list (entityTypeId 2)
    deal stage                 deal.stage_id is in crm.status.list DEAL_STAGE_<category> (DEAL_STAGE for 0)
    deal source                deal.source_id is in crm.status.list SOURCE
    contact fields             crm.contact.fields has the name fields and every on_create field
    poll forms                 crm.item.fields of poll_form.entity_type_id has the poll id, title, owner
                               and extra fields (a missing smart process is NOT_FOUND)
    programmes                 crm.item.fields of programmes.entity_type_id has the title field
    default responsible user   default_responsible_user_id exists and is active (user.get)
    store                      DATABASE_URL answers and is migrated to the code's revision

Nothing is written anywhere (a SQLite store that does not exist yet is not created).

Exit code of ``cli.py doctor`` (``exit_code_for``): 0 when every check passes; else
``USAGE_ERROR`` (2) if a *config* check failed — a setting, the mapping file, or the
mapping against the portal: the operator must change something; else ``ABORTED`` (3)
— only *system* checks failed: a system is unreachable, refused the credentials, lacks
a scope, or the store is unreachable or not migrated (the same code a run exits with).
"""
from __future__ import annotations

import difflib
import json
import re
from dataclasses import asdict, dataclass
from typing import Any, Callable, Iterable

from core import exit_codes
from core.errors import CommandError, ConfigError, FatalError, StoreError, UpstreamError
from sync.mapping import FieldMapping
from core.redact import redact

CONFIG = "config"   # fix a setting or the mapping → USAGE_ERROR
SYSTEM = "system"   # a system is unreachable or refused us → ABORTED

STRINGISH = frozenset({"string", "char", "url"})
NUMBERS = frozenset({"integer", "double"})
REQUIRED_SCOPES = ("crm", "user")
DEAL_ENTITY_TYPE_ID = 2
DOCTOR_MAX_ATTEMPTS = 2
DOCTOR_MAX_WAIT_S = 10.0
DOCTOR_TIMEOUT_S = 15.0

_WEBHOOK_FIX = ("create an inbound webhook (Developer resources → Other → Inbound webhook) with the crm and user "
                "scopes, or check the existing one, and put its URL in BITRIX24_WEBHOOK_URL")
_SCOPE_PLACE = "Developer resources → Integrations → your webhook → Permissions"


@dataclass(frozen=True)
class Check:
    """One line of the checklist. ``kind`` says which exit code a failure means (CONFIG or SYSTEM)."""

    name: str
    ok: bool
    detail: str
    fix: str = ""
    kind: str = CONFIG
    skipped: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class _Problem:
    detail: str
    fix: str


class _Skip(Exception):
    """A prerequisite failed: the check is skipped with this reason."""


# --------------------------------------------------------------------------- output

def exit_code_for(checks: Iterable[Check]) -> int:
    """0, ``USAGE_ERROR`` or ``ABORTED`` — see the module docstring."""
    failed = [c for c in checks if not c.ok and not c.skipped]
    if any(c.kind == CONFIG for c in failed):
        return exit_codes.USAGE_ERROR
    if failed:
        return exit_codes.ABORTED
    return exit_codes.OK


def format_check(check: Check, *, unicode: bool = True) -> str:
    """``✔ name — detail`` / ``✘ name — detail → fix`` (``OK``/``FAIL``/``SKIP`` without Unicode)."""
    dash, arrow = ("—", "→") if unicode else ("-", "->")
    if check.ok:
        mark = "✔" if unicode else "OK  "
    elif check.skipped:
        mark = "○" if unicode else "SKIP"
    else:
        mark = "✘" if unicode else "FAIL"
    line = f"{mark} {check.name} {dash} {check.detail}"
    if not check.ok and not check.skipped and check.fix:
        line += f" {arrow} {check.fix}"
    return line


def as_json(checks: list[Check]) -> str:
    code = exit_code_for(checks)
    return json.dumps({"ok": code == exit_codes.OK, "exit_code": code, "checks": [c.as_dict() for c in checks]},
                      ensure_ascii=False, indent=2)


# --------------------------------------------------------------------------- helpers

def _one_line(exc: BaseException) -> str:
    return redact(" ".join(str(exc).split()) or type(exc).__name__)


def _similar(name: str, candidates: Iterable[str]) -> str:
    names = list(candidates)
    close = difflib.get_close_matches(name, names, n=1, cutoff=0.75)
    if not close:
        folded = {c.lower(): c for c in names}
        close = [folded[name.lower()]] if name.lower() in folded else []
    return f" (did you mean {close[0]}?)" if close else ""


def _join(problems: list[_Problem]) -> tuple[str, str]:
    fixes: list[str] = []
    for p in problems:
        if p.fix and p.fix not in fixes:
            fixes.append(p.fix)
    return "; ".join(p.detail for p in problems), "; ".join(fixes)


def _expected_types(source: str, mapping: FieldMapping) -> frozenset[str] | None:
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


def _types_text(types: Iterable[str]) -> str:
    return "/".join(sorted(types))


class _Portal:
    """The read-only Bitrix24 calls the checks make, each made once."""

    def __init__(self, client: Any, mapping_file: str) -> None:
        self.client = client
        self.file = mapping_file  # named in every fix
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


def _stage_entity(category_id: int) -> str:
    return "DEAL_STAGE" if category_id == 0 else f"DEAL_STAGE_{category_id}"


def _status_entity(descriptor: dict, category_id: int) -> str | None:
    entity = descriptor.get("statusType")
    if not isinstance(entity, str) or not entity:
        return None
    return _stage_entity(category_id) if entity == "DEAL_STAGE" else entity


def _field_problems(portal: _Portal, fields: dict[str, dict], *, entity: str, where: str,
                    wanted: list[tuple[str, str, str | None]], mapping: FieldMapping,
                    create_fix: str, category_id: int = 0, item: bool = False) -> list[_Problem]:
    """Existence and type of ``(mapping path, field code, value source or None)`` in ``fields``."""
    problems: list[_Problem] = []
    upper = {str(d.get("upperName")): name for name, d in fields.items() if isinstance(d, dict) and d.get("upperName")}
    for path, code, source in wanted:
        descriptor = fields.get(code)
        if not isinstance(descriptor, dict):
            if item and code in upper:
                problems.append(_Problem(f"{path}: {code} is the field's original name; crm.item methods call it "
                                         f"{upper[code]}", f"write {upper[code]} in {portal.file} ({path})"))
                continue
            problems.append(_Problem(f"{path}: {code} is not a field of {entity} ({where}){_similar(code, fields)}",
                                     f"correct {path} in {portal.file}, or {create_fix}"))
            continue
        if source is None:
            continue
        field_type = str(descriptor.get("type") or "")
        expected = _expected_types(source, mapping)
        if expected is not None and field_type not in expected:
            problems.append(_Problem(f"{path}: {code} is of type {field_type or '?'}, but {source} needs "
                                     f"{_types_text(expected)}",
                                     f"map {source} to a {_types_text(expected)} field in {portal.file}, or change "
                                     f"the field's type on the portal"))
        elif source.startswith("const:") and field_type == "crm_status":
            status_entity = _status_entity(descriptor, category_id)
            value = source.partition(":")[2]
            if status_entity:
                known = portal.statuses(status_entity)
                if value not in known:
                    problems.append(_Problem(f"{path}: {value!r} is not in {status_entity} (crm.status.list: "
                                             f"{', '.join(known) or 'none'}){_similar(value, known)}",
                                             f"use one of the {status_entity} codes in {path} in {portal.file}"))
    return problems


# --------------------------------------------------------------------------- the checks on the portal

def _deal_fields(portal: _Portal, mapping: FieldMapping) -> tuple[str, list[_Problem]]:
    deal = mapping.deal
    fields = portal.fields("crm.deal.fields")
    wanted: list[tuple[str, str, str | None]] = [
        ("deal.contact_field", deal.contact_field, None), ("deal.owner_field", deal.owner_field, None),
        ("ORIGINATOR_ID (the external key)", "ORIGINATOR_ID", None), ("ORIGIN_ID (the external key)", "ORIGIN_ID", None)]
    links = (("deal.poll_form_link_field", deal.poll_form_link_field, "poll_form", mapping.poll_form.entity_type_id),
             ("deal.programme_link_field", deal.programme_link_field, "programmes", mapping.programmes.entity_type_id))
    problems: list[_Problem] = []
    for path, code, section, etid in links:
        if not code:
            continue
        wanted.append((path, code, None))
        if code.startswith("PARENT_ID_") and code != f"PARENT_ID_{etid}":
            problems.append(_Problem(f"{path}: {code} links to entity type {code.removeprefix('PARENT_ID_')}, but "
                                     f"{section}.entity_type_id is {etid}",
                                     f"make {path} PARENT_ID_<{section}.entity_type_id> in {portal.file}"))
    wanted += [(f"deal.fields.{code}", code, source) for code, source in deal.fields.items()]
    create = "create the user field in CRM → Deals → Settings → Custom fields"
    problems = _field_problems(portal, fields, entity="deals", where="crm.deal.fields", wanted=wanted,
                               mapping=mapping, create_fix=create, category_id=deal.category_id) + problems
    for code, enum in deal.enumerations.items():
        path = f"deal.enumerations.{code}"
        descriptor = fields.get(code)
        if not isinstance(descriptor, dict):
            problems.append(_Problem(f"{path}: {code} is not a field of deals (crm.deal.fields)"
                                     f"{_similar(code, fields)}", f"correct {path} in {portal.file}, or {create}"))
            continue
        if descriptor.get("type") != "enumeration":
            problems.append(_Problem(f"{path}: {code} is of type {descriptor.get('type')}, not enumeration",
                                     f"map {path} to a list (enumeration) field in {portal.file}"))
            continue
        items = {str(i.get("ID")): str(i.get("VALUE")) for i in descriptor.get("items") or [] if isinstance(i, dict)}
        for answer, item_id in enum.values.items():
            if item_id not in items:
                listed = ", ".join(f"{k} «{v}»" for k, v in items.items()) or "none"
                problems.append(_Problem(f"{path}.values[{answer!r}]: item ID {item_id} is not an item of {code} "
                                         f"(items: {listed})",
                                         f"use the item IDs of {code} (crm.deal.fields) in {path}.values in "
                                         f"{portal.file}"))
    checked = len(wanted) + len(deal.enumerations)
    return f"all {checked} deal fields the mapping names exist with compatible types", problems


def _deal_category(portal: _Portal, mapping: FieldMapping) -> tuple[str, list[_Problem]]:
    category = mapping.deal.category_id
    known = portal.categories()
    if category in known or (category == 0 and not known):
        return f"deal.category_id {category} is the pipeline «{known.get(category, 'default')}»", []
    listed = ", ".join(f"{k} «{v}»" for k, v in sorted(known.items())) or "none"
    return "", [_Problem(f"deal.category_id {category} is not a deal pipeline on the portal (crm.category.list: "
                         f"{listed})", f"set deal.category_id in {portal.file} to one of these IDs")]


def _deal_stage(portal: _Portal, mapping: FieldMapping) -> tuple[str, list[_Problem]]:
    deal = mapping.deal
    entity = _stage_entity(deal.category_id)
    stages = portal.statuses(entity)
    if deal.stage_id in stages:
        return f"deal.stage_id {deal.stage_id} is «{stages[deal.stage_id]}» ({entity})", []
    return "", [_Problem(f"deal.stage_id {deal.stage_id!r} is not a stage of pipeline {deal.category_id} "
                         f"(crm.status.list {entity}: {', '.join(stages) or 'none'}){_similar(deal.stage_id, stages)}",
                         f"set deal.stage_id in {portal.file} to one of these")]


def _deal_source(portal: _Portal, mapping: FieldMapping) -> tuple[str, list[_Problem]]:
    source = mapping.deal.source_id
    if not source:
        return "deal.source_id is not set (the portal's default source is used)", []
    sources = portal.statuses("SOURCE")
    if source in sources:
        return f"deal.source_id {source} is «{sources[source]}»", []
    return "", [_Problem(f"deal.source_id {source!r} is not a source on the portal (crm.status.list SOURCE: "
                         f"{', '.join(sources) or 'none'}){_similar(source, sources)}",
                         f"set deal.source_id in {portal.file} to one of these, or add the source in CRM settings")]


def _contact_fields(portal: _Portal, mapping: FieldMapping) -> tuple[str, list[_Problem]]:
    contact = mapping.contact
    wanted: list[tuple[str, str, str | None]] = [
        ("contact.name_field", contact.name_field, "question:first_name"),
        ("contact.last_name_field", contact.last_name_field, "question:last_name"),
        ("contact.middle_name_field", contact.middle_name_field, "question:middle_name")]
    wanted += [(f"contact.on_create.{code}", code, source) for code, source in contact.on_create.items()]
    problems = _field_problems(portal, portal.fields("crm.contact.fields"), entity="contacts",
                               where="crm.contact.fields", wanted=wanted, mapping=mapping,
                               create_fix="create the user field in CRM → Contacts → Settings → Custom fields")
    return f"all {len(wanted)} contact fields the mapping names exist with compatible types", problems


def _smart_process_fields(portal: _Portal, mapping: FieldMapping, section: str, entity_type_id: int,
                          wanted: list[tuple[str, str, str | None]]) -> tuple[str, list[_Problem]]:
    fields = portal.item_fields(entity_type_id)
    if fields is None:
        known = portal.smart_processes()
        return "", [_Problem(f"{section}.entity_type_id {entity_type_id}: there is no smart process with this "
                             f"entityTypeId (crm.item.fields: NOT_FOUND)" + (f"; the portal has {known}" if known else ""),
                             f"set {section}.entity_type_id in {portal.file} to the smart process's entityTypeId "
                             f"(CRM → Smart processes, or crm.type.list)")]
    problems = _field_problems(portal, fields, entity=f"smart process {entity_type_id}",
                               where=f"crm.item.fields entityTypeId={entity_type_id}", wanted=wanted, mapping=mapping,
                               create_fix=f"create the field in the smart process {entity_type_id}", item=True)
    count = f"all {len(wanted)} fields" if len(wanted) > 1 else "the field"
    return f"smart process {entity_type_id} has {count} the mapping names", problems


def _poll_forms(portal: _Portal, mapping: FieldMapping) -> tuple[str, list[_Problem]]:
    pf = mapping.poll_form
    wanted: list[tuple[str, str, str | None]] = [
        ("poll_form.poll_id_field", pf.poll_id_field, "poll:poll_id"),
        ("poll_form.title_field", pf.title_field, "poll:poll_name"),
        ("poll_form.owner_field", pf.owner_field, "owner")]
    wanted += [(f"poll_form.fields.{code}", code, source) for code, source in pf.fields.items()]
    return _smart_process_fields(portal, mapping, "poll_form", pf.entity_type_id, wanted)


def _programmes(portal: _Portal, mapping: FieldMapping) -> tuple[str, list[_Problem]]:
    pm = mapping.programmes
    return _smart_process_fields(portal, mapping, "programmes", pm.entity_type_id,
                                 [("programmes.title_field", pm.title_field, "question:programmes")])


def _default_user(portal: _Portal, mapping: FieldMapping) -> tuple[str, list[_Problem]]:
    user_id = mapping.default_responsible_user_id
    user = portal.user(user_id)
    fix = f"set default_responsible_user_id in {portal.file} to an active employee's ID (Company → Employees)"
    if user is None:
        return "", [_Problem(f"default_responsible_user_id {user_id}: there is no such user on the portal "
                             f"(user.get)", fix)]
    name = " ".join(str(user.get(k) or "") for k in ("NAME", "LAST_NAME")).strip() or "no name"
    if user.get("ACTIVE") not in (True, "Y", "1", 1, "true"):
        return "", [_Problem(f"default_responsible_user_id {user_id} ({name}) is inactive (dismissed)", fix)]
    return f"default_responsible_user_id {user_id} is {name}, active", []


# --------------------------------------------------------------------------- the checklist

class _Checklist:
    def __init__(self) -> None:
        self.checks: list[Check] = []
        self.failed: dict[str, str] = {}

    def add(self, check: Check) -> Check:
        self.checks.append(check)
        if not check.ok:
            self.failed[check.name] = "skipped" if check.skipped else check.detail
        return check

    def ok(self, name: str, detail: str) -> None:
        self.add(Check(name, True, detail))

    def fail(self, name: str, detail: str, fix: str, kind: str) -> None:
        self.add(Check(name, False, redact(detail), redact(fix), kind))

    def skip(self, name: str, reason: str, kind: str = CONFIG) -> None:
        self.add(Check(name, False, f"skipped: {reason}", "", kind, skipped=True))

    def needs(self, *names: str) -> None:
        """Raise ``_Skip`` if any of ``names`` did not pass."""
        for name in names:
            if name in self.failed:
                raise _Skip(f"{name} failed" if self.failed[name] != "skipped" else f"{name} was skipped")


def _settings_check(ck: _Checklist, settings: Any) -> Any:
    name = "configuration"
    if settings is None:
        from sync.settings import load_settings
        try:
            settings = load_settings()
        except ConfigError as exc:
            text = str(exc)
            lines = [ln.strip() for ln in text.splitlines() if ln.startswith("  ")]
            names = [m.group(0) for ln in lines if (m := re.match(r"[A-Z][A-Z0-9_]*", ln))]
            fix = ("set " + ", ".join(names) if names else "fix the settings") + \
                " in the environment or in .env in the working directory (see README, 'Configuration')"
            ck.fail(name, "; ".join(lines) or text, fix, CONFIG)
            return None
    ck.ok(name, f"every setting is present; store {_store_display(settings.database_url)}")
    return settings


def _store_display(url: str) -> str:
    try:
        from storage.db import redact_url
        return redact_url(url)
    except Exception:  # the store module failing to import is the store check's business
        return "?"


def _mapping_check(ck: _Checklist, settings: Any) -> FieldMapping | None:
    from sync.mapping import load_mapping
    name = "mapping file"
    try:
        mapping = load_mapping(settings.field_mapping)
    except ConfigError as exc:
        head, *rest = str(exc).splitlines() or [""]
        ck.fail(name, " ".join([head, "; ".join(line.strip() for line in rest)]).strip(),
                f"correct {settings.field_mapping} (FIELD_MAPPING); the repository's field_mapping.json is a "
                f"working example", CONFIG)
        return None
    ck.ok(name, f"{settings.field_mapping} is valid (source {mapping.source_name!r})")
    return mapping


def _survey_check(ck: _Checklist, settings: Any) -> None:
    from sync.clients.survey import SurveyClient
    name = "survey API"
    try:
        client = SurveyClient(settings.survey_api_url, settings.survey_api_token,
                              timeout=min(settings.http_timeout_s, DOCTOR_TIMEOUT_S), polls_page_size=1,
                              max_attempts=DOCTOR_MAX_ATTEMPTS, max_wait_s=DOCTOR_MAX_WAIT_S, backoff_base_s=0.5)
    except ConfigError as exc:
        ck.fail(name, _one_line(exc), "correct SURVEY_API_URL / SURVEY_API_TOKEN", CONFIG)
        return
    where = client.base_url
    try:
        with client:
            page = next(iter(client.iter_polls()), None)
    except FatalError as exc:
        fix = ("check SURVEY_API_TOKEN (the platform's API token, without 'Bearer')" if exc.status in (401, 403)
               else "check SURVEY_API_URL: it should be the API's base URL, e.g. https://surveys.example.edu/api/v1")
        ck.fail(name, f"at {where}: {_one_line(exc)}", fix, SYSTEM)
        return
    except UpstreamError as exc:
        ck.fail(name, f"at {where}: {_one_line(exc)}",
                "check SURVEY_API_URL and that this machine reaches it (proxy, firewall, DNS); run doctor again",
                SYSTEM)
        return
    polls = "polls are visible" if page is not None and page.items else "the token works, no polls yet"
    ck.ok(name, f"GET /polls?limit=1 answered at {redact(where)}: {polls}")


def _bitrix_checks(ck: _Checklist, settings: Any) -> tuple[Any, set[str]]:
    """The webhook and scope checks: ``(client or None when the portal is not usable, scopes missing)``."""
    from sync.clients.bitrix24 import Bitrix24Client
    name = "Bitrix24 webhook"
    try:
        client = Bitrix24Client(settings.bitrix24_webhook_url, timeout=min(settings.http_timeout_s, DOCTOR_TIMEOUT_S),
                                rate_per_s=settings.rate_limit_per_s, burst=settings.rate_limit_burst,
                                max_attempts=DOCTOR_MAX_ATTEMPTS, max_wait_s=DOCTOR_MAX_WAIT_S, backoff_base_s=0.5)
    except ConfigError as exc:
        ck.fail(name, _one_line(exc), "correct BITRIX24_WEBHOOK_URL", CONFIG)
        ck.skip("Bitrix24 scopes", "Bitrix24 webhook failed", SYSTEM)
        return None, set()
    try:
        portal_time = client.call("server.time").result
    except FatalError as exc:
        ck.fail(name, _one_line(exc), _WEBHOOK_FIX, SYSTEM)
    except UpstreamError as exc:
        ck.fail(name, _one_line(exc),
                "check BITRIX24_WEBHOOK_URL's portal address and that this machine reaches it; run doctor again",
                SYSTEM)
    else:
        owner = ""
        try:
            profile = client.call("profile").result
        except UpstreamError:
            profile = None  # profile is a nicety; server.time already proved the webhook
        if profile is not None and not profile:
            ck.fail(name, f"the webhook at {client.url} works, but its user is inactive (profile is empty)",
                    "create the webhook as an active employee and put its URL in BITRIX24_WEBHOOK_URL", SYSTEM)
        else:
            if isinstance(profile, dict):
                owner = " ".join(str(profile.get(k) or "") for k in ("NAME", "LAST_NAME")).strip()
                owner = f", as user {profile.get('ID')} {owner}".rstrip()
            ck.ok(name, f"{client.url} answered server.time ({portal_time}){owner}")
    if "Bitrix24 webhook" in ck.failed:
        ck.skip("Bitrix24 scopes", "Bitrix24 webhook failed", SYSTEM)
        client.close()
        return None, set()
    try:
        scopes = client.call("scope").result
    except UpstreamError as exc:
        ck.fail("Bitrix24 scopes", f"the scope method failed: {_one_line(exc)}", "run doctor again", SYSTEM)
        return client, set()
    have = {str(s) for s in scopes} if isinstance(scopes, list) else set()
    missing = [s for s in REQUIRED_SCOPES if s not in have]
    if missing:
        names = ", ".join(f"'{s}'" for s in missing)
        ck.fail("Bitrix24 scopes", f"the webhook lacks the {names} scope{'s' if len(missing) > 1 else ''} "
                f"(it has: {', '.join(sorted(have)) or 'none'})",
                f"tick {names} on the inbound webhook ({_SCOPE_PLACE}) and save; the URL stays the same", SYSTEM)
    else:
        ck.ok("Bitrix24 scopes", f"the webhook has {', '.join(REQUIRED_SCOPES)} (all: {', '.join(sorted(have))})")
    return client, set(missing)


def _portal_checks(ck: _Checklist, client: Any, mapping: FieldMapping | None, scopes_missing: set[str],
                   mapping_file: str) -> None:
    portal = _Portal(client, mapping_file) if client is not None else None
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
                raise _Skip("Bitrix24 is not usable")
            if scope in scopes_missing:
                raise _Skip(f"the webhook lacks the '{scope}' scope")
            ok_detail, problems = check(portal, mapping)
        except _Skip as why:
            ck.skip(name, str(why), CONFIG)
            continue
        except FatalError as exc:
            ck.fail(name, f"Bitrix24 refused a look-up: {_one_line(exc)}", _WEBHOOK_FIX, SYSTEM)
            continue
        except UpstreamError as exc:
            ck.fail(name, f"Bitrix24 look-up failed: {_one_line(exc)}", "run doctor again once Bitrix24 answers",
                    SYSTEM)
            continue
        if problems:
            detail, fix = _join(problems)
            ck.fail(name, detail, fix, CONFIG)
        else:
            ck.ok(name, ok_detail)


def _store_check(ck: _Checklist, settings: Any) -> None:
    name = "store"
    try:
        from storage.db import make_engine, normalise_url, redact_url, schema_status, sqlite_path
        url = normalise_url(settings.database_url)
        shown = redact_url(url)
        if url.get_backend_name() == "sqlite":
            path = sqlite_path(url)
            if path is not None and not path.exists():
                ck.fail(name, f"no store yet at {path}",
                        "the first run creates and migrates it (python cli.py sync), or `python cli.py status` "
                        "does now; if one should exist, check DATABASE_URL and the working directory", SYSTEM)
                return
        engine = make_engine(settings.database_url)
        try:
            current, head = schema_status(engine)
        finally:
            engine.dispose()
    except StoreError as exc:
        ck.fail(name, _one_line(exc), "check DATABASE_URL and that the database server is up", SYSTEM)
        return
    if current is None:
        ck.fail(name, f"{shown} answers but is not migrated (no schema yet; the code is at {head})",
                "run `python cli.py status` (it migrates), or any sync: runs migrate at start", SYSTEM)
    elif current != head:
        ck.fail(name, f"{shown} is at schema revision {current}, the code expects {head}",
                "run `python cli.py status` to migrate it; if the store is newer than the code, deploy the newer "
                "code", SYSTEM)
    else:
        ck.ok(name, f"{shown} answers, schema at revision {current}")


def run_checks(settings: Any = None) -> list[Check]:
    """Every check, in order (see the module docstring). ``settings=None`` loads them (a failure is a check).

    Never raises for what it checks: every error becomes a failing or skipped ``Check``.
    """
    ck = _Checklist()
    settings = _settings_check(ck, settings)
    if settings is None:
        for name in ("mapping file", "survey API", "Bitrix24 webhook", "Bitrix24 scopes", "deal fields",
                     "deal pipeline", "deal stage", "deal source", "contact fields", "poll forms", "programmes",
                     "default responsible user", "store"):
            ck.skip(name, "the configuration is incomplete")
        return ck.checks
    mapping = _mapping_check(ck, settings)
    _survey_check(ck, settings)
    client, missing = _bitrix_checks(ck, settings)
    try:
        _portal_checks(ck, client, mapping, missing, str(settings.field_mapping))
    finally:
        if client is not None:
            client.close()
    _store_check(ck, settings)
    return ck.checks
