"""Batch scoring on Spark (local mode) beside the local engine: ``ipvi score --all``.

For each registry (the shipped sample, and a generated one of ``--persons`` persons, ingested
and linked by the local engine) a toy champion (``synth.champion``) scores every person with
``ipvi score --all --engine local|spark --json`` in a child process, each engine on its own
copy of the registry. Prints ONE JSON line per engine and registry: wall seconds, Spark's
stages, the peak RSS of the command's whole process tree (``bench_spark.measured``), the
persons scored, and for Spark the ratio to the local engine's wall time and whether it wrote
the same tier list (byte for byte) and the same score rows.

    .venv/bin/python benchmarks/bench_spark_scoring.py [--quick] [--persons 20000]
        [--master local[2]]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import sqlite3
import sys
import tempfile
from contextlib import closing
from pathlib import Path

import pandas as pd
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_spark import DRIVER_MEMORY, IPVI, measured, spark_stages  # noqa: E402

from synth.champion import toy_champion  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PERSONS = 20_000
QUICK_PERSONS = 3_000
# What a score row is, without when it was written.
SCORE_ROWS = (
    "select person_id, as_of, probability, band, tier, provisional, tier_reasons, reason_codes,"
    " lethality_flags, model_version from scores order by person_id"
)


def ipvi(args: list[str], env: dict) -> str:
    completed, _, _ = measured([str(IPVI), *args], env)
    if completed.returncode != 0:
        raise RuntimeError(f"ipvi {args[0]}: {completed.stderr.strip()[-500:]}")
    return completed.stdout


def registry(folder: Path, data: Path, env: dict) -> Path:
    """``data`` ingested and linked (local engine) into ``folder/registry.sqlite``."""
    folder.mkdir(parents=True)
    database = folder / "registry.sqlite"
    config = folder / "config.yaml"
    config.write_text(yaml.safe_dump({"database": {"url": f"sqlite:///{database}"}}))
    env = {**env, "IPVI_CONFIG": str(config), "IPVI_DATABASE_URL": f"sqlite:///{database}"}
    ipvi(["ingest", str(data)], env)
    ipvi(["link", "--no-link-index"], env)
    return database


def last_day(database: Path) -> str:
    """The day after the registry's last recorded event: everyone's latest offence is known."""
    with closing(sqlite3.connect(database)) as connection:
        (latest,) = connection.execute("select max(recorded_at) from events").fetchone()
    return str((pd.Timestamp(latest) + pd.Timedelta(days=1)).date())


def score(engine: str, database: Path, folder: Path, env: dict, master: str, as_of: str) -> dict:
    """``ipvi score --all --engine ENGINE`` on a copy of ``database``: its figures."""
    folder.mkdir()
    shutil.copy(database, folder / "registry.sqlite")
    url = f"sqlite:///{folder / 'registry.sqlite'}"
    config = folder / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "database": {"url": url},
                "training": {"list_dir": str(folder / "lists")},
                "spark": {"master": master, "conf": {"spark.driver.memory": DRIVER_MEMORY}},
            }
        )
    )
    env = {**env, "IPVI_CONFIG": str(config), "IPVI_DATABASE_URL": url}
    command = [str(IPVI), "score", "--all", "--as-of", as_of, "--engine", engine, "--json"]
    completed, seconds, peak = measured(command, env)
    if completed.returncode != 0:
        return {"error": (completed.stderr.strip().splitlines() or ["?"])[-1]}
    summary = json.loads(completed.stdout.strip().splitlines()[-1])
    with closing(sqlite3.connect(folder / "registry.sqlite")) as connection:
        rows = connection.execute(SCORE_ROWS).fetchall()
    figures = {
        "wall_seconds": round(seconds, 2),
        "cpu_seconds": peak.pop("cpu"),
        "peak_rss_bytes": peak.get("all", 0),
        "peak_rss_bytes_by_role": {
            role: peak.get(role, 0) for role in ("driver", "jvm", "workers")
        },
        "persons_scored": summary["n_scored"],
        "tier_list": Path(summary["csv"]).read_bytes(),
        "rows": rows,
    }
    if engine == "spark":
        figures["spark_stage_seconds"] = spark_stages(completed.stderr)
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a small generated registry")
    parser.add_argument("--persons", type=int, default=None)
    parser.add_argument("--master", default="local[2]")
    args = parser.parse_args()
    persons = args.persons or (QUICK_PERSONS if args.quick else PERSONS)
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench-spark-scoring-") as name:
        folder = Path(name)
        # The commands' site key (a throw-away one unless set): none is written in the project.
        env = {
            "IPVI_AUDIT_KEY": secrets.token_hex(32),
            **os.environ,
            "PYSPARK_PYTHON": sys.executable,
        }
        champion = toy_champion(folder / "mlflow")
        env["MLFLOW_TRACKING_URI"] = champion["tracking_uri"]
        generated = folder / f"generated-{persons}"
        ipvi(["generate", "--persons", str(persons), "--seed", "7", "--out", str(generated)], env)
        for label, data in (("sample", ROOT / "data_samples"), (f"{persons} persons", generated)):
            database = registry(folder / label.replace(" ", "-"), data, env)
            as_of = last_day(database)
            local = None
            for engine in ("local", "spark"):
                where = folder / f"{label.replace(' ', '-')}-{engine}"
                figures = score(engine, database, where, env, args.master, as_of)
                line = {
                    "benchmark": "bench_spark_scoring",
                    "engine": engine,
                    "registry": label,
                    "as_of": as_of,
                }
                if engine == "spark":
                    line["master"] = args.master
                tier_list, rows = figures.pop("tier_list", None), figures.pop("rows", None)
                line |= figures
                if engine == "local":
                    local = (figures.get("wall_seconds"), tier_list, rows)
                elif local is not None and "error" not in figures:
                    line["wall_ratio_to_local"] = round(figures["wall_seconds"] / local[0], 2)
                    line["same_tier_list"] = tier_list == local[1]
                    line["same_score_rows"] = rows == local[2]
                line["load_average"] = round(load, 2)
                print(json.dumps(line, sort_keys=True), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
