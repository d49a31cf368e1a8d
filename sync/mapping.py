"""The field mapping: the one place that knows the portal (``field_mapping.json``).

A value source is a short string, validated when the file is loaded:

    const:TEXT         the text itself
    owner              the poll owner's Bitrix24 user id (or the default responsible user)
    poll:ATTR          poll_id, poll_name, poll_language, status, employee_email
    answer:ATTR        answer_id, poll_id, created_at, updated_at
    question:CODE      the respondent's answer to question CODE
    utm:KEY            one UTM tag (utm_source ...)
    meta:KEY           one meta value (referer ...)
    cookie:NAME        one cookie
    cookies            all cookies as "name=value; name=value"
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from core.errors import ConfigError

POLL_ATTRS = {"poll_id", "poll_name", "poll_language", "status", "employee_email"}
ANSWER_ATTRS = {"answer_id", "poll_id", "created_at", "updated_at"}
_FIELD_CODE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


def check_source(source: str) -> str:
    """Raise ValueError unless ``source`` is a value source this module understands."""
    if source in ("owner", "cookies"):
        return source
    kind, sep, arg = source.partition(":")
    if not sep or not arg:
        raise ValueError(f"{source!r} is not a value source (expected e.g. 'utm:utm_source', 'question:consent', "
                         f"'const:WEBFORM', 'owner', 'cookies')")
    if kind == "poll" and arg not in POLL_ATTRS:
        raise ValueError(f"{source!r}: poll has no attribute {arg!r} (one of {sorted(POLL_ATTRS)})")
    if kind == "answer" and arg not in ANSWER_ATTRS:
        raise ValueError(f"{source!r}: answer has no attribute {arg!r} (one of {sorted(ANSWER_ATTRS)})")
    if kind not in {"const", "poll", "answer", "question", "utm", "meta", "cookie"}:
        raise ValueError(f"{source!r}: unknown source kind {kind!r}")
    return source


def _check_field_map(value: dict[str, str]) -> dict[str, str]:
    for field, source in value.items():
        if not _FIELD_CODE.match(field):
            raise ValueError(f"{field!r} is not a Bitrix24 field code")
        try:
            check_source(source)
        except ValueError as exc:
            raise ValueError(f"field {field}: {exc}") from None
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Questions(_Strict):
    email: str = "email"
    phone: str | None = "phone"
    first_name: str | None = "first_name"
    last_name: str | None = "last_name"
    middle_name: str | None = "middle_name"
    programmes: str | None = "programs"
    level: str | None = "level"
    consent: str | None = "consent"


Storage = Literal["smart_process", "list"]


class _Container(_Strict):
    """Where records live: a smart process (``crm.item.*``) or a universal list (``lists.element.*``)."""

    storage: Storage = "smart_process"
    entity_type_id: int | None = Field(default=None, gt=0)
    iblock_type_id: str = "lists"
    iblock_id: int | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _where(self) -> "_Container":
        if self.storage == "smart_process" and self.entity_type_id is None:
            raise ValueError("storage 'smart_process' needs entity_type_id (the smart process's id)")
        if self.storage == "list" and self.iblock_id is None:
            raise ValueError("storage 'list' needs iblock_id (the universal list's id)")
        return self

    @property
    def is_list(self) -> bool:
        return self.storage == "list"

    def list_params(self) -> dict[str, Any]:
        return {"IBLOCK_TYPE_ID": self.iblock_type_id, "IBLOCK_ID": self.iblock_id}


class PollFormMapping(_Container):
    poll_id_field: str
    title_field: str = "title"
    owner_field: str = "assignedById"
    url_field: str | None = None          # list property holding the poll's page
    url_template: str | None = None       # e.g. "https://portal.example.edu/polls/{poll_id}.html"
    fields: dict[str, str] = Field(default_factory=dict)

    _fields_ok = field_validator("fields")(_check_field_map)

    @field_validator("url_template")
    @classmethod
    def _url_names_known(cls, value: str | None) -> str | None:
        unknown = set(re.findall(r"{(\w*)}", value or "")) - {"poll_id"}
        if unknown:
            raise ValueError(f"unknown placeholder(s) {sorted(unknown)} in {value!r}; known: ['poll_id']")
        return value


class ProgrammesMapping(_Container):
    title_field: str = "title"
    status_field: str | None = None                           # list property with the programme's status
    active_values: list[str] = Field(default_factory=list)    # its values meaning "active"
    aliases: dict[str, str | int] = Field(default_factory=dict)


class ContactMapping(_Strict):
    name_field: str = "NAME"
    last_name_field: str = "LAST_NAME"
    middle_name_field: str = "SECOND_NAME"
    email_value_type: str = "WORK"
    phone_value_type: str = "MOBILE"
    on_create: dict[str, str] = Field(default_factory=dict)
    # A name part the portal requires but the respondent left empty: sent as this text.
    placeholders: dict[str, str] = Field(default_factory=dict)

    _fields_ok = field_validator("on_create")(_check_field_map)


class Enumeration(_Strict):
    question: str
    values: dict[str, str]

    @field_validator("values", mode="before")
    @classmethod
    def _ids_as_strings(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: str(v) for k, v in value.items()}
        return value


class SummaryMapping(_Strict):
    """The whole answer, readable on each of its deals."""

    to: Literal["timeline", "comments", "off"] = "timeline"
    language: Literal["ru", "en"] = "ru"
    titles: dict[str, str] = Field(default_factory=dict)      # question code → its title in the summary


class DealMapping(_Strict):
    # Which deal an answer's programme lands on: "open" — the contact's open deal for that
    # programme, else a new one; "any" — any deal of the contact for it; "never" — one deal
    # per answer and programme, keyed by ORIGINATOR_ID/ORIGIN_ID.
    reuse: Literal["open", "any", "never"] = "never"
    title_template: str
    title_without_programme: str
    category_id: int = Field(ge=0)
    stage_id: str
    source_id: str | None = None
    contact_field: str = "CONTACT_ID"
    owner_field: str = "ASSIGNED_BY_ID"
    poll_form_link_field: str | None = None
    programme_link_field: str | None = None
    fields: dict[str, str] = Field(default_factory=dict)
    enumerations: dict[str, Enumeration] = Field(default_factory=dict)
    summary: SummaryMapping = Field(default_factory=lambda: SummaryMapping(to="off"))

    _fields_ok = field_validator("fields")(_check_field_map)

    @property
    def attribution_fields(self) -> list[str]:
        """The UTM fields: one attribution, written together (a reused deal keeps the one it has)."""
        return [code for code, source in self.fields.items() if source.startswith("utm:")]

    @field_validator("title_template", "title_without_programme")
    @classmethod
    def _template_names_known(cls, value: str) -> str:
        known = {"programme", "first_name", "last_name", "middle_name", "poll_name", "answer_id", "email"}
        names = set(re.findall(r"{(\w*)}", value))
        unknown = names - known
        if unknown:
            raise ValueError(f"unknown placeholder(s) {sorted(unknown)} in {value!r}; known: {sorted(known)}")
        return value


class FieldMapping(_Strict):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    comment: str | None = Field(default=None, alias="$comment")
    source_name: str = Field(min_length=1, max_length=255)
    default_responsible_user_id: int = Field(gt=0)
    phone_region: str = Field(default="RU", min_length=2, max_length=2)
    time_zone: str = "Europe/Moscow"     # the portal's: times shown to people are in it
    questions: Questions = Field(default_factory=Questions)
    poll_form: PollFormMapping
    programmes: ProgrammesMapping
    contact: ContactMapping = Field(default_factory=ContactMapping)
    deal: DealMapping

    @field_validator("time_zone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not an IANA time zone (e.g. 'Europe/Moscow')") from None
        return value


def load_mapping(path: str | Path) -> FieldMapping:
    """Read and validate the mapping file; any problem is a ConfigError naming the bad key."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"FIELD_MAPPING: {path} does not exist: set FIELD_MAPPING to your mapping file "
                          f"(the repository ships field_mapping.json for the reference portal)") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"FIELD_MAPPING: {path} is not valid JSON (line {exc.lineno}, column {exc.colno}: "
                          f"{exc.msg})") from None
    return parse_mapping(raw, origin=str(path))


def parse_mapping(raw: Any, *, origin: str = "field mapping") -> FieldMapping:
    try:
        return FieldMapping.model_validate(raw)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            where = ".".join(str(part) for part in err["loc"]) or "(top level)"
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg = "unknown key (typo?)"
            lines.append(f"  {where}: {msg}")
        raise ConfigError(f"{origin} is invalid:\n" + "\n".join(lines)) from None
