"""The two packets the university portal pushes (real-portal.md §2) and the intake's reply.

Two layers, on purpose:

* ``PollKeys`` / ``AnswerKeys`` hold only what a packet needs to be *stored*: its ids,
  JSON integers in 1..2^53. They are what the intake validates; failing them is the
  only content reason to refuse a packet.
* ``PostPoll`` / ``PostAnswer`` extend them with everything the portal documents. They
  describe the payloads in the OpenAPI schema (``/docs``) and are never used to refuse:
  a packet with a missing e-mail, a string where a list was expected or an unknown key
  is stored as it came, and the sync job reports what it cannot use.
"""
from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt

ID_MAX = 2 ** 53  # the ids the store and the sync job's models accept
PacketId = Annotated[StrictInt, Field(gt=0, le=ID_MAX)]


class PollKeys(BaseModel):
    """What a postPoll needs to be stored: a poll id (``express_poll_id``, its old name, fills in)."""

    model_config = ConfigDict(extra="allow")

    poll_id: PacketId


class AnswerHeaderKeys(BaseModel):
    model_config = ConfigDict(extra="allow")

    poll_id: PacketId
    answer_id: PacketId


class AnswerKeys(BaseModel):
    """What a postAnswer needs to be stored: ``header_data`` with both ids."""

    model_config = ConfigDict(extra="allow")

    header_data: AnswerHeaderKeys


class PostPoll(PollKeys):
    """A poll registration; sent again whenever the integration is switched off and on."""

    model_config = ConfigDict(extra="allow", json_schema_extra={"examples": [
        {"poll_id": 430131691, "poll_name": "Опрос абитуриентов 2025", "poll_language": "ru",
         "employee_email": "m.ivanova@hse.ru"}]})

    poll_name: str | None = Field(None, description="The poll's name (`name` is its old name and fills in)")
    poll_language: str | None = Field(None, examples=["ru", "en"])
    employee_email: str | None = Field(None, description="The employee responsible for the poll's records")
    user_id: int | None = Field(None, description="Kept and ignored")
    name: str | None = Field(None, description="Old name of poll_name; kept, used when poll_name is missing")
    express_poll_id: int | None = Field(None, description="Old name of poll_id; used when poll_id is missing")


class Analytics(BaseModel):
    model_config = ConfigDict(extra="allow")

    url: str | None = Field(None, description="The poll's page the answer was given on")
    params: dict[str, Any] | None = Field(None, description="Query parameters of the page: utm_*, yclid, …")
    cookies: dict[str, Any] | None = Field(None, description="_ga, _ym_uid, roistat_visit, …")
    ip: str | None = None
    date: str | None = Field(None, description="Local time without an offset, e.g. 2025-07-21 14:35")
    timeZone: str | None = Field(None, examples=["Europe/Moscow"])
    mailingListSubscription: bool | None = Field(None, description="Consent to advertising mailings")


class AnswerHeader(AnswerHeaderKeys):
    create_time: str | None = Field(None, description="UTC with milliseconds, e.g. 2025-07-21T11:35:47.921Z")
    form_kind: int | None = Field(None, description="null: not set, 1: consultation, 2: registration")
    gid: Any = Field(None, description="Optional group id set in the portal's admin")
    analytics: Analytics | None = None


class PostAnswer(AnswerKeys):
    """One answer to a poll: ``data`` maps each coded question to its value (text, list, …)."""

    model_config = ConfigDict(extra="allow", json_schema_extra={"examples": [
        {"header_data": {"poll_id": 430131691, "answer_id": 814573981, "create_time": "2025-07-21T11:35:47.921Z",
                         "form_kind": 2, "gid": None,
                         "analytics": {"url": "https://ba.hse.ru/polls/430131691.html",
                                       "params": {"utm_source": "yandex", "utm_medium": "cpc"},
                                       "cookies": {"_ga": "GA1.2.564819297.1608023318", "roistat_visit": "8467460"},
                                       "ip": "185.117.121.169", "date": "2025-07-21 14:35",
                                       "timeZone": "Europe/Moscow", "mailingListSubscription": True}},
         "data": {"lastname": "Иванова", "firstname": "Мария", "email": "maria@example.ru",
                  "educational_program_1": ["Цифровой юрист"]}}]})

    header_data: AnswerHeader
    data: dict[str, Any] = Field(default_factory=dict,
                                 description="Question code → value; only questions given a code in the poll's admin")


class IntakeReply(BaseModel):
    """The reply the portal reads: a delivery counts only with HTTP 200 and ``is_successful: true``."""

    status: Literal["success", "error"]
    message: str = Field(description="What happened, in Russian, for the portal's operator")
    description: str = ""
    reason: str | None = Field(None, description="Why a packet was refused, as a code (e.g. invalid_json)")
    poll_id: int | None = None
    answer_id: int | None = None
    is_successful: bool
