#!/usr/bin/env python3
"""10,000 answers into the real portal's shape with operating time charged: requests and wall time beside the floors.

The sandbox serves the office's portal (``Sandbox(portal="real")``: poll forms and programmes in
universal lists, one open deal per contact and programme reused, the whole answer on each deal
as a timeline comment) and charges every command its method's operating time
(``DEFAULT_OPERATING_COSTS``, unscaled: 0.1 s a contact/deal add, 0.05 s a comment, ...) against
the docs' 480 s per method per sliding ten minutes. The job runs with its default settings
(``field_mapping.json``, batch 50, 3 at once, OPERATING_MARGIN 0.98) and the plan's rate.

Scaling, so a run that needs 20+ minutes of portal time takes a few: the emulator's clock and
the job's Bitrix24 client clock run ``--speedup`` times faster than real time (the emulator
takes ``clock``/``sleep``; the client ``clock``/``wall_clock``/``sleep``; the survey emulator's
latency is divided by ``--speedup``, as it sleeps on the real clock). The leaky bucket,
the operating window, ``operating_reset_at``, the 60 s cut-off and the latencies all run on
that clock, so the run is the same as a real one, seen ``--speedup`` times faster. Costs and
limits are not scaled. What does not scale is this process's CPU: its seconds count
``--speedup`` times in the figures (a handicap, not a help), which is why the speed-up stays small.

Floors (each printed):
* requests: ``⌈look-up commands/50⌉ + ⌈write commands/50⌉``, the look-ups now including the
  deal look-ups (by external key and by contact) and the summaries already on found deals;
* bucket: ``(requests floor - burst) / rate``;
* operating: for each method, the earliest a client could finish its commands if it sent only
  that method, 50 a batch, as fast as the bucket allows, and the portal refused nothing: each
  call runs while the method's window holds at most the limit, and a full window frees its
  oldest minute at first call + 10 minutes (the emulator's rules). The largest is the floor.

Targets (issue 14): requests <= 1.10 x floor, wall <= 1.10 x max(bucket, operating floor),
0 OPERATION_TIME_LIMIT replies, 0 aborted runs; on the standard and the Enterprise plan.

    python bench/bench_real_portal.py                       # 10,000 answers, standard then enterprise
    python bench/bench_real_portal.py --answers 3000 --profiles enterprise --speedup 4
"""
from __future__ import annotations

import argparse
import math
import random
import sys
import tempfile
import time
from collections import OrderedDict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sandbox import Sandbox  # noqa: E402
from sandbox.bitrix.limits import PROFILES  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_sync import READ_METHODS, WRITE_METHODS  # noqa: E402  (one count of look-ups and writes)

WINDOW_S, MINUTE_S = 600.0, 60.0


class FastClock:
    """Real time sped up ``k`` times: unix and monotonic clocks, and a sleep that waits 1/k of what it is asked."""

    def __init__(self, k: float) -> None:
        self.k = k
        self._unix0, self._mono0 = time.time(), time.monotonic()

    def time(self) -> float:
        return self._unix0 + (time.time() - self._unix0) * self.k

    def monotonic(self) -> float:
        return self._mono0 + (time.monotonic() - self._mono0) * self.k

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds / self.k)


def operating_floor(commands: int, cost_s: float, limit_s: float, rate: float, burst: int) -> float:
    """Earliest finish of ``commands`` calls of one method costing ``cost_s`` each (see the module docstring)."""
    if commands <= 0 or cost_s <= 0:
        return 0.0
    t, level, last, left = 0.0, 0.0, 0.0, commands
    window: OrderedDict[int, list[float]] = OrderedDict()   # minute -> [seconds, first call]
    while left > 0:
        while window and next(iter(window.values()))[1] + WINDOW_S <= t:
            window.popitem(last=False)
        used = sum(b[0] for b in window.values())
        if used > limit_s:                                   # blocked until the oldest minute drops out
            t = next(iter(window.values()))[1] + WINDOW_S
            continue
        level = max(0.0, level - (t - last) * rate)
        last = t
        if level + 1 > burst:                                # the bucket's next free slot
            t += (level + 1 - burst) / rate
            continue
        level += 1
        spent = 0.0
        for _ in range(min(50, left)):                       # each command checked before it runs
            if used + spent > limit_s:
                break
            spent += cost_s
            left -= 1
        bucket = window.setdefault(int(t // MINUTE_S), [0.0, t])
        bucket[0] += spent
    return t


def seed_existing(box: Sandbox, fraction: float, seed: int) -> int:
    """Put ``fraction`` of the distinct respondents into the CRM before the sync, as contacts (not via REST)."""
    from sync.mapping import load_mapping
    from sync.plan.normalize import normalize_email
    code = load_mapping(ROOT / "field_mapping.json").questions.email
    emails = sorted({e for a in box.survey.admin.all_answers()
                     for e in [normalize_email(next((i["value"] for i in a["answers"] if i["code"] == code), None))[0]]
                     if e})
    chosen = random.Random(seed).sample(emails, int(len(emails) * fraction))
    box.bitrix.admin.add_contacts([{"NAME": "Existing", "EMAIL": [{"VALUE": e, "VALUE_TYPE": "WORK"}]} for e in chosen])
    return len(emails)


def bench(answers: int, *, profile: str, speedup: float, existing: float, latency_ms: float,
          command_latency_ms: float, seed: int, operating_margin: float | None = None) -> dict:
    from sync.app import build_context, execute, options_from
    from sync.clients.bitrix24 import Bitrix24Client
    from sync.logs import setup_logging
    from sync.settings import load_settings

    setup_logging(level="WARNING")
    plan = PROFILES[profile]
    clock = FastClock(speedup)
    with Sandbox(portal="real", answers=answers, seed=seed, include_samples=False, bitrix_profile=profile,
                 latency_ms=latency_ms, command_latency_ms=command_latency_ms,
                 bitrix_kwargs={"operating_costs": True, "clock": clock.time, "sleep": clock.sleep}) as box, \
            tempfile.TemporaryDirectory() as tmp:
        # The survey emulator sleeps its latency on the real clock: give it the fast clock's
        # 150 ms, as the Bitrix24 emulator has, or its pages would cost ``speedup`` times more.
        box.survey.latency_ms = latency_ms / speedup
        distinct = seed_existing(box, existing, seed)
        settings = load_settings(**box.settings_kwargs(), database_url=f"sqlite:///{tmp}/bench.sqlite3",
                                 field_mapping=str(ROOT / "field_mapping.json"), rate_limit_per_s=plan.rate,
                                 rate_limit_burst=plan.burst,
                                 **({"operating_margin": operating_margin} if operating_margin else {}))
        ctx = build_context(settings)
        made = ctx.bitrix_client()   # the client the job would build, rebuilt on the fast clock
        ctx.__dict__["bitrix"] = Bitrix24Client(
            settings.bitrix24_webhook_url, timeout=made.timeout, rate_per_s=settings.rate_limit_per_s,
            burst=settings.rate_limit_burst, max_attempts=settings.max_attempts, max_wait_s=made.policy.max_wait_s,
            operating_limit_s=made.pacer.limit_s, operating_margin=made.pacer.margin, clock=clock.monotonic,
            sleep=clock.sleep, wall_clock=clock.time, allow_insecure_http=True)
        box.bitrix.admin.reset_counters()
        t0, cpu0 = clock.monotonic(), time.process_time()
        try:
            summary = execute(ctx, options_from(settings, command="sync"))
            outcome, aborted = summary.outcome, 0
        except Exception as exc:  # an aborted run is a figure of this benchmark, not its end
            summary, outcome, aborted = None, f"aborted: {exc}"[:120], 1
        wall = clock.monotonic() - t0
        cpu = time.process_time() - cpu0
        counters, limits = box.bitrix.admin.counters(), box.bitrix.admin.limit_counters()
        stats = ctx.bitrix.stats
    by_method = counters["commands_by_method"]
    reads = sum(n for m, n in by_method.items() if m in READ_METHODS)
    writes = sum(n for m, n in by_method.items() if m in WRITE_METHODS)
    floor = math.ceil(reads / 50) + math.ceil(writes / 50)
    bucket_floor = max(0, floor - plan.burst) / plan.rate
    seconds = limits["operating_s_by_method"]
    per_method = {m: operating_floor(by_method.get(m, 0), seconds[m] / by_method[m], plan.operating_limit_s,
                                     plan.rate, plan.burst)
                  for m in seconds if by_method.get(m)}
    busiest = max(per_method, key=per_method.get)
    counts = summary.counts if summary else {}
    return {"profile": profile, "answers": answers, "distinct": distinct, "requests": counters["requests"],
            "reads": reads, "writes": writes, "floor": floor, "bucket_floor_s": bucket_floor,
            "operating_floor_s": per_method[busiest], "busiest": busiest, "busiest_s": seconds[busiest],
            "wall_s": wall, "cpu_s": cpu, "operating_429": limits["operating_429"],
            "blocked_commands": limits["operating_blocked_commands"], "cut_off": limits["cut_off"],
            "rejected_503": sum(counters["rejected"].values()), "aborted": aborted, "outcome": outcome,
            "paced": stats.paced, "paced_s": stats.paced_s, "slowest_batch_s": stats.slowest_batch_s,
            "pushed": counts.get("pushed", 0), "failed": counts.get("failed", 0),
            "unknown": counts.get("unknown", 0), "attention": counts.get("needs_attention", 0)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--answers", type=int, default=10_000)
    parser.add_argument("--profiles", nargs="+", default=["standard", "enterprise"], choices=sorted(PROFILES))
    parser.add_argument("--speedup", type=float, default=4.0, help="emulator and client clocks run this much faster")
    parser.add_argument("--existing", type=float, default=0.3, help="share of respondents already in the CRM")
    parser.add_argument("--latency-ms", type=float, default=150.0, help="per request, on the fast clock")
    parser.add_argument("--command-latency-ms", type=float, default=5.0, help="per batch command, on the fast clock")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--operating-margin", type=float, default=None,
                        help="OPERATING_MARGIN of the job (default: the setting's default, 0.98)")
    args = parser.parse_args()
    print(f"{args.answers} answers, real portal (field_mapping.json, deal reuse 'open'), {args.existing:.0%} of "
          f"respondents already in the CRM; operating costs DEFAULT_OPERATING_COSTS unscaled, limit 480 s/10 min; "
          f"latency {args.latency_ms} ms + {args.command_latency_ms} ms/command; clocks x{args.speedup:g} "
          f"(times below are portal seconds); OPERATING_MARGIN {args.operating_margin or 'default (0.98)'}")
    for profile in args.profiles:
        t0 = time.monotonic()
        r = bench(args.answers, profile=profile, speedup=args.speedup, existing=args.existing,
                  latency_ms=args.latency_ms, command_latency_ms=args.command_latency_ms, seed=args.seed,
                  operating_margin=args.operating_margin)
        time_floor = max(r["bucket_floor_s"], r["operating_floor_s"])
        print(f"\n[{profile}] outcome {r['outcome']}; pushed {r['pushed']}, needing attention {r['attention']}, "
              f"failed {r['failed']}, unknown {r['unknown']}  (real time {time.monotonic() - t0:.0f}s, "
              f"CPU {r['cpu_s']:.0f}s)")
        print(f"  requests {r['requests']} vs floor {r['floor']} (⌈{r['reads']} look-ups/50⌉ + "
              f"⌈{r['writes']} writes/50⌉): {r['requests'] / r['floor']:.3f}x  [target <= 1.10]")
        print(f"  wall {r['wall_s']:.0f}s vs max(bucket floor {r['bucket_floor_s']:.0f}s, operating floor "
              f"{r['operating_floor_s']:.0f}s for {r['busiest']}'s {r['busiest_s']:.0f}s): "
              + (f"{r['wall_s'] / time_floor:.3f}x  [target <= 1.10]" if time_floor else "no floor (fits the burst)"))
        print(f"  OPERATION_TIME_LIMIT: {r['operating_429']} replies, {r['blocked_commands']} commands  [target 0]; "
              f"cut off {r['cut_off']}; 503 {r['rejected_503']}; aborted runs {r['aborted']}  [target 0]")
        print(f"  client: paced {r['paced']} times, {r['paced_s']:.0f}s; slowest batch {r['slowest_batch_s']:.2f}s")


if __name__ == "__main__":
    main()
