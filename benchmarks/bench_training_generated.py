"""Benchmark of the risk model against its ceiling, on a fixed generated set (issue 4 targets).

Runs the real commands in child processes, as a user would: ``ipvi generate`` (60,000
offenders, the seed below), ``ipvi ingest``, ``ipvi link`` and ``ipvi train --truth DIR
--json``, with the registry (SQLite), the MLflow store and its artifacts in one temporary
folder. Prints one JSON line: the figures of ``ipvi train`` next to each target, whether it is
met, and the wall seconds, CPU seconds and peak RSS of every step.

Targets (issue 4): at least 20,000 test index events; AUC >= 0.97 x the ceiling's, with the
lower end of the paired person-bootstrap interval of the ratio >= 0.95; ``mae_vs_truth`` <=
0.02; ECE <= the ceiling's ECE + 0.01; AUC above the tiers', the ODARA-style count's and the
scorecard's; ``auc_no_linkage`` <= AUC - 0.03.

Usage: ``python benchmarks/bench_training_generated.py [--quick] [--persons N] [--seed S]
[--workdir DIR]``. ``--quick`` generates 3,000 offenders (the targets then only indicate).
``--workdir`` keeps the folder and skips the steps whose output is already there, so the
training step can be rerun on the same linked registry. A full run takes about 20 minutes on 2
shared cores (generate and ingest about a minute each, ``ipvi link`` about 11 minutes, train
about 4 minutes with its truth-crosswalk and no-linkage variants).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from bench_foundation import run_step

SEED = 11
FULL_PERSONS = 60_000
QUICK_PERSONS = 3_000
MIN_TEST = 20_000


def _targets(t: dict) -> dict[str, bool | None]:
    """Whether each issue-4 target is met (None when a figure is missing)."""

    def check(*names: str, test) -> bool | None:
        return None if any(t.get(n) is None for n in names) else bool(test())

    return {
        "n_test": check("n_test", test=lambda: t["n_test"] >= MIN_TEST),
        "auc_ratio": check("auc", "auc_ceiling", test=lambda: t["auc"] >= 0.97 * t["auc_ceiling"]),
        "auc_ratio_ci_low": check("auc_ratio_ci", test=lambda: t["auc_ratio_ci"][0] >= 0.95),
        "mae_vs_truth": check("mae_vs_truth", test=lambda: t["mae_vs_truth"] <= 0.02),
        "ece": check("ece", "ece_ceiling", test=lambda: t["ece"] <= t["ece_ceiling"] + 0.01),
        "auc_above_baselines": check(
            "auc",
            "auc_tiers",
            "auc_odara",
            "auc_scorecard",
            test=lambda: t["auc"] > max(t["auc_tiers"], t["auc_odara"], t["auc_scorecard"]),
        ),
        "auc_no_linkage": check(
            "auc", "auc_no_linkage", test=lambda: t["auc_no_linkage"] <= t["auc"] - 0.03
        ),
    }


def _step(name: str, command: list[str], env: dict, output: Path, steps: dict) -> dict:
    """Run one CLI step unless its JSON line was kept from an earlier run in the same folder."""
    if output.exists():
        steps[name] = {"skipped": True}
        return json.loads(output.read_text(encoding="utf-8"))
    figures, seconds, cpu, peak_mb = run_step(command, env)
    output.write_text(json.dumps(figures, default=str), encoding="utf-8")
    steps[name] = {
        "seconds": round(seconds, 2),
        "cpu_seconds": round(cpu, 2),
        "peak_rss_mb": round(peak_mb, 1),
    }
    return figures


def bench(work: Path, persons: int, seed: int) -> dict:
    """Generate, ingest, link and train in ``work``; the figures and targets."""
    data = work / "data"
    override = work / "config.yaml"
    override.write_text(
        json.dumps({"mlflow": {"artifact_location": str(work / "mlartifacts")}}), encoding="utf-8"
    )
    env = {
        **os.environ,
        "IPVI_DATABASE_URL": f"sqlite:///{work / 'registry.sqlite'}",
        "MLFLOW_TRACKING_URI": f"sqlite:///{work / 'mlflow.db'}",
        "IPVI_CONFIG": str(override),
    }
    cli = [sys.executable, "-m", "ipvi.cli"]
    steps: dict = {}
    started = time.perf_counter()
    generated = _step(
        "generate",
        [*cli, "generate", "--persons", str(persons), "--seed", str(seed)]
        + ["--out", str(data), "--json"],
        env,
        work / "generate.json",
        steps,
    )
    _step("ingest", [*cli, "ingest", str(data), "--json"], env, work / "ingest.json", steps)
    _step("link", [*cli, "link", "--no-link-index", "--json"], env, work / "link.json", steps)
    trained, seconds, cpu, peak_mb = run_step(
        [*cli, "train", "--truth", str(data / "truth"), "--json"], env
    )
    steps["train"] = {
        "seconds": round(seconds, 2),
        "cpu_seconds": round(cpu, 2),
        "peak_rss_mb": round(peak_mb, 1),
    }
    keys = (
        "n_train",
        "n_test",
        "auc",
        "auc_ci",
        "auc_ceiling",
        "auc_ratio_ci",
        "mae_vs_truth",
        "ece",
        "ece_ceiling",
        "brier",
        "auc_tiers",
        "auc_odara",
        "auc_scorecard",
        "auc_person_disjoint",
        "auc_truth_crosswalk",
        "auc_no_linkage",
        "tier_shares",
    )
    figures = {key: trained.get(key) for key in keys}
    if figures["auc"] is not None and figures["auc_ceiling"]:
        figures["auc_ratio"] = figures["auc"] / figures["auc_ceiling"]
    return {
        "benchmark": "bench_training_generated",
        "persons": persons,
        "seed": seed,
        "index_offences_observed": generated.get("index_offences_observed"),
        **figures,
        "targets_met": _targets(figures),
        "steps": steps,
        "total_seconds": round(time.perf_counter() - started, 2),
        "peak_rss_mb": max((s.get("peak_rss_mb", 0.0) for s in steps.values()), default=0.0),
        "train_peak_rss_mb": steps["train"]["peak_rss_mb"],
        "load_average_1m": round(os.getloadavg()[0], 2),
        "cpu_count": os.cpu_count(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_PERSONS:,} offenders")
    parser.add_argument("--persons", type=int, default=None, help="offenders to generate")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--workdir", default=None, help="keep (and reuse) this folder")
    args = parser.parse_args(argv)
    persons = args.persons or (QUICK_PERSONS if args.quick else FULL_PERSONS)
    if args.workdir:
        work = Path(args.workdir).resolve()
        work.mkdir(parents=True, exist_ok=True)
        figures = bench(work, persons, args.seed)
    else:
        with tempfile.TemporaryDirectory(prefix="ipvi-bench-train-") as folder:
            figures = bench(Path(folder), persons, args.seed)
    print(json.dumps(figures, sort_keys=True, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
