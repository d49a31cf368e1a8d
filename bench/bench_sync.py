#!/usr/bin/env python3
"""Sync N generated answers into the sandbox at the real rate limit; print requests and time next to the floor.

The floor (DESIGN.md): ``⌈look-up commands/50⌉ + ⌈write commands/50⌉`` requests, and the
time the leaky bucket (burst 50, then ``rate`` a second) allows for that many. The look-ups are
the read commands the run sent (``READ_METHODS``): since the CRM decides what exists, they are
the e-mail look-ups and the deal look-ups by external key and by contact, not only the
``⌈respondents/20⌉`` e-mail look-ups DESIGN.md counted before; ``bench_real_portal`` counts the same.

    python bench/bench_sync.py                    # 2,000 answers, 30% of respondents already in the CRM
    python bench/bench_sync.py --answers 2000 10000 --latency-ms 150 --command-latency-ms 5
"""
from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sandbox import Sandbox  # noqa: E402
from sync.plan.normalize import normalize_email  # noqa: E402

READ_METHODS = ("crm.duplicate.findbycomm", "crm.deal.list", "crm.contact.list", "crm.timeline.comment.list",
                "user.get", "lists.element.get", "crm.item.list")
WRITE_METHODS = ("crm.contact.add", "crm.contact.update", "crm.deal.add", "crm.deal.update",
                 "crm.timeline.comment.add", "lists.element.add", "lists.element.update", "crm.item.add",
                 "crm.item.update")


def seed_existing(box: Sandbox, fraction: float, seed: int) -> int:
    """Put ``fraction`` of the distinct respondents into the CRM before the sync (bulk, not via REST)."""
    import random
    emails = sorted({e for a in box.survey.admin.all_answers()
                     for e in [normalize_email(next((i["value"] for i in a["answers"] if i["code"] == "email"), None))[0]]
                     if e})
    chosen = random.Random(seed).sample(emails, int(len(emails) * fraction))
    box.bitrix.admin.add_contacts([{"NAME": "Existing", "EMAIL": [{"VALUE": e, "VALUE_TYPE": "WORK"}]} for e in chosen])
    return len(emails)


def time_floor(requests: int, rate: float, burst: int) -> float:
    return max(0, requests - burst) / rate


def bench(answers: int, *, existing: float, rate: float, burst: int, latency_ms: float, command_latency_ms: float,
          seed: int) -> dict:
    from sync.app import build_context, execute, options_from
    from sync.logs import setup_logging
    from sync.settings import load_settings

    setup_logging(level="WARNING")
    with Sandbox(portal="smart", answers=answers, seed=seed, include_samples=False, rate_limit=rate, burst=burst,
                 latency_ms=latency_ms, command_latency_ms=command_latency_ms) as box, \
            tempfile.TemporaryDirectory() as tmp:
        seed_existing(box, existing, seed)
        settings = load_settings(**box.settings_kwargs(), database_url=f"sqlite:///{tmp}/bench.sqlite3",
                                 field_mapping=str(ROOT / "examples" / "field_mapping.smart-processes.json"), rate_limit_per_s=rate,
                                 rate_limit_burst=burst, http_timeout_s=60)
        ctx = build_context(settings)
        box.bitrix.admin.reset_counters()
        t0 = time.monotonic()
        summary = execute(ctx, options_from(settings, command="sync"))
        wall = time.monotonic() - t0
        counters = box.bitrix.admin.counters()
    by_method = counters["commands_by_method"]
    writes = sum(by_method.get(m, 0) for m in WRITE_METHODS)
    lookups = sum(by_method.get(m, 0) for m in READ_METHODS)
    floor = math.ceil(lookups / 50) + math.ceil(writes / 50)
    requests = counters["requests"]
    return {"answers": summary.counts.get("answers_seen", answers), "requests": requests, "floor": floor,
            "per_1000": requests * 1000 / answers, "floor_per_1000": floor * 1000 / answers,
            "commands_per_request": counters["batch_commands"] / max(1, requests), "writes": writes,
            "wall_s": wall, "time_floor_s": time_floor(floor, rate, burst),
            "rejected": sum(counters["rejected"].values()), "outcome": summary.outcome}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--answers", type=int, nargs="+", default=[2000])
    parser.add_argument("--existing", type=float, default=0.3, help="share of respondents already in the CRM")
    parser.add_argument("--rate", type=float, default=2.0)
    parser.add_argument("--burst", type=int, default=50)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--command-latency-ms", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()
    header = (f"{'answers':>8} {'requests':>9} {'floor':>6} {'ratio':>6} {'req/1000':>9} {'floor/1000':>10} "
              f"{'cmd/req':>8} {'wall s':>8} {'floor s':>8} {'ratio':>6} {'503s':>5}")
    print(f"rate {args.rate}/s, burst {args.burst}, latency {args.latency_ms} ms/request + "
          f"{args.command_latency_ms} ms/command, {args.existing:.0%} of respondents already in the CRM")
    print(header)
    for n in args.answers:
        r = bench(n, existing=args.existing, rate=args.rate, burst=args.burst, latency_ms=args.latency_ms,
                  command_latency_ms=args.command_latency_ms, seed=args.seed)
        time_ratio = r["wall_s"] / r["time_floor_s"] if r["time_floor_s"] else float("nan")
        print(f"{r['answers']:>8} {r['requests']:>9} {r['floor']:>6} {r['requests'] / r['floor']:>6.2f} "
              f"{r['per_1000']:>9.1f} {r['floor_per_1000']:>10.1f} {r['commands_per_request']:>8.1f} "
              f"{r['wall_s']:>8.1f} {r['time_floor_s']:>8.1f} {time_ratio:>6.2f} {r['rejected']:>5}")


if __name__ == "__main__":
    main()
