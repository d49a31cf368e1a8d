"""Typed shapes of the survey platform's API (what ``SurveyClient`` returns).

Answers come from the public, so the parts inside an answer are kept loose
(``value`` may be anything JSON); the planner decides what is usable and says why
when it is not. Only what is needed to key and order a record is strict: the ids
(positive integers up to 2^53, as the contract says) and ``updated_at``.

Anything else that does not fit is not a reason to drop the whole answer: a ``utm``
that is not an object, an ``answers`` item without a code, a missing ``created_at``
(taken from ``updated_at``) are set aside and listed in ``Answer.ignored``, which the
planner reports. Lone UTF-16 surrogates (JSON ``"\ud800"`` decodes to one, and no
store or request can encode it) become U+FFFD. A poll's texts may be null or numbers,
and a question that does not fit is dropped (the planner does not read questions).
"""
from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any

from pydantic import (AwareDatetime, BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, ValidationInfo,
                      field_validator, model_serializer, model_validator)

ID_MAX = 2 ** 53  # the contract's largest id; it also keeps ids inside the store's BIGINT
_SURROGATE = re.compile("[\ud800-\udfff]")
# A JSON escape of a UTF-16 surrogate (\uD800-\uDFFF): the only way a lone one gets into decoded text.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
# Validation context of a record known to hold no lone surrogate: read back from the store (it
# was encoded as UTF-8 to get there) or decoded from a body with no surrogate escape in it.
CHECKED_TEXT = {"text_checked": True}
_AWARE = TypeAdapter(AwareDatetime)


def body_may_hold_surrogates(body: bytes) -> bool:
    """Whether JSON text ``body`` can decode to a lone surrogate (False: skip the per-record check).

    Raw UTF-8 cannot encode one; only a ``\\uD8xx``-style escape can. A pair (an emoji written
    as two escapes) also answers True: the per-record check then decides, as before.
    """
    return _SURROGATE_ESCAPE.search(body) is not None


def _own_copy(data: dict, info: ValidationInfo) -> dict:
    """A copy of a record to loosen (the caller's is left as it came), lone surrogates replaced unless
    the caller validates with ``CHECKED_TEXT``."""
    if isinstance(info.context, dict) and info.context.get("text_checked"):
        return dict(data)
    return dict(_no_surrogates(data))


def _has_surrogates(value: Any) -> bool:
    """One C-speed pass over the whole record: only JSON text with a lone surrogate fails to encode."""
    try:
        json.dumps(value, ensure_ascii=False, default=str).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _no_surrogates(value: Any) -> Any:
    """``value`` with lone surrogates replaced; the same object when it has none (the usual case)."""
    if isinstance(value, (dict, list)) and not _has_surrogates(value):
        return value
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value) if _SURROGATE.search(value) else value
    if isinstance(value, dict):
        pairs = [(k, v, _no_surrogates(k), _no_surrogates(v)) for k, v in value.items()]
        if all(k is ck and v is cv for k, v, ck, cv in pairs):
            return value
        return {ck: cv for _, _, ck, cv in pairs}
    if isinstance(value, list):
        clean = [_no_surrogates(v) for v in value]
        return value if all(a is b for a, b in zip(clean, value)) else clean
    return value


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    return "object" if isinstance(value, dict) else type(value).__name__


def _strict_id(value: Any) -> Any:
    if isinstance(value, bool):  # pydantic would read true as 1
        raise ValueError("must be an integer, not a boolean")
    return value


def _text(value: Any) -> Any:
    """A poll's text field: null → "", a number → its digits."""
    if value is None:
        return ""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return value


class Question(BaseModel):
    model_config = ConfigDict(extra="ignore")

    code: str
    title: str | None = None
    type: str | None = None
    options: list[str] | None = None


class Poll(BaseModel):
    model_config = ConfigDict(extra="ignore")

    poll_id: int = Field(gt=0, le=ID_MAX)
    poll_name: str
    poll_language: str = ""
    employee_email: str = ""
    status: str = "active"
    created_at: AwareDatetime
    updated_at: AwareDatetime
    questions: list[Question] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _loosen(cls, data: Any, info: ValidationInfo) -> Any:
        if not isinstance(data, dict):
            return data
        data = _own_copy(data, info)
        for key in ("poll_name", "poll_language", "employee_email"):
            if key in data:
                data[key] = _text(data[key])
        if data.get("status") is None:
            data.pop("status", None)
        questions = data.get("questions")
        if not isinstance(questions, list):
            data["questions"] = []
        else:
            kept = []
            for question in questions:
                try:
                    kept.append(Question.model_validate(question))
                except ValidationError:
                    continue  # questions are informative only: one that does not fit is dropped
            data["questions"] = kept
        if data.get("created_at") is None and data.get("updated_at") is not None:
            data["created_at"] = data["updated_at"]
        return data

    @field_validator("poll_id", mode="before")
    @classmethod
    def _id_not_bool(cls, value: Any) -> Any:
        return _strict_id(value)


class AnswerItem(BaseModel):
    model_config = ConfigDict(extra="ignore")

    code: str
    value: Any = None


class IgnoredPart(BaseModel):
    """A part of an answer that did not fit the contract and was set aside (``part``: where, ``got``: what)."""

    model_config = ConfigDict(frozen=True)

    part: str
    got: str


class Answer(BaseModel):
    model_config = ConfigDict(extra="ignore")

    answer_id: int = Field(gt=0, le=ID_MAX)
    poll_id: int = Field(gt=0, le=ID_MAX)
    created_at: AwareDatetime
    updated_at: AwareDatetime
    answers: list[AnswerItem] = Field(default_factory=list)
    utm: dict[str, Any] = Field(default_factory=dict)
    cookies: dict[str, Any] = Field(default_factory=dict)
    meta: dict[str, Any] = Field(default_factory=dict)
    ignored: list[IgnoredPart] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _loosen(cls, data: Any, info: ValidationInfo) -> Any:
        if not isinstance(data, dict):
            return data
        data = _own_copy(data, info)
        ignored = list(data.get("ignored") or [])  # kept when re-read from the ledger
        for key in ("utm", "cookies", "meta"):
            value = data.get(key)
            if value is None:  # the contract says "missing or {}"; null shows up in practice too
                data[key] = {}
            elif not isinstance(value, dict):
                ignored.append({"part": key, "got": _json_type(value)})
                data[key] = {}
        items = data.get("answers")
        if items is None:
            data["answers"] = []
        elif not isinstance(items, list):
            ignored.append({"part": "answers", "got": _json_type(items)})
            data["answers"] = []
        else:
            kept = []
            for i, item in enumerate(items):
                code = item.get("code") if isinstance(item, dict) else None
                if isinstance(code, (int, float)) and not isinstance(code, bool):
                    item = {**item, "code": str(code)}
                elif not isinstance(code, str):
                    what = _json_type(item) if not isinstance(item, dict) else "object without a code"
                    ignored.append({"part": f"answers[{i}]", "got": what})
                    continue
                kept.append(item)
            data["answers"] = kept
        created = data.get("created_at")
        if created is None or not _aware(created):
            if created is not None:
                ignored.append({"part": "created_at", "got": _json_type(created)})
            if data.get("updated_at") is not None:
                data["created_at"] = data["updated_at"]
        if ignored:
            data["ignored"] = ignored
        return data

    @field_validator("answer_id", "poll_id", mode="before")
    @classmethod
    def _ids_not_bool(cls, value: Any) -> Any:
        return _strict_id(value)

    @model_serializer(mode="wrap")
    def _dump(self, handler: Any) -> Any:
        # Answers that fit the contract dump exactly as before: their content hashes do not change.
        data = handler(self)
        if isinstance(data, dict) and not self.ignored:
            data.pop("ignored", None)
        return data

    def value_of(self, code: str) -> Any:
        """The value given for question ``code`` (the first one given if repeated), or None."""
        for item in self.answers:
            if item.code == code and item.value is not None:
                return item.value
        return None


class Page(BaseModel):
    """One page of a listing: the parsed items plus the raw ones that did not parse."""

    items: list[Any]
    next_cursor: str | None = None
    invalid: list["InvalidRecord"] = Field(default_factory=list)


def _aware(value: Any) -> bool:
    try:
        _AWARE.validate_python(value)
    except ValidationError:
        return False
    return True


class InvalidRecord(BaseModel):
    """A listed record that does not fit the contract, kept so it is reported, not lost."""

    raw: Any
    error: str
    record_id: int | None = None
    poll_id: int | None = None


def utc(dt: datetime) -> datetime:
    """Normalise an aware datetime to UTC (compare instants, never strings)."""
    from datetime import timezone
    return dt.astimezone(timezone.utc)
