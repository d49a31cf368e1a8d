#!/usr/bin/env python3
"""Intake → deal freshness: how long after the portal delivers an answer its deal carries it in Bitrix24.

Everything as in production, in one process: the intake's app (``intake.app``) stores the
portal's postPoll/postAnswer packets in the inbox of a SQLite store; the job runs under the
built-in scheduler (``jobs.scheduler.run_schedule`` with ``ScheduledRun``, ``SURVEY_SOURCE=intake``)
every ``--every`` seconds against the Bitrix24 emulator on the real portal (standard plan: 2
requests/s, bucket 50, 150 ms a request). A feeder delivers answers at a steady ``--rate`` for
``--duration`` seconds, each a new respondent (distinct e-mail) choosing one or two programmes;
a watcher reads the emulator's timeline every 0.25 s and notes when each answer's summary
(``[#answer_id:version]``, written on its deal in the same batch as the deal) first appears.

Freshness of an answer = that moment − the moment the intake acknowledged its delivery.
Target (issue 14): p95 <= the schedule interval + 15 s.

    python bench/bench_freshness.py                      # every 30 s, 2 answers/s for 120 s
    python bench/bench_freshness.py --every 60 --rate 5 --duration 300
"""
from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SAMPLES = ROOT / "sandbox" / "sample_data" / "real"
BASE = "/api/v1/integration"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--every", type=int, default=30, help="schedule interval, seconds (>= 10)")
    parser.add_argument("--rate", type=float, default=2.0, help="answers delivered per second")
    parser.add_argument("--duration", type=float, default=120.0, help="seconds of deliveries")
    parser.add_argument("--latency-ms", type=float, default=150.0)
    args = parser.parse_args()

    from fastapi.testclient import TestClient
    from loguru import logger

    from intake.app import create_app
    from intake.server import make_intake_engine
    from jobs.cli_ops import ScheduledRun
    from jobs.scheduler import run_schedule
    from sandbox.bitrix.server import BitrixEmulator
    from sync.crm.deal_lookups import SUMMARY_MARKER
    from sync.logs import setup_logging
    from sync.settings import load_settings

    setup_logging(level="WARNING")
    polls = json.loads((SAMPLES / "polls.json").read_text(encoding="utf-8"))["postPoll"]
    template = json.loads((SAMPLES / "answers.json").read_text(encoding="utf-8"))["postAnswer"][0]
    programmes = [["Цифровой юрист"], ["Античность"], ["Цифровой юрист", "Античность"]]
    runs: list = []
    logger.add(lambda m: runs.append(m.record["message"]) if "requests: Bitrix24" in m.record["message"] else None,
               level="INFO", filter="sync.app")

    with BitrixEmulator(portal="real", user_id=169, scopes=("crm", "user", "lists"), profile="standard",
                        latency_ms=args.latency_ms) as portal, tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(survey_source="intake", database_url=f"sqlite:///{tmp}/store.sqlite3",
                                 bitrix24_webhook_url=portal.webhook_url, field_mapping=str(ROOT / "field_mapping.json"),
                                 schedule_every_s=args.every, health_file=str(Path(tmp) / "heartbeat.json"))
        engine = make_intake_engine(settings.database_url)
        delivered: dict[int, float] = {}
        seen: dict[int, float] = {}
        stop = threading.Event()
        with TestClient(create_app(settings, engine)) as intake:
            for poll in polls:
                assert intake.post(f"{BASE}/postPoll", json=poll).status_code == 200
            scheduler = threading.Thread(target=run_schedule, daemon=True, name="schedule", kwargs=dict(
                settings=settings, every_s=args.every, run_once=ScheduledRun(settings, stop=stop), stop_event=stop,
                health_file=str(Path(tmp) / "heartbeat.json")))
            scheduler.start()

            def watch() -> None:
                while not stop.is_set():
                    now = time.monotonic()
                    for comment in portal.admin.timeline_comments():
                        for answer_id, _ in SUMMARY_MARKER.findall(str(comment.get("COMMENT", ""))):
                            seen.setdefault(int(answer_id), now)
                    time.sleep(0.25)

            watcher = threading.Thread(target=watch, daemon=True, name="watch")
            watcher.start()
            t0 = time.monotonic()
            n = int(args.duration * args.rate)
            for i in range(n):
                time.sleep(max(0.0, t0 + i / args.rate - time.monotonic()))
                packet = copy.deepcopy(template)
                answer_id = 900_000_000 + i
                packet["header_data"]["answer_id"] = answer_id
                packet["data"]["email"] = f"fresh.{i}@example.ru"
                packet["data"]["educational_program_1"] = programmes[i % len(programmes)]
                reply = intake.post(f"{BASE}/postAnswer", json=packet)
                assert reply.status_code == 200 and reply.json()["is_successful"], reply.text
                delivered[answer_id] = time.monotonic()
            deadline = time.monotonic() + 2 * args.every + 60
            while len(seen.keys() & delivered.keys()) < len(delivered) and time.monotonic() < deadline:
                time.sleep(0.5)
            stop.set()
            scheduler.join(timeout=120)
            watcher.join(timeout=5)
        engine.dispose()

    fresh = [seen[a] - t for a, t in delivered.items() if a in seen]
    missing = len(delivered) - len(fresh)
    target = args.every + 15
    print(f"intake → deal, real portal, schedule every {args.every}s, {args.rate:g} answers/s for "
          f"{args.duration:g}s ({len(delivered)} answers), Bitrix24 2/s + bucket 50, {args.latency_ms:g} ms a request")
    print(f"runs: {len(runs)}; " + "; ".join(r.split("requests: ")[-1] for r in runs[:3]) + (" ..." if len(runs) > 3 else ""))
    if fresh:
        print(f"freshness s: p50 {statistics.median(fresh):.1f}  p95 {percentile(fresh, 0.95):.1f}  "
              f"max {max(fresh):.1f}  (target p95 <= {target}s: {'met' if percentile(fresh, 0.95) <= target else 'MISSED'})")
    print(f"answers never seen on a deal: {missing}")


if __name__ == "__main__":
    main()
