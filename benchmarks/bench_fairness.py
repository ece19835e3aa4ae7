"""Benchmark the fairness audit: 100k scored rows, three attributes and their intersections.

Prints one JSON line: the wall time of the whole audit (point estimates, 200 person-bootstrap
resamples for every group, metric and disparity, calibration, gate, mitigation), the time of the
bootstrap alone, peak RSS, and fairlearn ``MetricFrame``'s own bootstrap on the same input (the
same seven groupings and rate metrics), measured on a few resamples and extrapolated linearly to
the same number of resamples, as a ratio to ours.

Usage: ``python benchmarks/bench_fairness.py [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time

import numpy as np
import pandas as pd

from fairness.audit import AuditInput, Decision, run_audit
from fairness.bootstrap import PersonBootstrap
from fairness.groups import add_intersections
from fairness.metrics import COUNT_STATS, RATE_FUNCTIONS
from fairness.policy import default_policy, policy_hash

ATTRIBUTES = ["race", "ethnicity", "sex"]


def scored_rows(n: int, seed: int = 7) -> pd.DataFrame:
    """Synthetic scored rows: several rows per person, calibrated probabilities, five bands."""
    rng = np.random.default_rng(seed)
    persons = n // 2
    person = rng.integers(0, persons, n)
    race = rng.choice(["white", "black", "asian", "native_american", "other", "unknown"],
                      persons, p=[0.5, 0.3, 0.05, 0.05, 0.05, 0.05])  # fmt: skip
    ethnicity = rng.choice(["non_hispanic", "hispanic", "unknown"], persons, p=[0.7, 0.25, 0.05])
    sex = rng.choice(["male", "female"], persons, p=[0.8, 0.2])
    p = rng.beta(2, 6, n)
    frame = pd.DataFrame(
        {
            "person": person,
            "race": race[person],
            "ethnicity": ethnicity[person],
            "sex": sex[person],
            "probability": p,
            "label": (rng.random(n) < p).astype(int),
        }
    )
    cuts = [0.0, 0.1, 0.2, 0.35, 0.5]
    frame["band"] = np.asarray(["b1", "b2", "b3", "b4", "b5"])[
        np.searchsorted(cuts, p, "right") - 1
    ]
    frame["decision"] = p >= 0.35
    return frame


def metricframe_bootstrap_seconds(frame: pd.DataFrame, n_boot: int) -> float:
    """fairlearn's MetricFrame bootstrap over the same seven groupings and six rates."""
    from fairlearn.metrics import MetricFrame

    names = ATTRIBUTES + [c for c in frame.columns if " & " in c]
    started = time.perf_counter()
    for name in names:
        MetricFrame(
            metrics=dict(RATE_FUNCTIONS),
            y_true=frame["label"].to_numpy(),
            y_pred=frame["decision"].to_numpy(dtype=int),
            sensitive_features=frame[name],
            n_boot=n_boot,
            ci_quantiles=[0.025, 0.975],
            random_state=1,
        )
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="10k rows, 50 resamples")
    parser.add_argument(
        "--metricframe-resamples",
        type=int,
        default=None,
        help="resamples of MetricFrame's own bootstrap to time (default 4; 2 with --quick)",
    )
    args = parser.parse_args()
    n, resamples, mf_boot = (10_000, 50, 2) if args.quick else (100_000, 200, 4)
    mf_boot = args.metricframe_resamples or mf_boot
    policy = default_policy().model_copy(update={"n_bootstrap": resamples})
    frame = scored_rows(n)

    started, cpu = time.perf_counter(), time.process_time()
    inp = AuditInput(
        frame=frame.copy(),
        attributes=list(ATTRIBUTES),
        report_only=[],
        decisions=[Decision("model:b4", "model", "punitive", "band b4 or above", "decision", True)],
        scores={"model": "probability"},
        calibration=("probability", "band"),
    )
    result = run_audit(inp, policy, policy_digest=policy_hash(policy))
    audit_seconds = time.perf_counter() - started
    audit_cpu = time.process_time() - cpu

    # The bootstrap alone: one resample of persons, every count of every group of 7 groupings.
    add_intersections(frame, ATTRIBUTES)
    names = ATTRIBUTES + [c for c in frame.columns if " & " in c]
    codes, offset = [], 0
    for name in names:
        c, labels = pd.factorize(frame[name])
        codes.append(c + offset)
        offset += len(labels)
    y, d = frame["label"].to_numpy(), frame["decision"].to_numpy(dtype=int)
    started, cpu = time.perf_counter(), time.process_time()
    boot = PersonBootstrap(resamples, seed=1).fit(frame["person"])
    boot.totals(
        np.column_stack([f(y, d) for f in COUNT_STATS.values()]), np.column_stack(codes), offset
    )
    bootstrap_seconds = time.perf_counter() - started
    bootstrap_cpu = time.process_time() - cpu

    cpu = time.process_time()
    measured = metricframe_bootstrap_seconds(frame, mf_boot)
    measured_cpu = time.process_time() - cpu
    extrapolated = measured / mf_boot * resamples
    extrapolated_cpu = measured_cpu / mf_boot * resamples
    print(
        json.dumps(
            {
                "benchmark": "bench_fairness",
                "rows": n,
                "groupings": len(names),
                "groups": offset,
                "resamples": resamples,
                "audit_wall_seconds": round(audit_seconds, 2),
                "audit_cpu_seconds": round(audit_cpu, 2),
                "bootstrap_wall_seconds": round(bootstrap_seconds, 2),
                "bootstrap_cpu_seconds": round(bootstrap_cpu, 2),
                "metricframe_bootstrap_resamples_measured": mf_boot,
                "metricframe_bootstrap_seconds_measured": round(measured, 2),
                "metricframe_bootstrap_seconds_extrapolated": round(extrapolated, 1),
                "metricframe_bootstrap_cpu_seconds_extrapolated": round(extrapolated_cpu, 1),
                "metricframe_over_ours_bootstrap_ratio": round(extrapolated / bootstrap_seconds, 1),
                "metricframe_over_ours_bootstrap_cpu_ratio": round(
                    extrapolated_cpu / bootstrap_cpu, 1
                ),
                "metricframe_over_ours_whole_audit_cpu_ratio": round(
                    extrapolated_cpu / audit_cpu, 1
                ),
                "load_average_1min": round(os.getloadavg()[0], 2),
                "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                "gate_status": result.status,
                "target_audit_seconds": 60,
            }
        )
    )


if __name__ == "__main__":
    main()
