#!/usr/bin/env python3
"""Idle and small syncs on top of a long history: requests and time must not grow with it.

Seeds the ledger with HISTORY answers already pushed (and the CRM with their contacts and
deals), then, at the real rate limit and latency, measures:
  1. an idle sync (nothing new),
  2. a sync of NEW fresh answers.

    python bench/bench_incremental.py                 # 100,000 synced, then idle, then 50 new
    python bench/bench_incremental.py --history 20000 # quicker
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sandbox import Sandbox  # noqa: E402


def seed_history(box: Sandbox, ctx) -> int:
    """Put every answer of the sandbox into the ledger as pushed, with its deal in the CRM (no REST)."""
    from storage.ledger import PushedResult, content_hash
    from sync.source.pull import POLLS_WATERMARK, answers_watermark

    ledger = ctx.ledger
    polls = box.survey.admin.polls()
    ledger.stage_polls(polls=polls, run_id="history",
                       watermark=(POLLS_WATERMARK, max(datetime.fromisoformat(p["updated_at"]) for p in polls)))
    for i, poll in enumerate(polls):
        item = ctx.bitrix.call("crm.item.add", {"entityTypeId": 1036, "fields": {
            "title": poll["poll_name"], "ufCrm6PollId": poll["poll_id"], "assignedById": 17}}).result["item"]["id"]
        ledger.mark_poll_pushed(poll_id=poll["poll_id"], item_id=item, assigned_by_id=17,
                                pushed_hash=ledger.poll_rows(poll_ids=[poll["poll_id"]])[0].content_hash)
    answers = box.survey.admin.all_answers()
    deal_ids = box.bitrix.admin.add_deals([{"TITLE": f"history {a['answer_id']}", "ORIGINATOR_ID": "survey-platform",
                                            "ORIGIN_ID": f"{a['answer_id']}:0", "CATEGORY_ID": "4"} for a in answers])
    for start in range(0, len(answers), 5000):
        chunk = answers[start:start + 5000]
        for poll_id in {a["poll_id"] for a in chunk}:
            mine = [a for a in chunk if a["poll_id"] == poll_id]
            newest = max(datetime.fromisoformat(a["updated_at"]) for a in mine)
            ledger.stage_answers(answers=mine, watermark=(answers_watermark(poll_id), newest), run_id="history")
        ledger.mark_pushed(results=[PushedResult(answer_id=a["answer_id"], contact_id=None,
                                                 deal_ids={"0": deal_ids[start + j]}, pushed_hash=content_hash(a),
                                                 problems=[]) for j, a in enumerate(chunk)])
    return len(answers)


def add_new(box: Sandbox, n: int) -> None:
    admin = box.survey.admin
    template = admin.all_answers()[0]
    now = admin.now().isoformat()
    for i in range(n):
        admin.add_answer(dict(template, answer_id=980000000 + i, created_at=now, updated_at=now, answers=[
            {"code": "email", "value": f"newcomer{i}@example.org"}, {"code": "first_name", "value": "Новый"},
            {"code": "programs", "value": ["Экономика", "Дизайн"][: 1 + i % 2]}]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--history", type=int, default=100_000)
    parser.add_argument("--new", type=int, default=50)
    parser.add_argument("--rate", type=float, default=2.0)
    parser.add_argument("--latency-ms", type=float, default=150.0)
    parser.add_argument("--command-latency-ms", type=float, default=5.0)
    args = parser.parse_args()

    from sync.app import build_context, execute, options_from
    from sync.logs import setup_logging
    from sync.settings import load_settings

    setup_logging(level="WARNING")
    with Sandbox(portal="smart", answers=args.history, seed=5, include_samples=False, rate_limit=None) as box, \
            tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(**box.settings_kwargs(), database_url=f"sqlite:///{tmp}/bench.sqlite3",
                                 field_mapping=str(ROOT / "examples" / "field_mapping.smart-processes.json"), rate_limit_per_s=args.rate)
        ctx = build_context(settings)
        t0 = time.monotonic()
        seeded = seed_history(box, ctx)
        print(f"history: {seeded} answers already synced (seeded in {time.monotonic() - t0:.1f}s)")
        box.bitrix.admin.set_rate_limit(args.rate, 50)
        box.bitrix.latency_ms, box.bitrix.command_latency_ms = args.latency_ms, args.command_latency_ms
        box.survey.admin.configure(latency_ms=args.latency_ms)
        box.survey.admin.set_clock(datetime.now(timezone.utc))
        execute(ctx, options_from(settings, command="sync"))  # whatever the history's last minutes left
        print(f"rate {args.rate}/s, latency {args.latency_ms} ms/request + {args.command_latency_ms} ms/command")
        print(f"{'sync':<16} {'bitrix24 req':>12} {'survey req':>10} {'answers read':>12} {'pushed':>7} {'wall s':>7}")
        for label, new in (("idle", 0), (f"{args.new} new", args.new), ("idle again", 0)):
            if new:
                add_new(box, new)
            box.bitrix.admin.reset_counters()
            box.survey.admin.reset_counters()
            t0 = time.monotonic()
            summary = execute(ctx, options_from(settings, command="sync"))
            wall = time.monotonic() - t0
            print(f"{label:<16} {box.bitrix.admin.counters()['requests']:>12} "
                  f"{box.survey.admin.counters()['total']:>10} {summary.counts.get('answers_seen', 0):>12} "
                  f"{summary.counts.get('pushed', 0):>7} {wall:>7.1f}")
        print("target: idle sync <= 1 request to Bitrix24 (the webhook check); neither figure grows with the history")


if __name__ == "__main__":
    main()
