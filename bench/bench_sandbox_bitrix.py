"""How many requests a second the Bitrix24 emulator serves with its rate limit off.

    python bench/bench_sandbox_bitrix.py --seconds 5 --clients 1 4

For each client count, threads with their own ``requests.Session`` send ``batch`` calls of
50 ``crm.deal.add`` commands (and, separately, single ``crm.deal.list`` look-ups by
``ORIGINATOR_ID``/``ORIGIN_ID`` against the deals created) for ``--seconds``, then the
script prints requests/s and commands/s as JSON lines. The emulator runs in-process, so
client and server share the machine's cores: the numbers are a floor.
"""
from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sandbox.bitrix import BitrixEmulator  # noqa: E402


def _batch_of_adds(worker: int, n: int) -> dict:
    return {"halt": 0, "cmd": {
        f"c{i}": (f"crm.deal.add?fields[TITLE]=bench&fields[ORIGINATOR_ID]=bench"
                  f"&fields[ORIGIN_ID]={worker}-{n}-{i}&fields[CATEGORY_ID]=4&fields[CONTACT_ID]=501")
        for i in range(50)}}


def run(kind: str, clients: int, seconds: float, emulator: BitrixEmulator) -> dict:
    counts = [0] * clients
    errors = [0] * clients
    deadline = time.perf_counter() + seconds

    def worker(w: int) -> None:
        with requests.Session() as http:
            n = 0
            while time.perf_counter() < deadline:
                if kind == "batch50_deal_add":
                    reply = http.post(emulator.webhook_url + "batch", json=_batch_of_adds(w, n))
                    ok = reply.status_code == 200 and not reply.json()["result"]["result_error"]
                else:
                    reply = http.post(emulator.webhook_url + "crm.deal.list", json={
                        "filter": {"ORIGINATOR_ID": "bench", "ORIGIN_ID": f"0-{n % 10}-{n % 50}"}, "select": ["ID"]})
                    ok = reply.status_code == 200
                counts[w] += 1
                errors[w] += 0 if ok else 1
                n += 1

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    requests_done = sum(counts)
    per_request = 50 if kind == "batch50_deal_add" else 1
    return {"kind": kind, "clients": clients, "seconds": round(elapsed, 2), "requests": requests_done,
            "errors": sum(errors), "requests_per_s": round(requests_done / elapsed, 1),
            "commands_per_s": round(requests_done * per_request / elapsed, 1),
            "deals_in_crm": len(emulator.crm.deals.records)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4])
    args = parser.parse_args(argv)
    with BitrixEmulator(rate_limit=None, operating_limit_s=None) as emulator:
        for clients in args.clients:
            for kind in ("batch50_deal_add", "single_deal_lookup"):
                print(json.dumps(run(kind, clients, args.seconds, emulator)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
