"""Serve the Bitrix24 REST emulator until Ctrl-C: ``python -m sandbox.bitrix --port 8082``."""
from __future__ import annotations

import argparse
import sys

from sandbox.bitrix.server import BitrixEmulator
from sandbox.httpbase import serve_until_stopped
from sandbox.faults import FaultInjector


def _rate(text: str) -> tuple[str, float]:
    kind, _, value = text.partition("=")
    return kind, float(value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox.bitrix", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8082)
    parser.add_argument("--user-id", type=int, default=1)
    parser.add_argument("--secret", default="sandbox-secret")
    parser.add_argument("--portal", help="portal description (default: sandbox/portal.json)")
    parser.add_argument("--rate-limit", type=float, default=2.0, help="leaky bucket drain per second; 0 disables")
    parser.add_argument("--burst", type=int, default=50, help="leaky bucket size")
    parser.add_argument("--operating-limit", type=float, default=480.0, help="seconds per method per 10 min; 0 off")
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--command-latency-ms", type=float, default=0.0, help="per batch command")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fault", type=_rate, action="append", default=[], metavar="KIND=RATE",
                        help="fault rate, e.g. --fault http_500=0.05 (repeatable)")
    args = parser.parse_args(argv)
    emulator = BitrixEmulator(host=args.host, port=args.port, portal_path=args.portal, user_id=args.user_id,
                              secret=args.secret, rate_limit=args.rate_limit or None, burst=args.burst,
                              operating_limit_s=args.operating_limit or None, latency_ms=args.latency_ms,
                              command_latency_ms=args.command_latency_ms,
                              faults=FaultInjector(seed=args.seed, rates=dict(args.fault))).start()
    print(f"bitrix24 emulator: webhook {emulator.webhook_url} (admin: {emulator.base_url}/_admin/); "
          "Ctrl-C to stop", file=sys.stderr)
    serve_until_stopped(emulator.stop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
