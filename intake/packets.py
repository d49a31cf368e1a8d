"""From raw request bytes to a storable packet, or a ``Refusal`` that says why not.

Only what makes a packet impossible to store is refused: bytes that are not UTF-8
JSON, JSON that is not an object, missing or non-integer ids. Everything inside
``data`` and ``analytics`` is the sync job's business, whatever its shape.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from intake.models import ID_MAX, AnswerKeys, PollKeys


class Refusal(Exception):
    """Raised when a packet cannot be stored; carries the reply's HTTP status, reason code and Russian text."""

    def __init__(self, status: int, reason: str, message: str, description: str = "", *,
                 poll_id: Any = None, answer_id: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message
        self.description = description
        self.poll_id = poll_id
        self.answer_id = answer_id


@dataclass(frozen=True)
class AnswerPacket:
    body: dict[str, Any]
    poll_id: int
    answer_id: int


@dataclass(frozen=True)
class PollPacket:
    body: dict[str, Any]
    poll_id: int
    content: dict[str, Any]  # what makes a new version: name, language, employee

    @property
    def employee_email(self) -> Any:
        return self.content.get("employee_email")


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e999: no store can keep it as JSON
        raise ValueError(f"the number {text[:40]} is too large")
    return value


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "логическое значение"
    if isinstance(value, int):
        return "целое число"
    if isinstance(value, float):
        return "дробное число"
    if isinstance(value, str):
        return "строка"
    if isinstance(value, list):
        return "массив"
    return "объект" if isinstance(value, dict) else type(value).__name__


def _shown(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 60 else text[:57] + "…"


def parse_object(raw: bytes) -> dict[str, Any]:
    """The packet's JSON object; ``Refusal`` (400) for empty, non-UTF-8, invalid or non-object bodies."""
    if not raw.strip():
        raise Refusal(400, "empty_body", "Пустое тело запроса: ожидался JSON-объект пакета",
                      "Портал должен отправлять пакет методом POST с Content-Type: application/json.")
    try:
        text = raw.decode("utf-8-sig")  # a BOM is harmless: accept it
    except UnicodeDecodeError as exc:
        raise Refusal(400, "not_utf8", f"Тело запроса не в кодировке UTF-8 (недопустимый байт в позиции {exc.start})",
                      "Пакет должен быть JSON в UTF-8.") from None
    try:
        value = json.loads(text, parse_constant=_no_constants, parse_float=_finite)
    except json.JSONDecodeError as exc:
        raise Refusal(400, "invalid_json", f"Тело запроса не является корректным JSON: {exc.msg} "
                                           f"(строка {exc.lineno}, столбец {exc.colno})",
                      "Проверьте, что пакет — корректный JSON-объект.") from None
    except ValueError as exc:
        raise Refusal(400, "invalid_json", f"Тело запроса не является корректным JSON: {exc}",
                      "NaN, Infinity и числа вне диапазона double в JSON недопустимы.") from None
    except RecursionError:
        raise Refusal(400, "too_deep", "JSON вложен слишком глубоко", "Пакет не может быть сохранён.") from None
    if not isinstance(value, dict):
        raise Refusal(400, "not_an_object", f"Ожидался JSON-объект пакета, получен {_json_type(value)}",
                      "Пакет — это объект вида {\"header_data\": {...}, \"data\": {...}} или "
                      "{\"poll_id\": ..., ...}.")
    return value


def _refusal_from(exc: ValidationError, body: dict[str, Any], **ids: Any) -> Refusal:
    error = exc.errors()[0]
    loc = ".".join(str(p) for p in error["loc"])
    value = error.get("input")
    kind = error["type"]
    if kind == "missing":
        return Refusal(400, "missing_field", f"В пакете нет обязательного поля {loc}",
                       "Без него пакет нельзя сохранить; остальные поля могут отсутствовать.", **ids)
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return Refusal(400, "not_an_object", f"Поле {loc} должно быть объектом, получено {_json_type(value)}",
                       "", **ids)
    if kind in ("greater_than", "less_than_equal"):
        return Refusal(400, "id_out_of_range", f"Поле {loc} вне допустимого диапазона 1…{ID_MAX}: {_shown(value)}",
                       "", **ids)
    return Refusal(400, "not_an_integer",
                   f"Поле {loc} должно быть целым числом, получено {_json_type(value)} {_shown(value)}", "", **ids)


def _plain_id(value: Any) -> int | None:
    # For the reply and the refusal log only: echo an id back only when it is one.
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def answer_packet(raw: bytes) -> AnswerPacket:
    """A postAnswer body → ``AnswerPacket``; ``Refusal`` says why it cannot be stored."""
    body = parse_object(raw)
    header = body.get("header_data")
    ids = {"poll_id": _plain_id(header.get("poll_id")) if isinstance(header, dict) else None,
           "answer_id": _plain_id(header.get("answer_id")) if isinstance(header, dict) else None}
    try:
        keys = AnswerKeys.model_validate(body)
    except ValidationError as exc:
        raise _refusal_from(exc, body, **ids) from None
    return AnswerPacket(body=body, poll_id=keys.header_data.poll_id, answer_id=keys.header_data.answer_id)


def poll_packet(raw: bytes) -> PollPacket:
    """A postPoll body → ``PollPacket``; ``express_poll_id`` and ``name`` (old names) fill in missing ones."""
    body = parse_object(raw)
    candidate = dict(body)
    if candidate.get("poll_id") is None and "express_poll_id" in candidate:
        candidate["poll_id"] = candidate["express_poll_id"]
    try:
        keys = PollKeys.model_validate(candidate)
    except ValidationError as exc:
        raise _refusal_from(exc, body, poll_id=_plain_id(candidate.get("poll_id"))) from None
    name = body.get("poll_name")
    if name is None:
        name = body.get("name")
    content = {"poll_id": keys.poll_id, "poll_name": name, "poll_language": body.get("poll_language"),
               "employee_email": body.get("employee_email")}
    return PollPacket(body=body, poll_id=keys.poll_id, content=content)
