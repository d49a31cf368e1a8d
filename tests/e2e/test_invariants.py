"""The invariants of DESIGN.md, end to end: dry-run writes nothing, a killed run loses and duplicates nothing."""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from sandbox import Sandbox
from tests.conftest import ROOT, Job


def crm_census(box):
    """Deals per external key and contacts per e-mail in the sandbox CRM."""
    deals = Counter(d.get("ORIGIN_ID") for d in box.bitrix.admin.deals() if d.get("ORIGINATOR_ID"))
    emails = Counter(e["VALUE"].strip().lower() for c in box.bitrix.admin.contacts() for e in c.get("EMAIL", []))
    forms = Counter(int(i["ufCrm6PollId"]) for i in box.bitrix.admin.items(1036))
    return deals, emails, forms


def test_dry_run_changes_nothing_in_crm_or_store(job):
    before = job.box.bitrix.admin.dump()
    summary = job.run(dry_run=True, keep_plan=True)
    assert job.box.bitrix.admin.dump() == before
    ledger = job.ledger()
    assert not any(ledger.counts_by_status().values())
    assert ledger.watermarks() == {} and ledger.last_runs(5) == []
    assert summary.counts["deal_add_planned"] >= 10
    assert {a.answer_id for a in summary.plan.answers} >= {814573981, 914000001}
    # ... and the real run then does what the dry-run planned
    real = job.run()
    assert real.counts["deals_created"] == summary.counts["deal_add_planned"]


def test_dry_run_after_a_sync_plans_nothing(job):
    job.run()
    summary = job.run(dry_run=True)
    assert summary.counts.get("deal_add_planned", 0) == 0 and summary.counts.get("planned", 0) == 0


def test_since_backfill_does_not_move_watermark_backwards(job):
    job.run()
    marks = job.ledger().watermarks()
    job.run(since=__import__("datetime").datetime(2020, 1, 1, tzinfo=__import__("datetime").timezone.utc))
    assert job.ledger().watermarks() == marks


def test_poll_filter_limits_the_run(job):
    job.run(poll_ids={430131702})
    deals = [d for d in job.box.bitrix.admin.deals() if d.get("ORIGINATOR_ID")]
    assert {str(d["UF_CRM_POLL_ID"]) for d in deals} == {"430131702"}


def test_late_visible_answer_is_picked_up_by_the_lookback(job):
    job.run()
    admin = job.box.survey.admin
    now = admin.now()
    answer = dict(admin.answer(814573982), answer_id=700000001, updated_at=now.isoformat(),
                  created_at=now.isoformat(),
                  answers=[{"code": "email", "value": "late@example.com"}, {"code": "programs", "value": ["Экономика"]}])
    admin.add_answer(answer, lag_s=240)   # visible only 4 minutes after its updated_at
    admin.advance_clock(60)
    job.run()                              # the watermark passes it while it is still invisible
    admin.advance_clock(300)
    job.run()                              # the look-back window reads it now
    deals, _, _ = crm_census(job.box)
    assert deals["700000001:104"] == 1


@pytest.mark.timeout(240)
def test_killed_runs_then_a_final_run_sync_every_answer_exactly_once(tmp_path):
    """SIGKILL a real `cli.py sync` subprocess at random moments, restart, and compare the CRM."""
    rng = random.Random(7)
    store = f"sqlite:///{tmp_path}/store.sqlite3"
    with Sandbox(portal="smart", answers=400, seed=3, rate_limit=None, latency_ms=20, command_latency_ms=2) as box:
        env = {**os.environ, **box.env(), "DATABASE_URL": store, "FIELD_MAPPING": str(ROOT / "examples" / "field_mapping.smart-processes.json"),
               "HTTP_TIMEOUT_S": "5", "CHUNK_SIZE": "100", "LOG_LEVEL": "WARNING"}
        cmd = [sys.executable, str(ROOT / "cli.py"), "sync"]
        kills = 0
        for _ in range(6):
            proc = subprocess.Popen(cmd, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            time.sleep(rng.uniform(0.3, 2.0))
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                kills += 1
            proc.wait(timeout=30)
        final = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=180)
        assert final.returncode in (0, 1), final.stderr
        assert kills >= 2, "the runs finished before they could be killed: slow the sandbox down"

        deals, emails, forms = crm_census(box)
        duplicates = {k: n for k, n in deals.items() if n > 1} | {k: n for k, n in emails.items() if n > 1
                                                                   and k not in ("e.smirnova@example.org",)}
        assert duplicates == {}
        assert all(n == 1 for n in forms.values())
        ledger = Job(box, store).ledger()
        by_status = ledger.counts_by_status()
        assert by_status.get("in_flight", 0) == 0 and by_status.get("pending", 0) == 0
        # every answer that is not quarantined has all of its deals
        expected = 0
        for row in ledger.answer_rows(answer_ids=[a["answer_id"] for a in box.survey.admin.all_answers()]):
            if row.status == "pushed":
                expected += len(row.deal_ids)
                for key, deal_id in row.deal_ids.items():
                    assert deals[f"{row.answer_id}:{key}"] == 1
        assert sum(deals.values()) == expected + sum(
            len(r.deal_ids) for r in ledger.answer_rows(answer_ids=[a["answer_id"] for a in box.survey.admin.all_answers()])
            if r.status == "needs_attention")


def _crm_shape(box):
    deals = sorted((d["ORIGIN_ID"], d["TITLE"], str(d["CONTACT_ID"] and 1), str(d.get("PARENT_ID_1040")),
                    str(d.get("UF_CRM_LEVEL")), d.get("UTM_SOURCE")) for d in box.bitrix.admin.deals()
                   if d.get("ORIGINATOR_ID"))
    contacts = sorted((c.get("NAME"), tuple(e["VALUE"] for e in c.get("EMAIL", [])),
                       tuple(p["VALUE"] for p in c.get("PHONE", []))) for c in box.bitrix.admin.contacts())
    return deals, contacts


def test_bulk_backfill_gives_the_same_crm_as_the_normal_path(tmp_path):
    shapes = []
    for bulk in (False, True):
        with Sandbox(portal="smart", answers=120, seed=9, rate_limit=None) as box:
            job = Job(box, f"sqlite:///{tmp_path}/store-{bulk}.sqlite3")
            job.run(bulk=bulk)
            shapes.append(_crm_shape(box))
            requests = box.bitrix.admin.counters()["requests"]
            again = job.run(bulk=bulk)
            assert again.counts.get("deals_created", 0) == 0
        if bulk:
            assert requests < normal_requests
        normal_requests = requests
    assert shapes[0] == shapes[1]
