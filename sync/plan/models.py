"""Plain data the planner reads and writes: CRM look-ups in, commands and problems out."""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Severity = Literal["attention", "warning", "info"]


class Problem(BaseModel):
    """Something about an answer or poll worth telling a person; ``attention`` blocks 'synced'."""

    model_config = ConfigDict(frozen=True)

    code: str
    severity: Severity
    params: dict[str, Any] = Field(default_factory=dict)


# --- what the planner knows about the CRM -------------------------------------------------

class Programme(BaseModel):
    id: int
    title: str
    active: bool = True


class CrmDeal(BaseModel):
    """A deal as the look-ups found it: what deciding reuse and filling empty fields needs."""

    id: int
    contact_id: int | None = None
    originator_id: str = ""
    origin_id: str = ""
    open: bool = True
    programme_id: int | None = None
    fields: dict[str, Any] = Field(default_factory=dict)   # current values of the fields the job may write
    summaries: set[str] = Field(default_factory=set)       # "<answer id>:<version>" of summaries it carries


class CrmUser(BaseModel):
    id: int
    email: str
    active: bool


class CrmContact(BaseModel):
    id: int
    name: str = ""
    last_name: str = ""
    second_name: str = ""
    emails: list[str] = Field(default_factory=list)
    phones: list[str] = Field(default_factory=list)


class PollContext(BaseModel):
    """What the answer planner needs of a poll: its CRM item and the deal owner."""

    poll_id: int
    poll_name: str = ""
    poll_language: str = ""
    status: str = ""
    employee_email: str = ""
    item_id: int | None = None
    owner_id: int


class AnswerLookups(BaseModel):
    programmes: list[Programme] = Field(default_factory=list)
    contacts_by_email: dict[str, list[CrmContact]] = Field(default_factory=dict)
    deals_by_origin: dict[str, int] = Field(default_factory=dict)
    deals: dict[int, CrmDeal] = Field(default_factory=dict)               # every deal found, by id
    deals_by_contact: dict[int, list[int]] = Field(default_factory=dict)  # contact id → its deals' ids


class PollLookups(BaseModel):
    users_by_email: dict[str, CrmUser] = Field(default_factory=dict)
    items_by_poll: dict[int, int] = Field(default_factory=dict)
    # List storage: each poll form's current properties (an update overwrites the whole element).
    elements_by_poll: dict[int, dict[str, Any]] = Field(default_factory=dict)
    programmes: list[Programme] | None = None  # read in the same batch when the run needs them too


# --- what the planner produces ---------------------------------------------------------------

class Ref(BaseModel):
    """The id that command ``command`` creates; resolved when the batch is built."""

    model_config = ConfigDict(frozen=True)

    command: str


class Command(BaseModel):
    """One REST call to make inside a ``batch``."""

    name: str
    method: str
    params: dict[str, Any]
    answer_ids: list[int] = Field(default_factory=list)
    poll_id: int | None = None
    kind: Literal["poll_form_add", "poll_form_update", "contact_add", "contact_update", "deal_add", "deal_update",
                  "summary_add"]
    external_key: str = ""
    depends_on: list[str] = Field(default_factory=list)


class DealPlan(BaseModel):
    origin_id: str
    programme_key: str
    programme_id: int | None
    programme_title: str | None
    action: Literal["create", "update", "reuse"]   # reuse: a deal someone else made, filled and annotated
    deal_id: int | None = None
    command: str
    title: str


class ContactPlan(BaseModel):
    email: str
    action: Literal["reuse", "update", "create"]
    contact_id: int | None = None
    command: str | None = None
    changes: list[str] = Field(default_factory=list)
    answer_ids: list[int] = Field(default_factory=list)


class AnswerPlan(BaseModel):
    answer_id: int
    poll_id: int
    email: str | None = None
    display_name: str = ""
    phone: str | None = None
    contact_email: str | None = None
    deals: list[DealPlan] = Field(default_factory=list)
    problems: list[Problem] = Field(default_factory=list)
    content_hash: str = ""
    # Set by a real run once the answer's batches returned (what the report shows after the fact).
    outcome: Literal["pushed", "failed", "unknown"] | None = None
    outcome_error: str = ""
    outcome_contact_id: int | None = None
    outcome_deal_ids: dict[str, int] = Field(default_factory=dict)

    @property
    def needs_attention(self) -> bool:
        return any(p.severity == "attention" for p in self.problems)


class PollPlan(BaseModel):
    poll_id: int
    poll_name: str
    action: Literal["create", "update", "none"]
    item_id: int | None = None
    owner_id: int
    command: str | None = None
    problems: list[Problem] = Field(default_factory=list)
    content_hash: str = ""


class Plan(BaseModel):
    polls: list[PollPlan] = Field(default_factory=list)
    contacts: list[ContactPlan] = Field(default_factory=list)
    answers: list[AnswerPlan] = Field(default_factory=list)
    commands: list[Command] = Field(default_factory=list)
