"""``ipvi simulate`` end to end: wall time and peak memory of a generated deployment.

Runs ``ipvi simulate --persons N --seed 1 --json`` in a fresh work folder as its own process
(so its peak resident memory is its own, read from ``getrusage`` of the child) and prints one
JSON line: wall seconds, peak RSS, the seconds of each stage, and the monitor's status. The
issue's target: 20,000 persons in at most 10 minutes on 2 cores. Usage:
``python benchmarks/bench_simulate.py [--quick] [--persons N]``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_SECONDS = 600


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--persons", type=int, default=None)
    args = parser.parse_args()
    persons = args.persons or (2000 if args.quick else 20_000)
    root = Path(__file__).resolve().parent.parent
    with tempfile.TemporaryDirectory() as folder:
        env = {k: v for k, v in os.environ.items() if k not in ("IPVI_CONFIG",)}
        command = [sys.executable, "-m", "ipvi.cli", "simulate", "--persons", str(persons)]
        command += ["--seed", "1", "--workdir", str(Path(folder) / "sim"), "--json"]
        started = time.perf_counter()
        completed = subprocess.run(
            command, capture_output=True, text=True, cwd=root, env=env, check=False
        )
        wall = time.perf_counter() - started
        if completed.returncode != 0:
            raise SystemExit(completed.stderr.strip().splitlines()[-1])
        payload = json.loads(completed.stdout.strip().splitlines()[-1])
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    simulation = payload["simulation"]
    print(
        json.dumps(
            {
                "benchmark": "bench_simulate",
                "persons": persons,
                "wall_seconds": round(wall, 1),
                "peak_rss_mb": round(peak_kb / 1024, 1),
                "target_seconds": TARGET_SECONDS,
                "within_target": wall <= TARGET_SECONDS,
                "stage_seconds": simulation["seconds"],
                "issued": simulation["issued"],
                "decisions": simulation["decisions"],
                "status": payload["status"],
                "cores": os.cpu_count(),
            },
            sort_keys=True,
        )
    )


if __name__ == "__main__":
    main()
