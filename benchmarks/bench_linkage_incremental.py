"""Incremental linking: one new record against N indexed mentions, in process.

Prints ONE JSON line: index build seconds, per-record latency (median, p95, max in ms) over
held-out mentions, and how often the linked person is the true one.

    .venv/bin/python benchmarks/bench_linkage_incremental.py [--quick] [--size 1000000]
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(ROOT))
    from ipvi.config import load_config
    from linkage.incremental import LinkIndex
    from linkage.linker import Linker
    from linkage.settings import LinkageSettings
    from linkage.synthetic import generate_mentions

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20k mentions")
    parser.add_argument("--size", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=300)
    args = parser.parse_args(argv)
    size = 20_000 if args.quick else args.size
    mentions, truth = generate_mentions(size + args.queries, seed=7)
    fields = [
        "first_name",
        "middle_name",
        "last_name",
        "dob",
        "sex",
        "ssn_last4",
        "street",
        "city",
        "zip",
        "phone",
    ]
    held_out = np.random.default_rng(1).choice(len(mentions), args.queries, replace=False)
    is_query = np.zeros(len(mentions), dtype=bool)
    is_query[held_out] = True
    indexed, queries = mentions[~is_query], mentions[is_query]
    truth_indexed = truth[~is_query]
    settings = LinkageSettings.from_config(load_config().linkage)
    start = time.perf_counter()
    linker = Linker(settings)
    standardized = linker.standardize(indexed[fields])
    result = linker.run(standardized, standardized=True)
    # The index maps each mention to its cluster: here the cluster label stands for a person id.
    index = LinkIndex(settings).fit(
        standardized, indexed["record_id"], result.labels.astype(str), result.model
    )
    build = time.perf_counter() - start
    cluster_truth = truth_indexed.groupby(result.labels).agg(lambda s: s.mode().iloc[0]).to_dict()
    latencies, correct, linked = [], 0, 0
    for _, row in queries.iterrows():
        match = index.link({field: row[field] for field in fields})
        latencies.append(match.elapsed_ms)
        if match.person_id is not None:
            linked += 1
            correct += cluster_truth.get(int(match.person_id)) == truth[row["record_id"]]
    latencies = np.array(latencies)
    print(
        json.dumps(
            {
                "benchmark": "linkage_incremental",
                "indexed_mentions": size,
                "build_seconds": round(build, 3),
                "latency_ms_median": round(float(np.median(latencies)), 3),
                "latency_ms_p95": round(float(np.percentile(latencies, 95)), 3),
                "latency_ms_max": round(float(latencies.max()), 3),
                "queries": len(latencies),
                "linked_share": round(linked / len(latencies), 4),
                "linked_correct_share": round(correct / max(linked, 1), 4),
                "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
