"""Values for CRM fields, read from an answer or a poll through the mapping's value sources.

Whole values are written wherever the field holds them; only a column the portal keeps
shorter is cut, and the cut is a ``value_cut`` problem naming the field, the original
length and the kept length (``cut()``), never silent.
"""
from __future__ import annotations

import re
from collections import defaultdict
from typing import Any

from sync.mapping import FieldMapping
from sync.plan.models import PollContext, Problem
from sync.plan.normalize import clean_text
from sync.source.models import Answer

NAME_MAX = 50          # Bitrix24's NAME / LAST_NAME / SECOND_NAME columns
TITLE_MAX = 255        # deal TITLE column
SHOWN_MAX = 200        # what a problem quotes of a respondent's text: enough to recognise it


def shown(value: Any) -> str:
    """A respondent's value as a problem quotes it: clean, and short even if they typed 10,000 characters."""
    text, truncated = clean_text(value, max_length=SHOWN_MAX)
    return text + "…" if truncated else text


def cut(text: str, *, field: str, limit: int, problems: list[Problem]) -> str:
    """``text`` within the column's ``limit``; a cut is reported, never silent."""
    if len(text) <= limit:
        return text
    problems.append(Problem(code="value_cut", severity="warning",
                            params={"field": field, "length": len(text), "kept": limit}))
    return text[:limit].rstrip()


def question(answer: Answer, code: str | None) -> Any:
    return answer.value_of(code) if code else None


def crm_value(value: Any) -> Any:
    """A value as a CRM field takes it: booleans as 1/0 (``"N"`` is truthy in PHP), lists joined."""
    if value is None:
        return None
    if isinstance(value, bool):
        return 1 if value else 0
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, list):
        value = ", ".join(str(v) for v in value if v is not None)
    if isinstance(value, dict):
        return None
    text = clean_text(value)[0]
    return text or None


def source_value(source: str, *, answer: Answer | None, poll: PollContext, mapping: FieldMapping) -> Any:
    """The value of a mapping source (``utm:utm_source``, ``cookie:roistat_visit``, ``owner``, …) or None."""
    kind, _, arg = source.partition(":")
    if source == "owner":
        return poll.owner_id
    if source == "cookies":
        if answer is None or not answer.cookies:
            return None
        text = "; ".join(f"{k}={v}" for k, v in answer.cookies.items() if v is not None)
        return clean_text(text)[0] or None
    if kind == "const":
        return arg
    if kind == "poll":
        value = getattr(poll, arg, None)
        return value if value not in ("", None) else None
    if answer is None:
        return None
    if kind == "answer":
        value = getattr(answer, arg)
        return value.isoformat() if hasattr(value, "isoformat") else value
    if kind == "question":
        return crm_value(question(answer, arg))
    if kind == "utm":
        return crm_value(answer.utm.get(arg))
    if kind == "meta":
        return crm_value(answer.meta.get(arg))
    if kind == "cookie":
        return crm_value(answer.cookies.get(arg))
    return None  # pragma: no cover - the mapping model rejects other kinds


def render_title(template: str, values: dict[str, str]) -> str:
    text = template.format_map(defaultdict(str, values))
    text = " ".join(text.split())
    return re.sub(r"[\s—–:-]+$", "", text)
