"""What keeping an issued score costs a single /v1/score request, next to scoring it.

The service scores a person (``RiskScorer.score_many`` on one inline history) and then keeps
the answer: :func:`training.issued.issued_rows` and one append to the worker's spool file
(:class:`serving.spool.IssuedScoreSpool`); the database write happens later, in the spool's
thread, off the request. This times both per request on the same toy champion in the same
run, and prints their medians and ratio (the issue's budget: at most 0.5 ms per single score
at p50). Usage: ``python benchmarks/bench_issued.py [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from serving.schemas import SCORE_EXAMPLE, ScoreRequest  # noqa: E402
from serving.scoring import history_frames, utc_naive  # noqa: E402
from serving.spool import IssuedScoreSpool  # noqa: E402
from synth.champion import toy_champion  # noqa: E402
from training.issued import issued_rows  # noqa: E402
from training.scoring import RiskScorer  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    repeats = 300 if args.quick else 3000
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        store = toy_champion(folder)
        scorer = RiskScorer.from_registry(store["tracking_uri"], "ipvi-risk", "champion")
        request = ScoreRequest.model_validate_json(json.dumps(SCORE_EXAMPLE))
        frames = history_frames(request.histories)
        as_of = utc_naive(request.as_of)
        people = [h.person_id for h in request.histories]
        spool = IssuedScoreSpool(folder / "spool", engine_getter=lambda: None, flush_seconds=60)
        scoring, keeping = [], []
        for _ in range(repeats):
            started = time.perf_counter()
            scored = scorer.score_many(*frames, as_of=as_of, person_ids=people)
            scored_at = time.perf_counter()
            spool.append(
                issued_rows(
                    scored,
                    features=scorer.bundle.features,
                    source="api",
                    history="inline",
                    issued_at=datetime.now(),
                )
            )
            kept_at = time.perf_counter()
            scoring.append(scored_at - started)
            keeping.append(kept_at - scored_at)
        spooled = spool.pending_rows()
    score_ms, keep_ms = 1000 * np.median(scoring), 1000 * np.median(keeping)
    print(
        json.dumps(
            {
                "benchmark": "bench_issued",
                "requests": repeats,
                "rows_spooled": spooled,
                "score_p50_ms": round(score_ms, 4),
                "keep_issued_p50_ms": round(keep_ms, 4),
                "keep_issued_p90_ms": round(1000 * np.quantile(keeping, 0.9), 4),
                "keep_over_score_ratio": round(keep_ms / score_ms, 4),
                "budget_ms": 0.5,
            }
        )
    )


if __name__ == "__main__":
    main()
