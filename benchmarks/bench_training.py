"""Benchmark of the training stage: train + evaluate, and scoring everyone, at scale.

Prints one JSON line: wall seconds and peak RSS of ``training.pipeline.train`` (model,
scorecard, baselines, person-bootstrap evaluation) and of scoring every person as of one date
(``RiskScorer.score_many``, the ``ipvi score --all`` path without the database), with the
number of index offences and the test figures.

Data: ``--source toy`` (default) uses :func:`synth.histories.toy_history`, fast to make at any
size; ``--source registry`` reads a generated set already ingested and linked into the registry
at ``IPVI_DATABASE_URL`` (truth crosswalk or linkage), with ``--truth DIR/truth`` for the
ceiling. ``--quick`` uses a small size. Seed fixed here so runs compare. The issue-4 accuracy
targets on a fixed generated set, end to end through the CLI, are
``benchmarks/bench_training_generated.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SEED = 20241126


def peak_rss_gb() -> float:
    """Peak resident set size of this process so far, in GB (Linux reports KB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small size, for a smoke run")
    parser.add_argument("--persons", type=int, default=None, help="toy persons (default 70000)")
    parser.add_argument("--source", default="toy", help="'toy' or 'registry'")
    parser.add_argument("--truth", default=None, help="truth folder (with --source registry)")
    args = parser.parse_args()

    import pandas as pd

    from ipvi.columns import Columns
    from ipvi.config import load_config
    from synth.histories import toy_history
    from training.bundle import ModelBundle
    from training.data import load_history, load_truth
    from training.pipeline import train
    from training.result import summary
    from training.scoring import RiskScorer

    config = load_config()
    started = time.perf_counter()
    if args.source == "toy":
        persons = args.persons or (2000 if args.quick else 70000)
        events, mentions, crosswalk = toy_history(persons, seed=SEED)
    else:
        from ipvi.db import make_engine

        events, mentions, crosswalk = load_history(make_engine(config.database_url))
    data_seconds = time.perf_counter() - started
    truth = load_truth(args.truth) if args.truth else None

    started = time.perf_counter()
    result = train(events, mentions, crosswalk, config.training, truth=truth)
    train_seconds = time.perf_counter() - started
    train_rss = peak_rss_gb()

    scorer = RiskScorer(
        ModelBundle.load(result.bundle.save(Path(os.environ.get("TMPDIR", "/tmp")) / "bench")),
        model_name="bench",
        model_version="0",
    )
    as_of = pd.Timestamp(events["recorded_at"].max()).normalize()
    started = time.perf_counter()
    tables = [Columns.from_frame(frame) for frame in (events, mentions, crosswalk)]
    scored = scorer.score_many(*tables, as_of=as_of)
    score_seconds = time.perf_counter() - started

    figures = summary(result)
    print(
        json.dumps(
            {
                "source": args.source,
                "seed": SEED,
                "n_index": result.counts["n_index"],
                "n_train": figures["n_train"],
                "n_test": figures["n_test"],
                "data_seconds": round(data_seconds, 2),
                "train_seconds": round(train_seconds, 2),
                "train_peak_rss_gb": round(train_rss, 3),
                "score_all_persons": len(scored),
                "score_all_seconds": round(score_seconds, 2),
                "peak_rss_gb": round(peak_rss_gb(), 3),
                **{k: figures[k] for k in ("auc", "auc_ci", "ece", "brier", "auc_tiers")},
                **{k: figures[k] for k in ("auc_odara", "auc_scorecard", "tier_shares")},
                **{k: figures[k] for k in ("auc_ceiling", "ece_ceiling", "mae_vs_truth")},
                **{k: figures[k] for k in ("auc_truth_crosswalk", "auc_no_linkage")},
            },
            default=str,
        )
    )


if __name__ == "__main__":
    main()
