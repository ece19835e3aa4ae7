"""Incremental linking: service start-up and one new record against N linked mentions.

Prepares a SQLite registry in a child process (generated mentions, linked by the batch
:class:`~linkage.linker.Linker`, its crosswalk and stored model written as ``ipvi link``
writes them), then, in this process, times what the service does at start-up,
:func:`linkage.run.load_link_index` (read + standardise + index, no refit), and links held-out
mentions one at a time. Prints ONE JSON line: build seconds, latency (median, p95, max in ms),
how often the linked person is the true one, and the peak RSS of this process (the service's
share; the preparation's RSS is reported apart).

    .venv/bin/python benchmarks/bench_linkage_incremental.py [--quick] [--size 1000000]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import numpy as np

from synth.mentions import IDENTIFIER_FIELDS

ROOT = Path(__file__).resolve().parents[1]
RUN_ID = "LR-bench"


def split(size: int, queries: int):
    """Generated mentions, the indexed part and the held-out queries, and the truth."""
    from synth.mentions import generate_mentions

    mentions, truth = generate_mentions(size + queries, seed=7)
    held_out = np.random.default_rng(1).choice(len(mentions), queries, replace=False)
    is_query = np.zeros(len(mentions), dtype=bool)
    is_query[held_out] = True
    return mentions[~is_query].reset_index(drop=True), mentions[is_query], truth


def prepare(url: str, size: int, queries: int, out: Path) -> dict:
    """Link the indexed mentions and write mentions, crosswalk and model into ``url``.

    The held-out queries, their true persons and each linked person's true person (the most
    common among its mentions) go to the JSON file ``out``, so the measuring process holds
    nothing but what the service holds.
    """
    import pandas as pd
    from sqlalchemy import insert

    from ipvi.config import load_config
    from ipvi.db import open_registry
    from ipvi.tables.linkage import linkage_models, linkage_runs
    from linkage.linker import Linker
    from linkage.settings import LinkageSettings

    start = time.perf_counter()
    indexed, held_out, truth = split(size, queries)
    settings = LinkageSettings.from_config(load_config().linkage)
    linker = Linker(settings)
    result = linker.run(linker.standardize(indexed[list(IDENTIFIER_FIELDS)]), standardized=True)
    link_seconds = time.perf_counter() - start
    engine = open_registry(url)
    dob = pd.to_datetime(indexed["dob"], errors="coerce", format="%Y-%m-%d").dt.date
    table = indexed[
        ["record_id", *[f for f in IDENTIFIER_FIELDS if f != "dob"], "race", "ethnicity"]
    ].assign(
        agency="police",
        dob=dob.where(dob.notna(), None),
        dob_raw=indexed["dob"],
        address_confidential=False,
        event_id=[f"E-{i}" for i in range(len(indexed))],
        role="suspect",
        version=1,
        ingest_run_id=1,
        content_hash="x",
    )
    walk = pd.DataFrame(
        {
            "record_id": indexed["record_id"],
            "person_id": [f"P{label:08d}" for label in result.labels],
            "link_probability": result.link_confidence(settings.config.link_threshold),
            "linkage_run_id": RUN_ID,
        }
    )
    with engine.begin() as connection:
        table.to_sql("mentions", connection, if_exists="append", index=False, chunksize=50_000)
        walk.to_sql("crosswalk", connection, if_exists="append", index=False, chunksize=50_000)
        connection.execute(
            insert(linkage_runs).values(
                run_id=RUN_ID,
                started_at=datetime.now(),
                finished_at=datetime.now(),
                status="succeeded",
            )
        )
        connection.execute(
            insert(linkage_models).values(
                run_id=RUN_ID, settings_hash=settings.model_hash, model=result.model.to_dict()
            )
        )
    engine.dispose()
    true_person = truth.reindex(indexed["record_id"]).to_numpy()
    cluster_truth = (
        pd.Series(true_person).groupby(walk["person_id"].to_numpy()).agg(lambda s: s.mode().iloc[0])
    )
    out.write_text(
        json.dumps(
            {
                "queries": held_out[list(IDENTIFIER_FIELDS)].to_dict("records"),
                "truth": truth.reindex(held_out["record_id"]).tolist(),
                "cluster_truth": cluster_truth.to_dict(),
            }
        )
    )
    return {
        "prepare_link_seconds": round(link_seconds, 3),
        "prepare_peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(ROOT))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20k mentions")
    parser.add_argument("--size", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--prepare", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    size = 20_000 if args.quick else args.size
    if args.prepare:
        url, out = args.prepare.split("|")
        print(json.dumps(prepare(url, size, args.queries, Path(out))))
        return 0

    from ipvi.config import load_config
    from ipvi.db import make_engine
    from linkage.run import load_link_index

    with tempfile.TemporaryDirectory() as folder:
        url, out = f"sqlite:///{folder}/registry.db", Path(folder) / "queries.json"
        child = [sys.executable, __file__, "--prepare", f"{url}|{out}", "--size", str(size)]
        child += ["--queries", str(args.queries)]
        done = subprocess.run(child, check=True, capture_output=True, text=True)
        prepared = json.loads(done.stdout)
        held_out = json.loads(out.read_text())
        engine = make_engine(url)
        start = time.perf_counter()
        index = load_link_index(engine, load_config().linkage)
        build = time.perf_counter() - start
        engine.dispose()
    latencies, correct, linked = [], 0, 0
    for record, true_person in zip(held_out["queries"], held_out["truth"], strict=True):
        match = index.link(record)
        latencies.append(match.elapsed_ms)
        if match.person_id is not None:
            linked += 1
            correct += held_out["cluster_truth"].get(match.person_id) == true_person
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
                **prepared,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
