#!/usr/bin/env python3
"""The job's local overhead, with no network latency and no rate limit: CPU per 1,000 answers, peak RSS.

The emulators run in a separate process (``cli.py sandbox --rate-limit 0``), so their CPU
and memory are not counted.

1. CPU, in this process (``time.process_time()``), on ``--answers`` answers (default 20,000):
   - pull + stage: a real ``execute`` into a fresh SQLite ledger whose push is limited to
     no answer (``answer_ids={0}``): every answer pulled and staged, nothing planned;
   - plan: a dry-run ``execute`` that re-reads the ledger, looks the CRM up and plans them all;
   - push (for information): a real ``execute`` after it (plan again + push), minus the dry-run.
2. Peak RSS of a real first sync of ``--backfill`` answers (default 100,000) in a child
   process of this one, so the figure is the job's own (the child's ``VmHWM``, and psutil
   polling as a check). ``--backfill 0`` skips it.

Targets (the issue): pull + stage + plan <= 0.5 CPU s per 1,000 answers; peak RSS <= 300 MB
for a 100,000-answer backfill. The portal is the real one (``--portal real``, ``field_mapping.json``):
deals reused per contact and programme, and the whole answer planned as a timeline summary on
each deal, so the figures include the summaries. The generated data include the sandbox's sample
answers and no respondents already in the CRM; the operating-time limit is switched off on both
sides (the emulator's, and the job's pacing by it).

    python bench/bench_overhead.py                          # 20,000 answers, then a 100,000 backfill
    python bench/bench_overhead.py --answers 2000 --backfill 20000
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import queue
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import psutil
import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TARGET_CPU_PER_1000 = 0.5
TARGET_RSS_MB = 300
UNLIMITED = 1_000_000  # requests/s and burst that never wait (Settings wants a positive rate)


# --------------------------------------------------------------------------- the emulators' process

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def sandbox_process(answers: int, seed: int, *, startup_timeout_s: float = 600.0) -> Iterator[tuple[dict, psutil.Process]]:
    """``cli.py sandbox`` in its own process; yields its exported settings and the process."""
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen([sys.executable, "cli.py", "sandbox", "--answers", str(answers), "--seed", str(seed),
                             "--portal", "real", "--rate-limit", "0", "--survey-port", str(free_port()),
                             "--bitrix-port", str(free_port())],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=log, text=True)
    try:
        lines: queue.Queue[str] = queue.Queue()
        # A thread reads the pipe: select() on it would miss lines already in the file object's buffer.
        threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()
        env: dict[str, str] = {}
        deadline = time.monotonic() + startup_timeout_s
        while len(env) < 3:
            try:
                line = lines.get(timeout=1.0)
            except queue.Empty:
                if proc.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    raise RuntimeError(f"the sandbox did not start (exit {proc.poll()}): "
                                       f"{log.read().decode(errors='replace')[-2000:]}") from None
                continue
            if line.startswith("export "):
                key, _, value = line[len("export "):].strip().partition("=")
                env[key] = value.strip("'")
        admin = admin_url(env)
        requests.post(f"{admin}/operating-limit", json={"limit_s": None}, timeout=30).raise_for_status()
        requests.get(f"{admin}/counters", timeout=30).raise_for_status()
        yield env, psutil.Process(proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def admin_url(env: dict[str, str]) -> str:
    return env["BITRIX24_WEBHOOK_URL"].split("/rest/", 1)[0] + "/_admin"


def bitrix_counters(env: dict[str, str]) -> dict:
    reply = requests.get(f"{admin_url(env)}/counters", timeout=30)
    reply.raise_for_status()
    return reply.json()


def job_settings(env: dict[str, str], database_url: str):
    from sync.settings import load_settings
    return load_settings(survey_api_url=env["SURVEY_API_URL"], survey_api_token=env["SURVEY_API_TOKEN"],
                         bitrix24_webhook_url=env["BITRIX24_WEBHOOK_URL"], database_url=database_url,
                         field_mapping=str(ROOT / "field_mapping.json"), rate_limit_per_s=UNLIMITED,
                         rate_limit_burst=UNLIMITED, bitrix24_timeout_s=300, operating_limit_s=0,
                         log_level="WARNING")


# --------------------------------------------------------------------------- 1. CPU per stage

class GcClock:
    """CPU seconds spent in the cyclic garbage collector (through ``gc.callbacks``)."""

    def __init__(self) -> None:
        self.cpu_s = 0.0
        self.full_collections = 0
        self._started = 0.0
        gc.callbacks.append(self._callback)

    def close(self) -> None:
        gc.callbacks.remove(self._callback)

    def _callback(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._started = time.process_time()
        else:
            self.cpu_s += time.process_time() - self._started
            self.full_collections += info.get("generation") == 2


class Meter:
    """CPU and wall of this process, its GC share, and the CPU of the emulators' process, over one stage."""

    def __init__(self, emulators: psutil.Process) -> None:
        self.emulators = emulators
        self.gc = GcClock()

    @contextmanager
    def stage(self, into: dict) -> Iterator[None]:
        other = sum(self.emulators.cpu_times()[:2])
        gc_cpu, full = self.gc.cpu_s, self.gc.full_collections
        cpu, wall = time.process_time(), time.perf_counter()
        yield
        into["cpu_s"] = time.process_time() - cpu
        into["wall_s"] = time.perf_counter() - wall
        into["gc_s"] = self.gc.cpu_s - gc_cpu
        into["gc_full"] = self.gc.full_collections - full
        into["emulator_cpu_s"] = sum(self.emulators.cpu_times()[:2]) - other


def bench_cpu(answers: int, seed: int) -> dict:
    from sync.app import build_context, execute, options_from
    from sync.logs import setup_logging

    setup_logging(level="WARNING")
    stages: dict[str, dict] = {"pull": {}, "plan": {}, "real": {}}
    with sandbox_process(answers, seed) as (env, emulators), tempfile.TemporaryDirectory() as tmp:
        settings = job_settings(env, f"sqlite:///{tmp}/bench.sqlite3")
        ctx = build_context(settings)
        meter = Meter(emulators)
        # Pull + stage as the job runs them (inside ``run()``, with its own settings): a real
        # run whose push is limited to an answer id that does not exist. It also writes the
        # few poll forms.
        with meter.stage(stages["pull"]):
            pulled = execute(ctx, options_from(settings, command="sync", answer_ids={0}))
        with meter.stage(stages["plan"]):
            dry = execute(ctx, options_from(settings, command="sync", dry_run=True))
        before = bitrix_counters(env)["requests"]
        with meter.stage(stages["real"]):
            real = execute(ctx, options_from(settings, command="sync"))
        stages["real"]["requests"] = bitrix_counters(env)["requests"] - before
        meter.gc.close()
    answers_seen = pulled.counts.get("answers_seen", 0)
    stages["pull"]["answers"] = answers_seen
    stages["plan"]["planned"] = dry.counts.get("planned", 0)
    stages["real"]["outcome"] = real.outcome
    stages["real"]["counts"] = real.counts
    return {"answers": answers_seen, **stages}


# --------------------------------------------------------------------------- 2. peak RSS of a backfill

def own_peak_rss_mb() -> float:
    """This process's peak RSS since its exec (``VmHWM``).

    ``ru_maxrss`` is not enough in a child: Linux carries the forking parent's peak into
    the child's ``ru_maxrss`` at exec, so after the CPU part it reports this bench's size.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux

def child_sync(database_url: str) -> None:
    """In the child: one real sync against the emulators named in the environment; JSON on stdout."""
    from sync.app import build_context, execute, options_from
    from sync.logs import setup_logging

    setup_logging(level="WARNING")
    env = {k: os.environ[k] for k in ("SURVEY_API_URL", "SURVEY_API_TOKEN", "BITRIX24_WEBHOOK_URL")}
    settings = job_settings(env, database_url)
    gc_clock = GcClock()
    cpu, wall = time.process_time(), time.perf_counter()
    summary = execute(build_context(settings), options_from(settings, command="sync"))
    print(json.dumps({"wall_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu,
                      "gc_s": gc_clock.cpu_s, "gc_full": gc_clock.full_collections,
                      "peak_rss_mb": own_peak_rss_mb(),
                      "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "outcome": summary.outcome, "counts": summary.counts,
                      "bitrix_requests": summary.bitrix_requests}))


def bench_backfill(answers: int, seed: int) -> dict:
    with sandbox_process(answers, seed) as (env, _), tempfile.TemporaryDirectory() as tmp:
        child = subprocess.Popen([sys.executable, __file__, "--child-sync", f"sqlite:///{tmp}/backfill.sqlite3"],
                                 cwd=ROOT, env={**os.environ, **env}, stdout=subprocess.PIPE, text=True)
        polled = [0]

        def poll() -> None:
            try:
                p = psutil.Process(child.pid)
                while child.poll() is None:
                    polled[0] = max(polled[0], p.memory_info().rss)
                    time.sleep(0.05)
            except psutil.NoSuchProcess:
                pass

        watcher = threading.Thread(target=poll, daemon=True)
        watcher.start()
        out, _ = child.communicate()
        watcher.join()
        if child.returncode != 0:
            raise RuntimeError(f"the backfill child failed with exit code {child.returncode}")
        result = json.loads(out.strip().splitlines()[-1])
        result["requests"] = bitrix_counters(env)["requests"]
    result["polled_rss_mb"] = polled[0] / 2 ** 20
    result["answers"] = result["counts"].get("answers_seen", answers)
    return result


# --------------------------------------------------------------------------- output

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--answers", type=int, default=20_000, help="answers for the CPU figures (0: skip)")
    parser.add_argument("--backfill", type=int, default=100_000, help="answers of the RSS backfill (0: skip)")
    parser.add_argument("--repeat", type=int, default=1, help="CPU runs; each stage's best is shown (shared machines)")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--child-sync", metavar="DATABASE_URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_sync:
        child_sync(args.child_sync)
        return

    rows: list[tuple[str, str, str, str]] = []
    notes: list[str] = []
    if args.answers:
        runs = [bench_cpu(args.answers, args.seed) for _ in range(args.repeat)]
        # The machine is shared: keep, per stage, the run that used the least CPU.
        r = {"answers": runs[0]["answers"],
             **{stage: min((run[stage] for run in runs), key=lambda s: s["cpu_s"]) for stage in ("pull", "plan", "real")}}
        per = 1000 / r["answers"]
        pull_cpu, plan_cpu = r["pull"]["cpu_s"] * per, r["plan"]["cpu_s"] * per
        push_cpu = (r["real"]["cpu_s"] - r["plan"]["cpu_s"]) * per
        total = pull_cpu + plan_cpu
        rows += [(f"pull + stage, CPU s / 1,000 answers", f"{pull_cpu:.3f}", "", ""),
                 (f"plan (dry-run), CPU s / 1,000 answers", f"{plan_cpu:.3f}", "", ""),
                 (f"pull + stage + plan, CPU s / 1,000 answers", f"{total:.3f}", f"<= {TARGET_CPU_PER_1000}",
                  "yes" if total <= TARGET_CPU_PER_1000 else "NO"),
                 (f"push (real run - dry-run), CPU s / 1,000", f"{push_cpu:.3f}", "(info)", "")]
        notes.append(f"CPU run: {r['answers']:,} answers{' (best of ' + str(args.repeat) + ')' if args.repeat > 1 else ''}")
        notes.append(f"  {'stage':<24} {'CPU s':>8} {'wall s':>8} {'in GC s':>8} {'full GCs':>8} {'emulators CPU s':>16}")
        for name, label in (("pull", "pull + stage"), ("plan", "dry-run (plan)"), ("real", "real run (plan + push)")):
            s = r[name]
            notes.append(f"  {label:<24} {s['cpu_s']:>8.2f} {s['wall_s']:>8.2f} {s['gc_s']:>8.2f} {s['gc_full']:>8} "
                         f"{s['emulator_cpu_s']:>16.2f}")
        notes.append(f"  real run: outcome {r['real']['outcome']}, {r['real']['requests']} Bitrix24 requests, "
                     + ", ".join(f"{k} {v}" for k, v in sorted(r["real"]["counts"].items())))
    if args.backfill:
        b = bench_backfill(args.backfill, args.seed)
        rss = b["peak_rss_mb"]
        rows.append((f"peak RSS, {b['answers']:,}-answer backfill, MB", f"{rss:.0f}", f"<= {TARGET_RSS_MB}",
                     "yes" if rss <= TARGET_RSS_MB else "NO"))
        rows.append((f"  backfill: CPU s / 1,000 answers (full sync)", f"{b['cpu_s'] * 1000 / b['answers']:.3f}",
                     "(info)", ""))
        notes.append(f"backfill: {b['answers']:,} answers in {b['wall_s']:.0f} s wall, {b['cpu_s']:.0f} s CPU "
                     f"({b['gc_s']:.0f} s in GC, {b['gc_full']} full collections), "
                     f"{b['requests']:,} Bitrix24 requests, outcome {b['outcome']}")
        notes.append(f"  peak RSS of the child: VmHWM {rss:.0f} MB, psutil polling {b['polled_rss_mb']:.0f} MB "
                     f"(its ru_maxrss, {b['maxrss_mb']:.0f} MB, also counts this bench's size at fork)")
        notes.append("  " + ", ".join(f"{k} {v}" for k, v in sorted(b["counts"].items())))

    width = max(len(r[0]) for r in rows) if rows else 40
    print("local overhead (emulators in another process, no latency, no rate limit)")
    print(f"{'measure':<{width}} {'value':>9} {'target':>8} {'ok':>4}")
    for name, value, target, ok in rows:
        print(f"{name:<{width}} {value:>9} {target:>8} {ok:>4}")
    print()
    for line in notes:
        print(line)


if __name__ == "__main__":
    main()
