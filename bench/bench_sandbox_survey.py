"""How fast the survey-platform emulator starts and serves a full listing, and in how much memory.

    python bench/bench_sandbox_survey.py --answers 100000

Starts the emulator in-process (rate limit off), lists every poll's answers page by page
(limit 500) through real HTTP with ``requests``, checks that every answer was seen once,
and prints startup seconds, listing seconds, answers seen and peak RSS in MB.
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import psutil
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sandbox.survey import SurveyEmulator  # noqa: E402


def peak_rss_mb() -> float:
    """This process's peak resident set so far (emulator and client together: an upper bound)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def list_all(session: requests.Session, base_url: str, *, limit: int) -> tuple[int, int, int]:
    """(answers seen, distinct answer ids, requests made) over every poll."""
    seen, ids, requests_made = 0, set(), 0
    response = session.get(f"{base_url}/polls", params={"limit": 200}, timeout=30)
    requests_made += 1
    response.raise_for_status()
    for poll in response.json()["items"]:
        cursor = None
        while True:
            params = {"limit": limit, **({"cursor": cursor} if cursor else {})}
            response = session.get(f"{base_url}/polls/{poll['poll_id']}/answers", params=params, timeout=30)
            requests_made += 1
            response.raise_for_status()
            page = response.json()
            seen += len(page["items"])
            ids.update(item["answer_id"] for item in page["items"])
            cursor = page["next_cursor"]
            if cursor is None:
                break
    return seen, len(ids), requests_made


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--answers", type=int, default=100_000, help="generated answers (plus the 10 samples)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, default=500, help="page size")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)

    baseline_mb = psutil.Process().memory_info().rss / 2 ** 20
    started = time.perf_counter()
    emulator = SurveyEmulator(answers=args.answers, seed=args.seed, rate_limit_per_s=0).start()
    startup_s = time.perf_counter() - started
    try:
        expected = emulator.store.count_answers()
        with requests.Session() as session:
            session.headers["Authorization"] = f"Bearer {emulator.token}"
            started = time.perf_counter()
            seen, distinct, requests_made = list_all(session, emulator.base_url, limit=args.limit)
            listing_s = time.perf_counter() - started
    finally:
        emulator.stop()
    figures = {"answers_expected": expected, "answers_seen": seen, "distinct_answers": distinct,
               "requests": requests_made, "startup_s": round(startup_s, 2), "listing_s": round(listing_s, 2),
               "rss_before_start_mb": round(baseline_mb, 1), "peak_rss_mb": round(peak_rss_mb(), 1)}
    if args.json:
        print(json.dumps(figures))
    else:
        for name, value in figures.items():
            print(f"{name:20} {value}")
    if seen != expected or distinct != expected:
        print(f"FAIL: saw {seen} answers ({distinct} distinct), expected {expected}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
