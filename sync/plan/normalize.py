"""Normalisation of what respondents type: e-mails, phones, programme titles, names.

Every function here is pure and idempotent (normalising twice gives the same result),
which the property tests check.
"""
from __future__ import annotations

import functools
import re
import string
import unicodedata

import phonenumbers
from email_validator import EmailNotValidError, validate_email

_SPACES = re.compile(r"\s+")
# C0 and C1 controls and DEL (tab, newline and CR are whitespace: collapsed with the spaces),
# and the bidi embeddings, overrides and isolates that reorder how a name displays ("Trojan
# source"); zero-width joiners stay (emoji sequences), as do the plain LRM/RLM marks.
# Lone surrogates (JSON "\ud800" decodes to one) cannot be encoded for any request or store.
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_SURROGATE = re.compile("[\ud800-\udfff]")
_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)


def match_key_email(raw: str) -> str:
    """The form ``crm.duplicate.findbycomm`` compares e-mails in: trimmed, ASCII letters lower-cased.

    The portal folds with PHP's ``strtolower`` (bitrix24-rest.md §10): ``Пётр@x.ru`` stays
    ``Пётр@x.ru`` there, so a key lower-cased in full would never find that contact. Also
    NFC: ``é`` typed precomposed or as ``e`` + combining accent is one address.
    """
    return unicodedata.normalize("NFC", raw).strip().translate(_ASCII_LOWER)


def email_identity(raw: str) -> str:
    """One person's address however its letters are cased: trimmed, NFC, lower-cased in full.

    Folds more than the portal does: the job groups answers and compares look-up results
    by it, and asks the portal for each ``match_key_email`` form it may hold.
    """
    return unicodedata.normalize("NFC", unicodedata.normalize("NFC", raw).strip().lower())


def normalize_email(raw: object) -> tuple[str | None, str | None]:
    """Return ``(email, None)`` for a usable address, else ``(None, reason_code)``.

    The address is trimmed and lower-cased (how Bitrix24's duplicate search compares
    them); it must be syntactically valid. Unicode domains are kept as typed (lower-cased).
    """
    if isinstance(raw, str):
        return _normalize_email_text(raw)
    return _normalize_email(raw)


@functools.lru_cache(maxsize=65536)
def _normalize_email_text(raw: str) -> tuple[str | None, str | None]:
    # Cached: the planner and the look-ups both ask, and people answer more than once.
    return _normalize_email(raw)


def _normalize_email(raw: object) -> tuple[str | None, str | None]:
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None, "missing_email"
    if not isinstance(raw, str):
        return None, "invalid_email"
    candidate = email_identity(raw)
    if len(candidate) > 250:
        return None, "invalid_email"
    try:
        validate_email(candidate, check_deliverability=False, allow_smtputf8=True)
    except EmailNotValidError:
        return None, "invalid_email"
    return candidate, None


def normalize_phone(raw: object, region: str = "RU") -> tuple[str | None, str | None]:
    """Return ``(e164, None)``, ``(None, None)`` when no phone was given, or ``(None, 'invalid_phone')``."""
    if isinstance(raw, str):
        return _normalize_phone_text(raw, region)
    return _normalize_phone(raw, region)


@functools.lru_cache(maxsize=65536)
def _normalize_phone_text(raw: str, region: str) -> tuple[str | None, str | None]:
    return _normalize_phone(raw, region)


def _normalize_phone(raw: object, region: str = "RU") -> tuple[str | None, str | None]:
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None, None
    if isinstance(raw, bool):
        return None, "invalid_phone"
    if isinstance(raw, float) and raw.is_integer():
        raw = int(raw)  # 89031234567.0: a number that went through a float, not a fraction
    text = str(raw).strip()
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None, "invalid_phone"
    if not phonenumbers.is_valid_number(number):
        return None, "invalid_phone"
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164), None


def phone_digits(value: str) -> str:
    """Digits only, as Bitrix24 compares phones (extension dropped upstream)."""
    return "".join(ch for ch in value if ch.isdigit())


def normalize_title(raw: str) -> str:
    """Loose form of a programme title: collapsed whitespace, case-folded, ё → е."""
    text = unicodedata.normalize("NFC", raw)
    text = _SPACES.sub(" ", text).strip().casefold()
    return text.replace("ё", "е")


def clean_text(raw: object, *, max_length: int | None = None, collapse_spaces: bool = True) -> tuple[str, bool]:
    """A display text: control characters removed, whitespace collapsed; ``(text, truncated)``."""
    if raw is None:
        return "", False
    if isinstance(raw, (list, dict)):
        return "", False
    text = _SURROGATE.sub("\ufffd", _CONTROL.sub("", str(raw)))
    # NFC after removing controls: a control between a letter and its accent kept them apart.
    text = unicodedata.normalize("NFC", text)
    text = _SPACES.sub(" ", text).strip() if collapse_spaces else text.strip()
    if max_length is not None and len(text) > max_length:
        return text[:max_length].rstrip(), True
    return text, False
