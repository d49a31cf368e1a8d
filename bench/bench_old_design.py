#!/usr/bin/env python3
"""The old per-answer webhook design against the new batch job, on the same data, in one run.

The old service handled each answer on its own, one REST call per step (DESIGN.md, "The
performance floor"): find the poll form, find the contact, add it if missing, find each
chosen programme, add each deal. This script replays that flow with
``Bitrix24Client.call`` against a fresh sandbox, then runs the new job
(``bench_sync.bench``: ``execute`` against another fresh sandbox with the same seed,
answers and share of respondents already in the CRM), and prints requests, requests per
1,000 answers and wall time for both, their ratios, and the extrapolation to 1,000
answers next to DESIGN.md's figures.

    python bench/bench_old_design.py                  # 200 answers: ~10 minutes, slow by design
    python bench/bench_old_design.py --answers 50 --new-at 0

What the replay keeps of the old service, and what it borrows from the job:
- one ``call`` per step, in the order above, each answer as it arrived (by ``updated_at``);
  an answer without a usable e-mail is dropped before any call (the cheapest old service);
- the poll form is looked up for every answer; when missing it is created once (after a
  ``user.get`` for its owner);
- the contact is found with ``crm.duplicate.findbycomm`` for its one e-mail; an existing
  contact is never updated (the new job fills its empty fields: a few extra writes);
- a programme is found by title (after the mapping's aliases and whitespace clean-up);
- the contact and deal fields come from the job's own planner (``build_answer_plan`` for a
  single answer, fed by the look-ups just made), so both designs write the same records.
Every choice above makes the old design cheaper, not dearer: the ratio is a lower bound.
The answers are read through the survey API first and that read is not timed (the old
service received them by webhook).
"""
from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_sync import WRITE_METHODS, bench as bench_new, seed_existing, time_floor  # noqa: E402

from sandbox import Sandbox  # noqa: E402
from sync.crm.batching import UnresolvedReference, resolve_params  # noqa: E402
from sync.clients.bitrix24 import Bitrix24Client  # noqa: E402
from sync.clients.survey import SurveyClient  # noqa: E402
from core.errors import UpstreamError  # noqa: E402
from sync.mapping import FieldMapping, load_mapping  # noqa: E402
from sync.source.models import Answer, Poll  # noqa: E402
from sync.plan.normalize import clean_text, match_key_email, normalize_email, normalize_title  # noqa: E402
from sync.plan.build import AnswerInput, build_answer_plan, build_poll_plan  # noqa: E402
from sync.crm.push import created_id  # noqa: E402
from sync.plan.models import AnswerLookups, CrmContact, CrmUser, PollContext, PollLookups, Programme  # noqa: E402

# DESIGN.md, "The performance floor": the old design and the floor for 1,000 new respondents.
DESIGN_OLD_PER_ANSWER = 6
DESIGN_OLD_MINUTES = 50
DESIGN_FLOOR_REQUESTS = 51


class OldWebhookService:
    """The old design: every answer handled alone, one REST call per step."""

    def __init__(self, bitrix: Bitrix24Client, mapping: FieldMapping, polls: dict[int, Poll]) -> None:
        self.bitrix = bitrix
        self.mapping = mapping
        self.polls = polls
        self.aliases = {normalize_title(k): v for k, v in mapping.programmes.aliases.items()}
        self.counts: Counter[str] = Counter()

    def poll_form(self, poll: Poll) -> PollContext:
        """Find the poll's form (one call); create it, with its owner, when there is none."""
        pf = self.mapping.poll_form
        found = self.bitrix.call("crm.item.list", {"entityTypeId": pf.entity_type_id,
                                                    "filter": {pf.poll_id_field: poll.poll_id},
                                                    "select": ["id", pf.owner_field]}).result
        items = found.get("items", []) if isinstance(found, dict) else []
        context = PollContext(poll_id=poll.poll_id, poll_name=poll.poll_name, poll_language=poll.poll_language,
                              status=poll.status, employee_email=poll.employee_email,
                              owner_id=self.mapping.default_responsible_user_id)
        if items:
            context.item_id = int(items[0]["id"])
            context.owner_id = int(items[0].get(pf.owner_field) or context.owner_id)
            return context
        users = PollLookups()
        email = match_key_email(poll.employee_email or "")
        if email:
            for row in self.bitrix.call("user.get", {"FILTER": {"EMAIL": email}}).result or []:
                users.users_by_email[email] = CrmUser(id=int(row["ID"]), email=email,
                                                      active=row.get("ACTIVE") in (True, "Y", "1", 1))
        plan = build_poll_plan([(poll, "", None)], users, self.mapping)
        command = plan.commands[0]
        result = self.bitrix.call(command.method, command.params, idempotent=False).result
        context.item_id = created_id(command, result)
        context.owner_id = plan.polls[0].owner_id
        self.counts["poll_forms_created"] += 1
        return context

    def programme(self, name: str) -> list[Programme]:
        """Find one chosen programme by title (one call)."""
        pm = self.mapping.programmes
        target = self.aliases.get(normalize_title(name))
        if isinstance(target, int):
            flt = {"id": target}
        else:
            flt = {pm.title_field: str(target) if target is not None else clean_text(name)[0]}
        found = self.bitrix.call("crm.item.list", {"entityTypeId": pm.entity_type_id, "filter": flt,
                                                   "select": ["id", pm.title_field]}).result
        return [Programme(id=int(r["id"]), title=str(r.get(pm.title_field) or ""))
                for r in (found.get("items", []) if isinstance(found, dict) else [])]

    def handle(self, answer: Answer) -> None:
        q = self.mapping.questions
        email, _ = normalize_email(answer.value_of(q.email))
        poll = self.polls.get(answer.poll_id)
        if email is None or poll is None:
            self.counts["dropped"] += 1
            return
        context = self.poll_form(poll)
        dup = self.bitrix.call("crm.duplicate.findbycomm", {"type": "EMAIL", "values": [email],
                                                            "entity_type": "CONTACT"}).result
        ids = sorted(int(i) for i in (dup.get("CONTACT", []) if isinstance(dup, dict) else []))
        contacts = {email: [CrmContact(id=ids[0], emails=[email])]} if ids else {}
        raw = answer.value_of(q.programmes) if q.programmes else None
        names = [raw] if isinstance(raw, str) else [n for n in raw if isinstance(n, str)] if isinstance(raw, list) else []
        programmes: dict[int, Programme] = {}
        for name in dict.fromkeys(n for n in names if n.strip()):
            for p in self.programme(name):
                programmes[p.id] = p
        lookups = AnswerLookups(programmes=list(programmes.values()), contacts_by_email=contacts)
        plan = build_answer_plan([AnswerInput(answer=answer)], polls={poll.poll_id: context}, lookups=lookups,
                                 mapping=self.mapping)
        created: dict[str, int] = {}
        for command in plan.commands:
            if command.kind == "contact_update":
                continue  # the old service never touched an existing contact
            try:
                params = resolve_params(command.params, same_batch=set(), created=created)
                result = self.bitrix.call(command.method, params, idempotent=False).result
            except (UnresolvedReference, UpstreamError) as exc:
                self.counts[f"{command.kind}_failed"] += 1
                self.counts[f"error:{type(exc).__name__}"] += 1
                continue
            self.counts[command.kind] += 1
            new_id = created_id(command, result)
            if new_id is not None:
                created[command.name] = new_id
        self.counts["handled"] += 1


def read_answers(box: Sandbox) -> tuple[dict[int, Poll], list[Answer]]:
    """Every poll and answer through the survey API, answers in the order their webhooks would arrive."""
    with SurveyClient(box.survey.base_url, box.survey.token) as survey:
        polls = {p.poll_id: p for page in survey.iter_polls(None) for p in page.items}
        answers = {a.answer_id: a for poll_id in sorted(polls)
                   for page in survey.iter_answers(poll_id, None) for a in page.items}
    return polls, sorted(answers.values(), key=lambda a: (a.updated_at, a.answer_id))


def bench_old(answers: int, *, existing: float, rate: float, burst: int, latency_ms: float,
              command_latency_ms: float, seed: int) -> dict:
    from sync.logs import setup_logging

    setup_logging(level="WARNING")
    mapping = load_mapping(ROOT / "examples" / "field_mapping.smart-processes.json")
    with Sandbox(portal="smart", answers=answers, seed=seed, include_samples=False, rate_limit=rate, burst=burst,
                 latency_ms=latency_ms, command_latency_ms=command_latency_ms) as box:
        seed_existing(box, existing, seed)
        polls, listed = read_answers(box)
        box.bitrix.admin.reset_counters()
        with Bitrix24Client(box.bitrix.webhook_url, rate_per_s=rate, burst=burst, timeout=60) as bitrix:
            service = OldWebhookService(bitrix, mapping, polls)
            t0 = time.monotonic()
            for answer in listed:
                service.handle(answer)
            wall = time.monotonic() - t0
        counters = box.bitrix.admin.counters()
    by_method = counters["by_method"]
    return {"answers": len(listed), "requests": counters["requests"], "per_1000": counters["requests"] * 1000 / len(listed),
            "writes": sum(by_method.get(m, 0) for m in WRITE_METHODS), "wall_s": wall,
            "rejected": sum(counters["rejected"].values()), "by_method": by_method, "counts": dict(service.counts)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--answers", type=int, default=200, help="answers for both designs (the old one is slow)")
    parser.add_argument("--existing", type=float, default=0.3, help="share of respondents already in the CRM")
    parser.add_argument("--rate", type=float, default=2.0)
    parser.add_argument("--burst", type=int, default=50)
    parser.add_argument("--latency-ms", type=float, default=150.0, help="emulator latency per HTTP request")
    parser.add_argument("--command-latency-ms", type=float, default=5.0, help="emulator latency per batch command")
    parser.add_argument("--new-at", type=int, default=1000,
                        help="also run the new job at this many answers for the extrapolation (0: scale linearly)")
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()
    common = dict(existing=args.existing, rate=args.rate, burst=args.burst, latency_ms=args.latency_ms,
                  command_latency_ms=args.command_latency_ms, seed=args.seed)

    print(f"rate {args.rate:g}/s, burst {args.burst}, latency {args.latency_ms:g} ms/request + "
          f"{args.command_latency_ms:g} ms/batch command, {args.existing:.0%} of respondents already in the CRM, "
          f"seed {args.seed}", flush=True)
    old = bench_old(args.answers, **common)
    new = bench_new(args.answers, **common)

    print(f"\n{'design':<28} {'answers':>7} {'requests':>9} {'req/1000':>9} {'writes':>7} {'wall s':>8} {'503s':>5}")
    for label, r in (("old: one call per step", old), ("new: batch job", new)):
        print(f"{label:<28} {r['answers']:>7} {r['requests']:>9} {r['per_1000']:>9.1f} {r['writes']:>7} "
              f"{r['wall_s']:>8.1f} {r['rejected']:>5}")
    print(f"{'ratio old/new':<28} {'':>7} {old['requests'] / new['requests']:>9.1f} "
          f"{old['per_1000'] / new['per_1000']:>9.1f} {'':>7} {old['wall_s'] / new['wall_s']:>8.1f}")
    print("(writes: the new job also fills empty fields of existing contacts, crm.contact.update; the old "
          "replay never updates a contact)")
    print(f"\nold design, requests by method: "
          + ", ".join(f"{m} {n}" for m, n in sorted(old["by_method"].items(), key=lambda kv: -kv[1])))
    print(f"old design, per answer: {old['requests'] / old['answers']:.2f} requests; outcomes: "
          + ", ".join(f"{k} {v}" for k, v in sorted(old["counts"].items())))
    print(f"new design: floor {new['floor']} requests ({new['requests'] / new['floor']:.2f}x), "
          f"{new['commands_per_request']:.1f} commands/request, outcome {new['outcome']}")

    old_1000 = round(old["requests"] / old["answers"] * 1000)
    if args.new_at:
        at = bench_new(args.new_at, **common)
        new_1000 = round(at["requests"] * 1000 / at["answers"])
        new_wall = at["wall_s"] * 1000 / at["answers"]
        how = f"measured at {at['answers']:,}"
    else:
        new_1000, new_wall, how = round(new["per_1000"]), new["wall_s"] * 1000 / new["answers"], "scaled linearly"
    print(f"\nextrapolated to 1,000 answers (bucket: burst {args.burst}, then {args.rate:g} requests/s)")
    print(f"{'design':<28} {'requests':>9} {'min (bucket)':>13} {'min (wall)':>11}   DESIGN.md")
    print(f"{'old (x' + format(1000 / old['answers'], 'g') + ' of measured)':<28} {old_1000:>9,} "
          f"{time_floor(old_1000, args.rate, args.burst) / 60:>13.1f} "
          f"{old['wall_s'] * 1000 / old['answers'] / 60:>11.1f}   "
          f"{DESIGN_OLD_PER_ANSWER}+ requests per answer ({DESIGN_OLD_PER_ANSWER * 1000:,}+), about "
          f"{DESIGN_OLD_MINUTES} minutes")
    print(f"{'new (' + how + ')':<28} {new_1000:>9,} {time_floor(new_1000, args.rate, args.burst) / 60:>13.1f} "
          f"{new_wall / 60:>11.1f}   floor ~{DESIGN_FLOOR_REQUESTS} requests, under a minute")
    print(f"{'ratio old/new':<28} {old_1000 / new_1000:>9.1f}   (DESIGN.md: over 100 times)")


if __name__ == "__main__":
    main()
