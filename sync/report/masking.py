"""Masking personal data in the report: e-mails, phones, names, deal titles, problem params and free text.

Respondents' e-mails, names and phones (and poll owners' e-mails) are masked unless
the operator asks for personal data; deal titles carry names, so they are masked
too, and free texts are scrubbed of anything that looks like an e-mail or a phone.
"""
from __future__ import annotations

import re
from typing import Any, Callable

from sync.plan.models import Problem

MASK = "***"

_NON_DIGITS = re.compile(r"\D+")
_EMAIL_IN_TEXT = re.compile(r"[^\s@<>()\[\]{},;:\"'«»]+@[^\s@<>()\[\]{},;:\"'«»]+")
_PHONE_IN_TEXT = re.compile(r"\+?\d[\d\s().\-]{8,}\d")
_EDGE_PUNCTUATION = "\"'«»„“”‘’()[]{}<>.,;:!?—–-"
_TRUNCATED_TITLE = 250  # the planner cuts deal titles at 255 characters; a cut name is masked by prefix


def mask_email(value: Any) -> str:
    """``ivan.petrov@example.com`` → ``iv***@example.com``; text without ``@`` keeps two characters."""
    text = "" if value is None else str(value).strip()
    if not text:
        return ""
    local, at, domain = text.rpartition("@")
    if not at:
        return (text[:2] if len(text) > 4 else "") + MASK
    keep = local[:2] if len(local) > 3 else local[:1]
    return f"{keep}{MASK}@{domain}"


def mask_broken_email(value: Any) -> str:
    """An invalid address masked so what is wrong stays visible: ``ivan petrov@mail,ru`` → ``iv** ******@mail,ru``.

    Latin letters and digits after the first two are masked; everything else (spaces,
    commas, doubled dots or @, non-Latin letters, the domain) is shown, since that is
    what the respondent got wrong and what the person fixing it must see.
    """
    text = "" if value is None else str(value)
    if not text.strip():
        return ""
    local, at, domain = text.rpartition("@") if "@" in text else (text, "", "")
    shown = "".join(ch if i < 2 or not (ch.isascii() and ch.isalnum()) else "*" for i, ch in enumerate(local))
    return f"{shown}{at}{domain}"


def mask_phone(value: Any) -> str:
    """``+79161234567`` → ``+7916*****67``: the country and operator code and the last two digits."""
    text = "" if value is None else str(value).strip()
    digits = _NON_DIGITS.sub("", text)
    if not digits:
        return MASK if text else ""
    if len(digits) < 7:
        return MASK
    head = min(4, len(digits) - 6)
    plus = "+" if text.startswith("+") else ""
    return f"{plus}{digits[:head]}{'*' * (len(digits) - head - 2)}{digits[-2:]}"


def _mask_word(word: str) -> str:
    if not word:
        return ""
    return (word[0] if word[0].isalpha() else "") + MASK


def mask_name(value: Any) -> str:
    """Every word of a name as its first letter and ``***``: ``Петров Иван`` → ``П*** И***``."""
    return " ".join(_mask_word(w) for w in str(value or "").split())


def scrub_text(text: str) -> str:
    """Free text with every e-mail and phone-like number (10+ digits) masked."""
    if "@" in text:
        text = _EMAIL_IN_TEXT.sub(lambda m: mask_email(m.group()), text)
    return _PHONE_IN_TEXT.sub(_mask_phone_match, text)


def _mask_phone_match(match: re.Match[str]) -> str:
    found = match.group()
    return mask_phone(found) if sum(ch.isdigit() for ch in found) >= 10 else found


def mask_title(title: str, display_name: str) -> str:
    """A deal title with the respondent's name words masked (names are rendered into titles)."""
    names = set(display_name.split())
    if not names or not title:
        return scrub_text(title)
    words = title.split(" ")
    found: set[str] = set()
    for i, word in enumerate(words):
        if word in names:
            found.add(word)
            words[i] = _mask_word(word)
            continue
        core = word.strip(_EDGE_PUNCTUATION)
        if core in names:
            found.add(core)
            words[i] = word.replace(core, _mask_word(core), 1)
    if len(title) >= _TRUNCATED_TITLE and words:
        last = words[-1].strip(_EDGE_PUNCTUATION)
        if last and last not in found and any(n.startswith(last) for n in names):
            words[-1] = words[-1].replace(last, _mask_word(last), 1)
    text = " ".join(words)
    for name in names - found:  # a template that glues a name to other text
        if len(name) >= 3 and name in text:
            text = text.replace(name, _mask_word(name))
    return scrub_text(text)


_EMAIL_KEYS = frozenset({"email", "employee_email", "contact_email", "emails"})
_PHONE_KEYS = frozenset({"phone", "phones"})
_NAME_KEYS = frozenset({"name", "first_name", "last_name", "middle_name", "second_name", "display_name",
                        "respondent", "full_name"})
# ``params["value"]`` is what the respondent typed: personal unless the code says otherwise.
_VALUE_MASKS: dict[str, Callable[[Any], str]] = {"invalid_email": mask_broken_email, "missing_email": mask_email,
                                                 "invalid_phone": mask_phone}
_PUBLIC_VALUE_CODES = frozenset({"unknown_enum_value"})


def _mask_generic(value: Any) -> str:
    text = str(value)
    return (text[:2] if len(text) > 4 else "") + MASK if text else ""


def _mask_param(code: str, key: str, value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, (list, tuple)):
        return [_mask_param(code, key, v) for v in value]
    if isinstance(value, dict):
        return {k: _mask_param(code, str(k), v) for k, v in value.items()}
    if key in _EMAIL_KEYS:
        return mask_email(value)
    if key in _PHONE_KEYS:
        return mask_phone(value)
    if key in _NAME_KEYS:
        return mask_name(value)
    if key == "value" and code not in _PUBLIC_VALUE_CODES:
        return _VALUE_MASKS.get(code, _mask_generic)(value)
    return scrub_text(str(value))


def mask_params(problem: Problem) -> dict[str, Any]:
    """The problem's params with the personal values masked (programme names are kept)."""
    return {k: _mask_param(problem.code, k, v) for k, v in problem.params.items()}
