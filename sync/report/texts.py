"""Problem texts and the small values every report format shows (durations, times, outcomes, errors).

The words live in ``sync.report.messages`` (Russian and English); a problem code
that module does not know is shown by its code and params rather than failing.
"""
from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Any, Literal

from core.redact import redact
from sync.plan.models import Problem
from sync.report.masking import mask_params, scrub_text
from sync.report.labels import LABELS
from sync.report.messages import FIELD_NAMES, GENERIC, LANGUAGES, PROBLEMS, ProblemMessage

Language = Literal["ru", "en"]

class _Fill(dict):
    def __missing__(self, key: str) -> str:
        return "?"


# The errors the run sets itself (sync/run.py, sync/options.py), as a reader of ``language`` should see them.
RUN_ERRORS: dict[str, tuple[tuple[re.Pattern[str], str], ...]] = {
    "ru": (
        (re.compile(r"stopped on request \(SIGTERM/SIGINT\) after the batches in flight; the next run goes on"),
         "остановлено по запросу (SIGTERM/SIGINT) после отправленных пакетов; следующий запуск продолжит"),
        (re.compile(r"run budget reached: (?P<made>\d+) Bitrix24 requests of --max-requests (?P<limit>\d+); .*"),
         "исчерпан бюджет запуска: {made} запросов к Bitrix24 из --max-requests {limit}; отправленные пакеты "
         "завершены, остальное — в следующем запуске"),
        (re.compile(r"run budget reached: (?P<took>\d+)s of --max-duration (?P<limit>[\d.]+)s; .*"),
         "исчерпан бюджет запуска: {took} с из --max-duration {limit} с; отправленные пакеты завершены, "
         "остальное — в следующем запуске"),
        (re.compile(r"stopped on request"), "остановлено по запросу"),
    ),
}


def check_language(language: str) -> None:
    if language not in LANGUAGES:
        raise ValueError(f"unsupported report language {language!r}; supported: {', '.join(LANGUAGES)}")


def _show(value: Any, language: str, key: str = "") -> str:
    if value is None:
        return "—"
    if isinstance(value, (list, tuple)):
        return ", ".join(_show(v, language, key) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{k}={_show(v, language, str(k))}" for k, v in value.items())
    text = str(value)
    if key == "field":
        return FIELD_NAMES[language].get(text, text)
    return text


def problem_message(code: str, language: str) -> ProblemMessage:
    known = PROBLEMS[language].get(code)
    if known is not None:
        return known
    generic = GENERIC[language]
    return ProblemMessage(generic.title.replace("{code}", code), generic.text, generic.advice)


def problem_text(problem: Problem, language: Language = "ru", *, show_personal_data: bool = False) -> str:
    """One problem in plain words, personal values masked unless ``show_personal_data``."""
    check_language(language)
    return fill_text(problem.code, problem.params if show_personal_data else mask_params(problem), language)


def fill_text(code: str, params: dict[str, Any], language: str) -> str:
    fill = _Fill({k: _show(v, language, k) for k, v in params.items()})
    known = PROBLEMS[language].get(code)
    if known is not None:
        return known.text.format_map(fill)
    listed = ", ".join(f"{k}={fill[k]}" for k in params) or "—"
    return GENERIC[language].text.format_map(_Fill(code=code, params=listed))


def duration_text(seconds: float, language: str) -> str:
    labels = LABELS[language]
    if seconds < 60:
        value = f"{seconds:.1f}"
        return labels["seconds"].format(value=value.replace(".", ",") if language == "ru" else value)
    minutes, rest = divmod(int(round(seconds)), 60)
    return labels["minutes"].format(minutes=minutes, seconds=rest)


def age_text(seconds: float, language: str) -> str:
    """How long something has waited, to the unit that matters: ``3 дн. 4 ч``, ``5 ч 10 мин``, ``7 мин``."""
    labels = LABELS[language]
    minutes = max(0, int(seconds // 60))
    days, rest = divmod(minutes, 24 * 60)
    hours, minutes = divmod(rest, 60)
    if days:
        return labels["age_days"].format(days=days, hours=hours)
    if hours:
        return labels["age_hours"].format(hours=hours, minutes=minutes)
    return labels["age_minutes"].format(minutes=minutes)


def time_text(moment: datetime | None) -> str:
    if moment is None:
        return "—"
    if moment.tzinfo is not None:
        return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def outcome_text(outcome: str, language: str) -> str:
    return LABELS[language].get(f"outcome_{outcome}", outcome)


def error_text(error: str | None, masked: bool, language: str = "en") -> str:
    """The run's error for a person: redacted, masked if asked, and in ``language`` when it is one the run
    itself sets (a stop on request, a spent budget); other errors come from systems and stay as they are."""
    if not error:
        return ""
    text = redact(error)
    for pattern, words in RUN_ERRORS.get(language, ()):
        found = pattern.fullmatch(text)
        if found:
            text = words.format(**found.groupdict())
            break
    return scrub_text(text) if masked else text
