"""Kill the process right after each kind of step; the next run recovers by the external keys."""
from __future__ import annotations

import random
import signal
import subprocess
import sys

import pytest

from sandbox import Sandbox
from sync.crashpoints import POINTS
from sync.mapping import load_mapping
from tests.chaos.test_chaos import SMART_MAPPING, _env, _resolver, census, wrong_fields
from tests.conftest import ROOT, Job
from tests.oracle import Crm


@pytest.mark.parametrize("nth", [1, 3])
@pytest.mark.parametrize("point", POINTS)
def test_killed_right_after_step_then_next_run_recovers(tmp_path, point, nth):
    store_url = f"sqlite:///{tmp_path}/store.sqlite3"
    with Sandbox(portal="smart", answers=150, seed=5, rate_limit=None) as box:
        before = Crm.of(box.bitrix, load_mapping(SMART_MAPPING))
        env = _env(box, store_url) | {"CHUNK_SIZE": "60", "BATCH_SIZE": "20"}
        cmd = [sys.executable, str(ROOT / "cli.py"), "sync"]
        crashed = subprocess.run(cmd, env=env | {"SYNC_CRASH_AT": f"{point}:{nth}"}, cwd=ROOT, capture_output=True,
                                 text=True, timeout=120)
        assert crashed.returncode == -signal.SIGKILL, f"never reached {point}: {crashed.stderr[-500:]}"
        if point == "in_flight" or (point == "batch_sent" and nth > 1):  # the first batch writes poll forms
            assert Job(box, store_url).ledger().counts_by_status().get("in_flight", 0) > 0
        finished = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert finished.returncode in (0, 1), finished.stderr[-2000:]
        lost, duplicates, details = census(box, Job(box, store_url), _resolver())
        wrong = wrong_fields(box, before)
        assert (lost, duplicates, len(wrong)) == (0, 0, 0), (details[:10], [str(m) for m in wrong[:10]])
