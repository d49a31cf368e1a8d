"""Operating the job: the lock, SIGTERM, metrics, secrets, status, retry, replay."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sandbox import Sandbox
from tests.conftest import ROOT, Job

SECRET = "sandbox-secret"
TOKEN = "sandbox-token"


def cli(env, *args, timeout=120, cwd=None):
    return subprocess.run([sys.executable, str(ROOT / "cli.py"), *args], env=env, cwd=cwd or ROOT,
                          capture_output=True, text=True, timeout=timeout)


def job_env(box, store_url, **extra):
    return {**os.environ, **box.env(), "DATABASE_URL": store_url, "FIELD_MAPPING": str(ROOT / "examples" / "field_mapping.smart-processes.json"),
            "HTTP_TIMEOUT_S": "5", **{k: str(v) for k, v in extra.items()}}


def test_second_sync_while_one_runs_exits_4_names_the_holder_and_writes_nothing(sandbox, store_url):
    from storage.db import make_engine, migrate
    from storage.lock import run_lock
    before = sandbox.bitrix.admin.dump()
    engine = make_engine(store_url)
    migrate(engine)  # a store some earlier run created
    with run_lock(engine, database_url=store_url, holder="sync"):
        done = cli(job_env(sandbox, store_url), "sync")
    assert done.returncode == 4, done.stderr
    assert "another sync is running" in done.stderr
    assert f"pid {os.getpid()}" in done.stderr and "started" in done.stderr
    assert sandbox.bitrix.admin.dump() == before


def test_two_concurrent_syncs_never_both_write(store_url):
    with Sandbox(portal="smart", answers=300, seed=2, rate_limit=None, latency_ms=30) as box:
        env = job_env(box, store_url, CHUNK_SIZE=100)
        procs = [subprocess.Popen([sys.executable, str(ROOT / "cli.py"), "sync"], env=env, cwd=ROOT,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
        codes = sorted(p.wait(timeout=120) for p in procs)
        assert codes[1] == 4 and codes[0] in (0, 1)
        deals = [d["ORIGIN_ID"] for d in box.bitrix.admin.deals() if d.get("ORIGINATOR_ID")]
        assert len(deals) == len(set(deals))


def test_sigterm_mid_run_finishes_in_flight_records_interrupted_and_next_run_completes(tmp_path):
    store_url = f"sqlite:///{tmp_path}/store.sqlite3"
    with Sandbox(portal="smart", answers=600, seed=4, rate_limit=None, latency_ms=60, command_latency_ms=3) as box:
        env = job_env(box, store_url, CHUNK_SIZE=100, PUSH_CONCURRENCY=1)
        proc = subprocess.Popen([sys.executable, str(ROOT / "cli.py"), "sync"], env=env, cwd=ROOT,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 30
        while not any(d.get("ORIGINATOR_ID") for d in box.bitrix.admin.deals()) and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 3, err
        assert "interrupted" in err
        ledger = Job(box, store_url).ledger()
        assert ledger.last_runs(1)[0].outcome == "interrupted"
        assert ledger.counts_by_status()["in_flight"] == 0  # nothing half-done
        done = cli(env, "sync")
        assert done.returncode in (0, 1), done.stderr
        deals = [d["ORIGIN_ID"] for d in box.bitrix.admin.deals() if d.get("ORIGINATOR_ID")]
        assert len(deals) == len(set(deals))
        by_status = ledger.counts_by_status()
        assert by_status["pending"] == by_status["in_flight"] == by_status["failed"] == 0


def test_metrics_file_has_prometheus_gauges_of_the_run(sandbox, tmp_path):
    store_url = f"sqlite:///{tmp_path}/store.sqlite3"
    metrics = tmp_path / "textfile" / "survey_sync.prom"
    done = cli(job_env(sandbox, store_url), "sync", "--metrics-file", str(metrics))
    assert done.returncode == 1, done.stderr
    text = metrics.read_text()
    assert "# TYPE survey_sync_last_run_duration_seconds gauge" in text
    values = dict(line.split() for line in text.splitlines() if not line.startswith("#"))
    assert float(values["survey_sync_last_run_answers_synced"]) > 0
    assert float(values["survey_sync_last_run_answers_needing_attention"]) == 3
    assert float(values["survey_sync_last_run_bitrix24_requests"]) > 0
    assert float(values["survey_sync_last_run_success"]) == 1


def test_no_secret_appears_in_anything_a_run_wrote(sandbox, tmp_path):
    """Logs (text and JSON), reports in every format, the store and its lock files: grep them all."""
    store_url = f"sqlite:///{tmp_path}/store.sqlite3"
    written = []
    for fmt in ("text", "json"):
        env = job_env(sandbox, store_url, LOG_FORMAT=fmt, LOG_LEVEL="DEBUG")
        for ext in ("md", "html", "json", "csv"):
            report = tmp_path / f"report-{fmt}.{ext}"
            done = cli(env, "sync", "--since", "2020-01-01", "--report", str(report), "--show-personal-data")
            written += [done.stdout, done.stderr, report.read_text(encoding="utf-8-sig")]
        # a refused webhook and a refused token must not leak the secrets either
        bad = dict(env, BITRIX24_WEBHOOK_URL=sandbox.bitrix.webhook_url.replace(SECRET, "wrong-secret-123"))
        done = cli(bad, "sync")
        assert done.returncode == 3
        written += [done.stdout, done.stderr]
        done = cli(dict(env, SURVEY_API_TOKEN="wrong-token-1234"), "sync")
        assert done.returncode == 3
        written += [done.stdout, done.stderr]
        status, doctor = cli(env, "status", "--json"), cli(env, "doctor")
        assert status.returncode == 0, status.stderr
        assert doctor.returncode == 0, doctor.stdout + doctor.stderr  # every check ran and passed
        written += [status.stdout, status.stderr, doctor.stdout, doctor.stderr]
    for path in tmp_path.rglob("*"):
        if path.is_file():
            written.append(path.read_bytes().decode("utf-8", "replace"))
    blob = "\n".join(written)
    assert "wrong-secret-123" not in blob and "wrong-token-1234" not in blob
    assert SECRET not in blob and TOKEN not in blob
    assert "814573981" in blob  # the grep is looking at real output


def test_status_lists_runs_and_answers_needing_attention(job):
    job.run()
    env = job_env(job.box, job.store_url, REPORT_LANGUAGE="en")
    done = cli(env, "status")
    assert done.returncode == 0, done.stderr
    assert "Last runs:" in done.stdout and "answer 814573992" in done.stdout
    data = json.loads(cli(env, "status", "--json").stdout)
    assert data["answers_by_status"]["needs_attention"] == 3
    assert data["last_runs"][0]["outcome"] == "needs_attention"


def test_retry_pushes_an_answer_after_the_mapping_is_fixed(job, tmp_path):
    job.run()
    assert job.ledger().get_answer(814573990).status == "needs_attention"
    mapping = json.loads((ROOT / "examples" / "field_mapping.smart-processes.json").read_text(encoding="utf-8"))
    mapping["programmes"]["aliases"]["Квантовая алхимия"] = "Прикладная математика и информатика"
    fixed = tmp_path / "mapping.json"
    fixed.write_text(json.dumps(mapping, ensure_ascii=False), encoding="utf-8")
    done = cli(job_env(job.box, job.store_url, FIELD_MAPPING=fixed), "retry", "--answer", "814573990")
    assert done.returncode == 0, done.stderr
    assert job.ledger().get_answer(814573990).status == "pushed"
    keys = sorted(d["ORIGIN_ID"] for d in job.box.bitrix.admin.deals() if str(d.get("UF_CRM_ANSWER_ID")) == "814573990")
    assert keys == ["814573990:100", "814573990:106"]


def test_replay_fetches_one_answer_afresh(job):
    job.run()
    job.box.survey.admin.edit_answer(814573982, {"answers": {"email": "new.applicant@mail.ru",
                                                             "programs": ["Экономика", "Дизайн"]}})
    done = cli(job_env(job.box, job.store_url), "replay", "--answer", "814573982")
    assert done.returncode == 0, done.stderr
    keys = sorted(d["ORIGIN_ID"] for d in job.box.bitrix.admin.deals() if str(d.get("UF_CRM_ANSWER_ID")) == "814573982")
    assert keys == ["814573982:104", "814573982:116"]
