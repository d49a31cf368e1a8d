"""The ledger's value types and the helpers that turn caller input into them.

``content_hash`` decides what counts as a change; ``StageCounts`` and
``PushedResult`` are what callers get and give; ``Staged`` is one validated
answer or poll on its way into a table.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, is_dataclass
from datetime import datetime
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator
from pydantic_core import to_jsonable_python

ATTENTION = "attention"  # the problem severity that keeps an answer out of ``pushed``

_aware = TypeAdapter(AwareDatetime)


def content_hash(payload: dict[str, Any]) -> str:
    """sha256 of the payload as canonical JSON (sorted keys, compact, UTF-8 as is).

    Nothing is left out: the caller passes exactly what should count as a change.
    Datetimes and other non-JSON values are rendered the way pydantic's JSON mode
    renders them, so hashing ``model.model_dump()`` or ``model.model_dump(mode="json")``
    of the same model gives the same hash.
    """
    canonical = json.dumps(
        payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=to_jsonable_python
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class StageCounts(BaseModel):
    """What one staging call did: rows first seen, rows whose content changed, rows seen again as they were."""

    model_config = ConfigDict(frozen=True)

    new: int = 0
    changed: int = 0
    unchanged: int = 0

    def __add__(self, other: StageCounts) -> StageCounts:
        return StageCounts(
            new=self.new + other.new, changed=self.changed + other.changed, unchanged=self.unchanged + other.unchanged
        )


class PushedResult(BaseModel):
    """The CRM's side of one answer after its push: the ids it got and what was found on the way."""

    answer_id: int
    contact_id: int | None = None
    deal_ids: dict[str, int] = Field(default_factory=dict)
    pushed_hash: str
    problems: list[dict[str, Any]] = Field(default_factory=list)

    @field_validator("deal_ids", mode="before")
    @classmethod
    def _keys_as_text(cls, value: Any) -> Any:
        # JSON object keys are text: a programme's item id 42 is stored as "42".
        return {str(key): deal for key, deal in value.items()} if isinstance(value, dict) else value

    @field_validator("problems", mode="before")
    @classmethod
    def _problems_as_dicts(cls, value: Any) -> Any:
        return plain_problems(value) if isinstance(value, (list, tuple)) else value


@dataclass(slots=True)
class Staged:
    """One answer or poll checked and hashed, ready for its table."""

    id: int
    poll_id: int | None
    updated_at: datetime
    payload: dict[str, Any]
    hash: str


def aware_arg(value: Any, what: str) -> datetime:
    """``value`` as an aware datetime; ValueError naming ``what`` otherwise."""
    try:
        return _aware.validate_python(value)
    except ValidationError:
        raise ValueError(f"{what} must be an aware datetime (with a UTC offset), got {value!r}") from None


def to_staged(item: Any, key: str, *, needs_poll: bool) -> Staged:
    """Check one answer/poll dict (or model) and hash it; ValueError says which field is missing."""
    if isinstance(item, BaseModel):
        item = item.model_dump(mode="json")
    payload = to_jsonable_python(item)
    if not isinstance(payload, dict):
        raise ValueError(f"expected a dict with {key!r}, got {type(item).__name__}")
    try:
        ident = int(payload[key])
        poll_id = int(payload["poll_id"]) if needs_poll else None
        updated_at = _aware.validate_python(payload["updated_at"])
    except (KeyError, TypeError, ValueError, ValidationError) as exc:
        raise ValueError(
            f"cannot stage {key}={payload.get(key)!r}: it needs an integer {key!r}"
            + (", an integer 'poll_id'" if needs_poll else "")
            + f" and an aware 'updated_at' ({type(exc).__name__}: {exc})"
        ) from None
    return Staged(id=ident, poll_id=poll_id, updated_at=updated_at, payload=payload, hash=content_hash(payload))


def dedupe(items: Iterable[Staged]) -> list[Staged]:
    """One item per id: the one with the newest ``updated_at`` (the later one on a tie)."""
    latest: dict[int, Staged] = {}
    for item in items:
        seen = latest.get(item.id)
        if seen is None or item.updated_at >= seen.updated_at:
            latest[item.id] = item
    return list(latest.values())


def plain_problems(problems: Sequence[Any] | None) -> list[dict[str, Any]]:
    """Problems as JSON dicts (``{"code", "severity", "params"}``), whatever shape they came in."""
    plain: list[dict[str, Any]] = []
    for problem in problems or ():
        if isinstance(problem, BaseModel):
            problem = problem.model_dump(mode="json")
        elif is_dataclass(problem) and not isinstance(problem, type):
            problem = asdict(problem)
        problem = to_jsonable_python(problem)
        if not isinstance(problem, dict):
            raise ValueError(f"a problem must be a dict with code/severity/params, got {problem!r}")
        plain.append(problem)
    return plain


