"""The checklist: one ``Check`` per line, how checks are recorded, printed, and which exit code they mean."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any, Iterable

from core import exit_codes
from core.redact import redact
from sync.doctor.texts import DEFAULT_LANGUAGE, Texts

CONFIG = "config"   # fix a setting or the mapping → USAGE_ERROR
SYSTEM = "system"   # a system is unreachable or refused us → ABORTED

# The doctor's clients give up fast: an operator is waiting at the terminal.
DOCTOR_MAX_ATTEMPTS = 2
DOCTOR_MAX_WAIT_S = 10.0
DOCTOR_TIMEOUT_S = 15.0


@dataclass(frozen=True)
class Check:
    """One line of the checklist. ``kind`` says which exit code a failure means (CONFIG or SYSTEM).

    ``name`` is the check's stable English id (``--json``'s, and what code compares);
    ``detail`` and ``fix`` are already in the language of the run (``texts``).
    """

    name: str
    ok: bool
    detail: str
    fix: str = ""
    kind: str = CONFIG
    skipped: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Problem:
    """One thing a check found wrong, with its fix."""

    detail: str
    fix: str


class Skip(Exception):
    """A prerequisite failed: the check is skipped with this reason."""


class Checklist:
    """The checks so far, and which failed, so a later check can skip naming why; ``t`` writes their texts."""

    def __init__(self, language: str = DEFAULT_LANGUAGE) -> None:
        self.checks: list[Check] = []
        self.failed: dict[str, str] = {}
        self.t = Texts(language)

    def add(self, check: Check) -> Check:
        self.checks.append(check)
        if not check.ok:
            self.failed[check.name] = "skipped" if check.skipped else check.detail
        return check

    def ok(self, name: str, detail: str) -> None:
        self.add(Check(name, True, detail))

    def fail(self, name: str, detail: str, fix: str, kind: str) -> None:
        self.add(Check(name, False, redact(detail), redact(fix), kind))

    def skip(self, name: str, reason: str, kind: str = CONFIG) -> None:
        self.add(Check(name, False, self.t("skipped", reason=reason), "", kind, skipped=True))

    def needs(self, *names: str) -> None:
        """Raise ``Skip`` if any of ``names`` did not pass."""
        for name in names:
            if name in self.failed:
                key = "needs.skipped" if self.failed[name] == "skipped" else "needs.failed"
                raise Skip(self.t(key, title=self.t.title(name)))


def one_line(exc: BaseException) -> str:
    """The error as one redacted line (its type name if it has no text)."""
    return redact(" ".join(str(exc).split()) or type(exc).__name__)


def exit_code_for(checks: Iterable[Check]) -> int:
    """0, ``USAGE_ERROR`` or ``ABORTED`` — see the module docstring."""
    failed = [c for c in checks if not c.ok and not c.skipped]
    if any(c.kind == CONFIG for c in failed):
        return exit_codes.USAGE_ERROR
    if failed:
        return exit_codes.ABORTED
    return exit_codes.OK


def format_check(check: Check, *, unicode: bool = True, language: str = DEFAULT_LANGUAGE) -> str:
    """``✔ title — detail`` / ``✘ title — detail → fix`` (``OK``/``FAIL``/``SKIP`` without Unicode).

    ``language`` is the one the checks were made in: it gives the title and the words.
    """
    t = Texts(language)
    dash, arrow = ("—", "→") if unicode else ("-", "->")
    state = "ok" if check.ok else "skip" if check.skipped else "fail"
    if unicode:
        mark = {"ok": "✔", "skip": "○", "fail": "✘"}[state]
    else:
        # Padded to the longest word, so the titles line up as they do after the symbols.
        words = {key: t(f"mark.{key}") for key in ("ok", "skip", "fail")}
        mark = words[state].ljust(max(len(w) for w in words.values()))
    line = f"{mark} {t.title(check.name)} {dash} {check.detail}"
    if not check.ok and not check.skipped and check.fix:
        line += f" {arrow} {check.fix}"
    return line


def as_json(checks: list[Check]) -> str:
    """The checks and the exit code they mean, as JSON for ``doctor --json``."""
    code = exit_code_for(checks)
    return json.dumps({"ok": code == exit_codes.OK, "exit_code": code, "checks": [c.as_dict() for c in checks]},
                      ensure_ascii=False, indent=2)
