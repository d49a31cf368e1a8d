"""``cli.py status``: what the store holds, as data (``collect_status``) and as lines for a person (``status_lines``).

Only the store is read: no webhook, no survey platform. The list of answers needing
attention is never cut silently: the text says how many more there are and how to
see them, and ``--json`` holds all of them unless a ``--limit`` is given.
"""
from __future__ import annotations

from typing import Any

from sync.report.status_texts import STATUS_TEXTS

DEFAULT_LIMIT = 100


def collect_status(ledger: Any, *, limit: int | None, reason: str | None = None,
                   poll_ids: set[int] | None = None) -> dict[str, Any]:
    """Watermarks, answers by state, the last runs and the answers needing attention (``limit=None``: all)."""
    polls = sorted(poll_ids) if poll_ids else None
    if reason is None:
        total = ledger.count_needing_attention(poll_ids=polls)
        rows = ledger.needing_attention(limit, poll_ids=polls)
    else:
        matching = ledger.needing_attention(None, poll_ids=polls, reason=reason)
        total = len(matching)
        rows = matching if limit is None else matching[:limit]
    unknown_polls = sorted(set(polls or ()) - {p.poll_id for p in ledger.poll_rows(poll_ids=polls)}) if polls else []
    return {
        "watermarks": {k: v.isoformat() for k, v in ledger.watermarks().items()},
        "answers_by_status": ledger.counts_by_status(),
        "last_runs": [{"run_id": r.run_id, "command": r.command, "started_at": r.started_at.isoformat(),
                       "finished_at": r.finished_at.isoformat() if r.finished_at else None,
                       "outcome": r.outcome, "counts": r.counts, "requests": r.requests} for r in ledger.last_runs(10)],
        "filters": {"reason": reason, "poll_ids": polls or []},
        "unknown_polls": unknown_polls,
        "needing_attention_total": total,
        "needing_attention": [{"answer_id": r.answer_id, "poll_id": r.poll_id, "status": r.status,
                               "first_seen_at": r.first_seen_at.isoformat() if r.first_seen_at else None,
                               "error": r.error, "problems": r.problems} for r in rows],
    }


def status_lines(data: dict[str, Any], language: str, *, show_all_hint: bool = True) -> list[str]:
    """The status as lines in ``language``; every answer listed, or a line saying how many are left out."""
    from sync.plan.models import Problem
    from sync.report.texts import outcome_text, problem_text
    t = STATUS_TEXTS[language]
    states = ", ".join(f"{t['state_' + k] if 'state_' + k in t else k} {v}"
                       for k, v in data["answers_by_status"].items() if v) or t["none_yet"]
    lines = _inbox_lines(data.get("inbox"), t)
    lines += [t["by_state"].format(states=states),
             t["watermarks"].format(marks=", ".join(f"{k} {v}" for k, v in sorted(data["watermarks"].items()))
                                    or t["none_yet"]),
             t["last_runs"]]
    for r in data["last_runs"]:
        counts = ", ".join(f"{k} {v}" for k, v in sorted((r["counts"] or {}).items()))
        lines.append(t["run_line"].format(started=r["started_at"], command=r["command"],
                                          outcome=outcome_text(r["outcome"], language), requests=r["requests"],
                                          counts=counts).rstrip())
    filters = data["filters"]
    where = _filter_text(filters, t)
    for poll_id in data["unknown_polls"]:
        lines.append(t["unknown_poll"].format(poll_id=poll_id))
    total, shown = data["needing_attention_total"], len(data["needing_attention"])
    if not total:
        lines.append(t["none_match" if where else "none_needing"].format(where=where))
        return lines
    lines.append(t["needing"].format(total=total, where=where))
    for r in data["needing_attention"]:
        reasons = [problem_text(Problem.model_validate(p), language)
                   for p in (r["problems"] or []) if p.get("severity") == "attention"]
        if r["error"]:
            reasons.append(r["error"])
        lines.append(t["answer_line"].format(answer_id=r["answer_id"], poll_id=r["poll_id"],
                                             status=t.get("state_" + r["status"], r["status"]),
                                             reasons="; ".join(reasons) or "—"))
    if shown < total:
        lines.append(t["more"].format(more=total - shown) + (t["more_hint"] if show_all_hint else ""))
    return lines


def _inbox_lines(inbox: dict[str, Any] | None, t: dict[str, str]) -> list[str]:
    """What the intake received and refused; nothing when this store never had an intake."""
    if not inbox or not (inbox["received_total"] or inbox["refused_total"]):
        return []
    lines = [t["inbox"].format(today=inbox["received_today"], total=inbox["received_total"],
                               answers=inbox["answers"], polls=inbox["polls"], redeliveries=inbox["redeliveries"],
                               last=inbox["last_packet_at"] or "—")]
    if inbox["refused_total"]:
        reasons = ", ".join(f"{reason} {n}" for reason, n in inbox["refused_by_reason"].items())
        lines.append(t["inbox_refused"].format(total=inbox["refused_total"], reasons=reasons))
    return lines


def _filter_text(filters: dict[str, Any], t: dict[str, str]) -> str:
    parts = []
    if filters["reason"]:
        parts.append(f"--reason {filters['reason']}")
    parts += [f"--poll {p}" for p in filters["poll_ids"]]
    return t["filtered"].format(filters=" ".join(parts)) if parts else ""


__all__ = ["DEFAULT_LIMIT", "collect_status", "status_lines"]
