#!/usr/bin/env python3
"""The intake's throughput and latency: `cli.py intake` on a free port, deliveries over real HTTP.

    python bench/bench_intake.py [--deliveries 3000] [--concurrency 8]

Runs against a fresh SQLite file and, when it answers, a fresh schema on
postgresql://postgres@127.0.0.1:5432/test (BENCH_PG_URL overrides). Each delivery is
a distinct postAnswer (the first sample answer with a new answer_id), so every one is
a new row committed before its reply. Prints deliveries per second and p50/p99
latency per backend. Target (SQLite): ≥ 300 deliveries/s with p99 < 50 ms.

The client is ``http.client`` with keep-alive, which sends a request's headers and body
in ONE write. httpx writes them separately, and on Linux Nagle's algorithm on the
client plus delayed ACK on the server then add ~40 ms to every request whatever the
server does (measured: 48 ms with httpx, 3.7 ms with one write, same server) — a
client artefact that would hide the intake's own figures.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from storage.testing import fresh_database_url  # noqa: E402
from tests.intake.conftest import IntakeProcess  # noqa: E402

PG_URL = os.environ.get("BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


def packet(answer_id: int) -> bytes:
    body = json.loads((ROOT / "sandbox/sample_data/real/answers.json").read_text(encoding="utf-8"))["postAnswer"][0]
    body["header_data"]["answer_id"] = answer_id
    return json.dumps(body, ensure_ascii=False).encode()


def run(database_url: str, deliveries: int, concurrency: int) -> dict:
    server = IntakeProcess(database_url)
    try:
        server.wait_healthy()
        bodies = [packet(10_000_000 + i) for i in range(deliveries)]
        latencies: list[float] = []
        failures = []
        lock = threading.Lock()
        next_index = iter(range(deliveries))

        host_port, _, path = server.url.removeprefix("http://").partition("/")
        host, _, port = host_port.rpartition(":")

        def worker() -> None:
            conn = http.client.HTTPConnection(host, int(port), timeout=30)
            conn.request("GET", f"/{path}/health")  # connect before the clock starts
            conn.getresponse().read()
            start_gate.wait()
            try:
                while True:
                    with lock:
                        i = next(next_index, None)
                    if i is None:
                        return
                    t0 = time.perf_counter()
                    conn.request("POST", f"/{path}/postAnswer", body=bodies[i],
                                 headers={"Content-Type": "application/json"})
                    reply = conn.getresponse()
                    text = reply.read()
                    elapsed = time.perf_counter() - t0
                    ok = reply.status == 200 and json.loads(text).get("is_successful") is True
                    with lock:
                        latencies.append(elapsed)
                        if not ok:
                            failures.append(text[:200])
            finally:
                conn.close()

        start_gate = threading.Barrier(concurrency + 1)
        threads = [threading.Thread(target=worker) for _ in range(concurrency)]
        for t in threads:
            t.start()
        start_gate.wait()
        t0 = time.perf_counter()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
    finally:
        server.stop()
    latencies.sort()
    return {"deliveries": len(latencies), "failures": len(failures), "per_s": len(latencies) / wall,
            "p50_ms": statistics.median(latencies) * 1000,
            "p99_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000,
            "max_ms": latencies[-1] * 1000}


def pg_reachable() -> bool:
    from storage.db import make_engine
    try:
        make_engine(PG_URL).dispose()
    except Exception:  # noqa: BLE001 - no Postgres here: that backend is skipped
        return False
    return True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--deliveries", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    backends = [("sqlite", "sqlite:///unused.sqlite3")]
    if pg_reachable():
        backends.append(("postgres", PG_URL))
    else:
        print(f"postgres: {PG_URL} not reachable, skipped")
    met = True
    for name, base in backends:
        with fresh_database_url(base) as url:
            r = run(url, args.deliveries, args.concurrency)
        print(f"{name:<8} {r['deliveries']} deliveries, {args.concurrency} concurrent: {r['per_s']:.0f}/s  "
              f"p50 {r['p50_ms']:.1f} ms  p99 {r['p99_ms']:.1f} ms  max {r['max_ms']:.1f} ms  "
              f"failures {r['failures']}")
        if name == "sqlite":
            met = r["per_s"] >= 300 and r["p99_ms"] < 50 and r["failures"] == 0
            print(f"sqlite target (>= 300/s, p99 < 50 ms): {'met' if met else 'NOT met'}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
