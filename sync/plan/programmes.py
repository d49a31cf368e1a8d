"""Which programme a respondent chose: exact title, then normalised title, then an alias.

A name present twice (an old inactive element and a current active one) resolves to the
active one; a programme that exists only inactive is linked, with a warning; an unknown
one is reported by name while the known ones get their deals.
"""
from __future__ import annotations

from collections import defaultdict

from sync.plan.models import Problem, Programme
from sync.plan.normalize import clean_text, normalize_title
from sync.plan.values import question, shown
from sync.source.models import Answer


class ProgrammeResolver:
    def __init__(self, programmes: list[Programme], aliases: dict[str, str | int]) -> None:
        self._by_title: dict[str, list[Programme]] = defaultdict(list)
        self._by_norm: dict[str, list[Programme]] = defaultdict(list)
        self._by_id = {p.id: p for p in programmes}
        for p in sorted(programmes, key=lambda p: p.id):
            self._by_title[p.title].append(p)
            self._by_norm[normalize_title(p.title)].append(p)
        self._aliases = {normalize_title(alias): target for alias, target in aliases.items()}

    @staticmethod
    def _pick(candidates: list[Programme], given: str) -> tuple[Programme | None, list[Problem]]:
        """One programme of those sharing a title: the active one; an inactive one only if nothing else."""
        active = [p for p in candidates if p.active]
        if len(active) == 1 or (active and len({p.title for p in active}) == 1):
            return active[0], []
        if active:
            return None, [Problem(code="ambiguous_programme", severity="attention",
                                  params={"given": shown(given), "candidates": sorted(p.title for p in active)})]
        chosen = candidates[-1]  # the newest of the inactive ones
        return chosen, [Problem(code="inactive_programme", severity="warning",
                                params={"given": shown(given), "programme": chosen.title, "programme_id": chosen.id})]

    def resolve_all(self, name: str) -> tuple[Programme | None, list[Problem]]:
        """The programme for a chosen ``name`` and every problem worth telling about it."""
        exact = self._by_title.get(name)
        if exact:
            return self._pick(exact, name)
        candidates = self._by_norm.get(normalize_title(name), [])
        if candidates:
            programme, problems = self._pick(candidates, name)
            if programme is not None:
                problems.insert(0, Problem(code="programme_normalised", severity="info",
                                           params={"given": shown(name), "programme": programme.title}))
            return programme, problems
        target = self._aliases.get(normalize_title(name))
        if target is not None:
            found = self._by_id.get(target) if isinstance(target, int) else None
            problems: list[Problem] = []
            if found is None and not isinstance(target, int):
                matches = self._by_title.get(str(target)) or self._by_norm.get(normalize_title(str(target)), [])
                found, problems = self._pick(matches, name) if matches else (None, [])
            if found is not None:
                return found, [Problem(code="programme_alias", severity="info",
                                       params={"given": shown(name), "programme": found.title}), *problems]
            return None, problems or [Problem(code="alias_target_missing", severity="attention",
                                              params={"given": shown(name), "target": str(target)})]
        return None, [Problem(code="unknown_programme", severity="attention", params={"given": shown(name)})]

    def resolve(self, name: str) -> tuple[Programme | None, Problem | None]:
        """Like ``resolve_all``, with the first problem only (callers that need just the programme)."""
        programme, problems = self.resolve_all(name)
        return programme, problems[0] if problems else None


def chosen_programmes(answer: Answer, code: str | None, problems: list[Problem]) -> list[str]:
    raw = question(answer, code)
    if raw is None:
        return []
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list):
        problems.append(Problem(code="invalid_value", severity="warning",
                                params={"question": code, "field": "programmes"}))
        return []
    names: list[str] = []
    for item in raw:
        if not isinstance(item, (str, int, float)) or isinstance(item, bool):
            problems.append(Problem(code="invalid_value", severity="warning",
                                    params={"question": code, "field": "programmes"}))
            continue
        # Keep inner spacing: an inexact title must resolve by normalisation, and be noted as such.
        text = clean_text(item, collapse_spaces=False)[0]
        if text and text not in names:
            names.append(text)
    return names
