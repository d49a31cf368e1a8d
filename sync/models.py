"""Typed shapes of the survey platform's API (what ``SurveyClient`` returns).

Answers come from the public, so the parts inside an answer are kept loose
(``value`` may be anything JSON); the planner decides what is usable and says why
when it is not. Only what is needed to key and order a record is strict.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator


class Question(BaseModel):
    model_config = ConfigDict(extra="ignore")

    code: str
    title: str | None = None
    type: str | None = None
    options: list[str] | None = None


class Poll(BaseModel):
    model_config = ConfigDict(extra="ignore")

    poll_id: int = Field(gt=0)
    poll_name: str
    poll_language: str = ""
    employee_email: str = ""
    status: str = "active"
    created_at: AwareDatetime
    updated_at: AwareDatetime
    questions: list[Question] = Field(default_factory=list)


class AnswerItem(BaseModel):
    model_config = ConfigDict(extra="ignore")

    code: str
    value: Any = None


class Answer(BaseModel):
    model_config = ConfigDict(extra="ignore")

    answer_id: int = Field(gt=0)
    poll_id: int = Field(gt=0)
    created_at: AwareDatetime
    updated_at: AwareDatetime
    answers: list[AnswerItem] = Field(default_factory=list)
    utm: dict[str, Any] = Field(default_factory=dict)
    cookies: dict[str, Any] = Field(default_factory=dict)
    meta: dict[str, Any] = Field(default_factory=dict)

    @field_validator("utm", "cookies", "meta", mode="before")
    @classmethod
    def _none_is_empty(cls, value: Any) -> Any:
        # The contract says these "can be missing or {}"; null shows up in practice too.
        return {} if value is None else value

    def value_of(self, code: str) -> Any:
        """The value given for question ``code`` (the first one if repeated), or None."""
        for item in self.answers:
            if item.code == code:
                return item.value
        return None


class Page(BaseModel):
    """One page of a listing: the parsed items plus the raw ones that did not parse."""

    items: list[Any]
    next_cursor: str | None = None
    invalid: list["InvalidRecord"] = Field(default_factory=list)


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
