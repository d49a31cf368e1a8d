"""One container receives and syncs: `cli.py schedule --with-intake` stores the portal's pushes
and its scheduled runs put them into the CRM; SIGTERM stops both and exits 0."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from sandbox.bitrix.server import BitrixEmulator

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "sandbox" / "sample_data" / "real"

pytestmark = pytest.mark.slow


def _post(url: str, packet: dict) -> dict:
    request = urllib.request.Request(url, data=json.dumps(packet).encode("utf-8"),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as reply:
        return json.loads(reply.read())


def test_schedule_with_intake_stores_deliveries_and_syncs_them(tmp_path):
    with BitrixEmulator(portal="real", user_id=169, scopes=("crm", "user", "lists"), rate_limit=None) as portal:
        env = {**os.environ, "BITRIX24_WEBHOOK_URL": portal.webhook_url, "DATABASE_URL": f"sqlite:///{tmp_path}/s.db",
               "INTAKE_PORT": "0", "HEALTH_FILE": str(tmp_path / "heartbeat.json"), "LOG_LEVEL": "WARNING",
               "FIELD_MAPPING": str(ROOT / "field_mapping.json")}
        env.pop("SURVEY_API_URL", None)
        job = subprocess.Popen([sys.executable, str(ROOT / "cli.py"), "schedule", "--with-intake", "--every", "10"],
                               env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            line = job.stdout.readline()
            assert line.startswith("intake listening on http://"), line + job.stderr.read()
            base = line.split(" on ", 1)[1].strip()
            for packet in json.loads((SAMPLES / "polls.json").read_text(encoding="utf-8"))["postPoll"]:
                assert _post(f"{base}/postPoll", packet)["is_successful"]
            for packet in json.loads((SAMPLES / "answers.json").read_text(encoding="utf-8"))["postAnswer"]:
                assert _post(f"{base}/postAnswer", packet)["is_successful"]
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and len(portal.admin.list_elements(17)) < 4:
                time.sleep(0.5)
            assert len(portal.admin.list_elements(17)) == 4
            assert any(c["NAME"] == "Мария" for c in portal.admin.contacts())
        finally:
            job.send_signal(signal.SIGTERM)
            code = job.wait(timeout=60)
        assert code == 0, job.stderr.read()
