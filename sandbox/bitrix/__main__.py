"""Serve the Bitrix24 REST emulator until Ctrl-C: ``python -m sandbox.bitrix --port 8082``.

A portal with a real Enterprise plan's limits, charging the default per-method costs and
cutting requests off after 60 s:

    python -m sandbox.bitrix --profile enterprise --operating-costs --request-timeout 60

The office's real portal (universal lists 17/18; the webhook user 169 with the "lists"
scope), refusing contacts without the fields it flags required:

    python -m sandbox.bitrix --portal real --enforce-required
"""
from __future__ import annotations

import argparse
import sys

from sandbox import PORTALS
from sandbox.bitrix.limits import DEFAULT_OPERATING_COSTS, PROFILES
from sandbox.bitrix.server import CUTOFF_REPLIES, FROM_PROFILE, BitrixEmulator
from sandbox.bitrix.state import load_portal
from sandbox.httpbase import serve_until_stopped
from sandbox.faults import FaultInjector


def _rate(text: str) -> tuple[str, float]:
    kind, _, value = text.partition("=")
    return kind, float(value)


def _cost(text: str) -> tuple[str, float]:
    method, _, value = text.partition("=")
    return method.strip().lower(), float(value)


def _from_profile(value, *, zero_is_off: bool = True):
    """Not given: the profile decides; 0 turns the throttle off."""
    if value is None:
        return FROM_PROFILE
    return (value or None) if zero_is_off else value


def build(argv: list[str] | None = None) -> BitrixEmulator:
    """The emulator the command line describes, not started (tests check the flags with it)."""
    parser = argparse.ArgumentParser(prog="python -m sandbox.bitrix", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8082)
    parser.add_argument("--user-id", type=int,
                        help="the webhook's user (default: the portal's integration user: real 169, smart 1)")
    parser.add_argument("--secret", default="sandbox-secret")
    parser.add_argument("--portal", default="smart",
                        help="real | smart | a portal description file (default: smart, sandbox/portal.json)")
    parser.add_argument("--scope", action="append", dest="scopes", metavar="SCOPE",
                        help="webhook scope (repeatable; default: crm, user, and lists where the portal has lists)")
    parser.add_argument("--enforce-required", action="store_true",
                        help="refuse contacts missing a field the portal flags required")
    parser.add_argument("--profile", choices=sorted(PROFILES), default="standard",
                        help="plan: standard = 2 requests/s, bucket 50; enterprise = 5/s, 250 (480 s operating)")
    parser.add_argument("--rate-limit", type=float, help="leaky bucket drain per second (default: profile); 0 off")
    parser.add_argument("--burst", type=int, help="leaky bucket size (default: profile)")
    parser.add_argument("--operating-limit", type=float,
                        help="seconds per method per 10 min (default: profile); 0 off")
    parser.add_argument("--operating-costs", action="store_true",
                        help="charge each call the default seconds of its method, not its measured time")
    parser.add_argument("--operating-cost", type=_cost, action="append", default=[], metavar="METHOD=SECONDS",
                        help="seconds charged per call of METHOD (repeatable; over --operating-costs' table, or alone)")
    parser.add_argument("--operating-default-cost", type=float, metavar="SECONDS",
                        help="seconds charged for methods outside the table (default: measured time)")
    parser.add_argument("--operating-time-scale", type=float, default=1.0, help="multiplies every charge")
    parser.add_argument("--request-timeout", type=float, default=60.0,
                        help="server cut-off in seconds, as the cloud's 60 s; 0 off")
    parser.add_argument("--cutoff-reply", choices=CUTOFF_REPLIES, default="html_504",
                        help="how a cut-off request is answered")
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--command-latency-ms", type=float, default=0.0, help="per batch command")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fault", type=_rate, action="append", default=[], metavar="KIND=RATE",
                        help="fault rate, e.g. --fault http_500=0.05 (repeatable)")
    args = parser.parse_args(argv)
    costs: dict[str, float] | bool | None = None
    if args.operating_costs or args.operating_cost:
        costs = {**(DEFAULT_OPERATING_COSTS if args.operating_costs else {}), **dict(args.operating_cost)}
    portal = load_portal(args.portal)
    # A named portal's webhook as Sandbox has it; a file: its own webhook user, lists scope if it has lists.
    webhook = PORTALS.get(args.portal) or {"user_id": int(portal.get("webhook_user_id") or 1),
                                           "scopes": ("crm", "user") + (("lists",) if "lists" in portal else ())}
    return BitrixEmulator(host=args.host, port=args.port, portal=portal,
                          user_id=args.user_id if args.user_id is not None else webhook["user_id"],
                          scopes=tuple(args.scopes) if args.scopes else webhook["scopes"],
                          enforce_required=args.enforce_required, secret=args.secret, profile=args.profile,
                          rate_limit=_from_profile(args.rate_limit),
                          burst=_from_profile(args.burst, zero_is_off=False),
                          operating_limit_s=_from_profile(args.operating_limit),
                          operating_costs=costs, operating_default_cost_s=args.operating_default_cost,
                          operating_time_scale=args.operating_time_scale,
                          request_timeout_s=args.request_timeout or None, cutoff_reply=args.cutoff_reply,
                          latency_ms=args.latency_ms, command_latency_ms=args.command_latency_ms,
                          faults=FaultInjector(seed=args.seed, rates=dict(args.fault)))


def main(argv: list[str] | None = None) -> int:
    emulator = build(argv).start()
    print(f"bitrix24 emulator: webhook {emulator.webhook_url} (admin: {emulator.base_url}/_admin/); "
          "Ctrl-C to stop", file=sys.stderr)
    serve_until_stopped(emulator.stop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
