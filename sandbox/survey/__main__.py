"""Serve the survey-platform emulator until Ctrl-C: ``python -m sandbox.survey --port 8081``."""
from __future__ import annotations

import argparse
import sys

from sandbox.survey.server import SurveyEmulator
from sandbox.httpbase import serve_until_stopped


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox.survey", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--token", default="sandbox-token")
    parser.add_argument("--answers", type=int, default=0, help="generated answers on top of the samples")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rate-limit", type=float, default=10.0, help="requests/s per token; 0 disables")
    parser.add_argument("--visibility-lag", type=float, default=0.0, help="seconds before an answer is readable")
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--verbose", action="store_true", help="log every request to stderr")
    args = parser.parse_args(argv)
    emulator = SurveyEmulator(host=args.host, port=args.port, token=args.token, answers=args.answers,
                              seed=args.seed, rate_limit_per_s=args.rate_limit,
                              visibility_lag_s=args.visibility_lag, latency_ms=args.latency_ms,
                              verbose=args.verbose).start()
    print(f"survey emulator at {emulator.base_url} (admin: {emulator.admin_url}); Ctrl-C to stop",
          file=sys.stderr)
    serve_until_stopped(emulator.stop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
