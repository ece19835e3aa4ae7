"""Run every benchmark script (benchmarks/bench_*.py) and pass its JSON lines through.

Usage: ``python benchmarks/run.py [--quick] [NAME ...]``. Each script prints one JSON line of
figures per measurement (most make one); this runner adds the script name and passes every line
through, so the whole output is JSON lines. A script that fails prints a JSON line with its
error instead.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def run(script: Path, quick: bool) -> list[dict]:
    command = [sys.executable, str(script), *(["--quick"] if quick else [])]
    started = time.perf_counter()
    completed = subprocess.run(command, capture_output=True, text=True, cwd=HERE.parent)
    lines = [line for line in completed.stdout.splitlines() if line.startswith("{")]
    if completed.returncode != 0 or not lines:
        tail = (completed.stderr.strip().splitlines() or ["no output"])[-1]
        return [{"benchmark": script.stem, "error": tail, "exit_code": completed.returncode}]
    measurements = [json.loads(line) for line in lines]
    for figures in measurements:
        figures.setdefault("benchmark", script.stem)
    measurements[-1]["runner_wall_seconds"] = round(time.perf_counter() - started, 2)
    return measurements


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("names", nargs="*", help="run only benchmarks whose name contains these")
    args = parser.parse_args()
    scripts = sorted(HERE.glob("bench_*.py"))
    if args.names:
        scripts = [s for s in scripts if any(name in s.stem for name in args.names)]
    failed = 0
    for script in scripts:
        for figures in run(script, args.quick):
            failed += "error" in figures
            print(json.dumps(figures, sort_keys=True), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
