"""Benchmark of the foundation: generate ~1M person mentions, then ingest them into SQLite.

Both steps run as the real commands (``ipvi generate``, ``ipvi ingest``) in child processes, so
the figures are what a user sees. Prints one JSON line: wall seconds of each step and in total,
peak resident memory (the largest child process, from the kernel's accounting and from psutil
sampling), the row counts and the ingest rate. Targets on 2 cores: under 3 minutes end to end and
under 4 GB peak RSS for 1M mentions.

Usage: ``python benchmarks/bench_foundation.py [--quick] [--mentions N] [--seed S]``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
FULL_MENTIONS = 1_000_000
QUICK_MENTIONS = 50_000
# Mentions per offender when the shipped sample does not say (victims and relatives included).
DEFAULT_MENTIONS_PER_PERSON = 14.0


def persons_for(mentions: int) -> int:
    """Offenders to generate for about ``mentions`` mentions, from the sample's own ratio."""
    summary = ROOT / "data_samples" / "truth" / "summary.json"
    ratio = DEFAULT_MENTIONS_PER_PERSON
    if summary.exists():
        figures = json.loads(summary.read_text(encoding="utf-8"))
        if figures.get("persons") and figures.get("mentions"):
            ratio = figures["mentions"] / figures["persons"]
    return max(100, round(mentions / ratio))


def tree_usage(pid: int) -> tuple[dict[str, int], dict[int, float]]:
    """Resident bytes of ``pid`` and every descendant, summed: in all and by role (``driver``:
    ``pid`` itself; ``jvm``: Java processes; ``workers``: the rest, Spark's Python workers);
    and each one's CPU seconds so far."""
    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return {}, {}
    rss_of = {"all": 0, "driver": 0, "jvm": 0, "workers": 0}
    cpu_of: dict[int, float] = {}
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            rss = process.memory_info().rss
            cpu = process.cpu_times()
            role = "driver" if process.pid == pid else "workers"
            if role == "workers" and process.name().startswith("java"):
                role = "jvm"
            rss_of["all"] += rss
            rss_of[role] += rss
            cpu_of[process.pid] = cpu.user + cpu.system
    return rss_of, cpu_of


class PeakRss:
    """Samples the resident memory of a process tree until stopped: the peak bytes of the
    whole tree and of each role at its own peak (``peak``, keys as :func:`tree_usage`'s;
    ``peak_mb``: the whole tree's in MB), and the tree's CPU seconds (``cpu_seconds``: each
    process's as last seen)."""

    def __init__(self, pid: int, every: float = 0.1) -> None:
        self.pid = pid
        self.every = every
        self.peak: dict[str, int] = {}
        self._cpu_of: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def peak_mb(self) -> float:
        return self.peak.get("all", 0) / 2**20

    @property
    def cpu_seconds(self) -> float:
        return sum(self._cpu_of.values())

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            rss_of, cpu_of = tree_usage(self.pid)
            self._cpu_of.update(cpu_of)
            for role, rss in rss_of.items():
                self.peak[role] = max(self.peak.get(role, 0), rss)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_step(command: list[str], env: dict[str, str]) -> tuple[dict, float, float, float]:
    """Run one CLI step; return its JSON line, wall seconds, CPU seconds and peak RSS (MB).

    CPU seconds next to wall seconds show how much a shared machine slowed the step down.
    """
    cpu = _children_cpu()
    started = time.perf_counter()
    process = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    with PeakRss(process.pid) as peak:
        out, err = process.communicate()
    seconds = time.perf_counter() - started
    if process.returncode != 0:
        tail = (err.strip().splitlines() or ["no output"])[-1]
        raise SystemExit(f"{' '.join(command[2:4])} failed: {tail}")
    lines = [line for line in out.splitlines() if line.startswith("{")]
    return json.loads(lines[-1]), seconds, _children_cpu() - cpu, peak.peak_mb


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_MENTIONS:,} mentions")
    parser.add_argument("--mentions", type=int, default=None, help="target number of mentions")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    target = args.mentions or (QUICK_MENTIONS if args.quick else FULL_MENTIONS)
    persons = persons_for(target)
    cli = [sys.executable, "-m", "ipvi.cli"]
    with tempfile.TemporaryDirectory(prefix="ipvi-bench-") as work:
        extracts = Path(work) / "extracts"
        env = {**os.environ, "IPVI_DATABASE_URL": f"sqlite:///{Path(work) / 'registry.sqlite'}"}
        generated, generate_seconds, generate_cpu, generate_peak = run_step(
            [
                *cli,
                "generate",
                "--persons",
                str(persons),
                "--seed",
                str(args.seed),
                "--out",
                str(extracts),
                "--json",
            ],
            env,
        )
        ingested, ingest_seconds, ingest_cpu, ingest_peak = run_step(
            [*cli, "ingest", str(extracts), "--json"], env
        )
        database_mb = sum(f.stat().st_size for f in Path(work).glob("registry.sqlite*")) / 2**20
    kernel_peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # KB on Linux
    total = generate_seconds + ingest_seconds
    figures = {
        "benchmark": "bench_foundation",
        "persons": persons,
        "mentions": generated.get("mentions"),
        "generate_seconds": round(generate_seconds, 2),
        "ingest_seconds": round(ingest_seconds, 2),
        "total_seconds": round(total, 2),
        "generate_cpu_seconds": round(generate_cpu, 2),
        "ingest_cpu_seconds": round(ingest_cpu, 2),
        "load_average_1m": round(os.getloadavg()[0], 2),
        "peak_rss_mb": round(max(kernel_peak, generate_peak, ingest_peak), 1),
        "generate_peak_rss_mb": round(generate_peak, 1),
        "ingest_peak_rss_mb": round(ingest_peak, 1),
        "rows_in": ingested["rows_in"],
        "accepted": ingested["accepted"],
        "accepted_with_issues": ingested["accepted_with_issues"],
        "quarantined": ingested["quarantined"],
        "rows_per_second": round(ingested["rows_in"] / ingest_seconds, 1),
        "database_mb": round(database_mb, 1),
        "cpu_count": os.cpu_count(),
        "target_total_seconds": 180,
        "target_peak_rss_mb": 4096,
    }
    print(json.dumps(figures, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
