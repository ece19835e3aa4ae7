"""``ipvi monitor`` over two years of issued scores for 100,000 persons (target: <= 60 s and
<= 4 GB on 2 cores).

The registry is built as a deployment would fill it, through the project's own code, and
only the monitor is timed:

- histories: :func:`synth.histories.toy_history` for 100,000 offenders over 2017-2025 (its
  careers run on into 2026, the extract), about 1.4 million events and 1.8 million
  mentions, linked as generated (the crosswalk is the truth: linkage is not what is
  measured); each offender gets a race and an ethnicity on every mention of them, for the
  group tables and the re-audit, and a home zip (one of 40), for the count alarm's scan;
- the champion: trained as ``ipvi train`` trains (:func:`training.run.train_from_registry`)
  with the extract date set to 2024-01-01: what was recorded by then, labels whose window
  closed by then; registered in MLflow, its run stored (training distribution, test
  predictions) and promoted;
- issued scores: the monthly tier lists of 2024 and 2025, each scoring every person with an
  IPV offence known on its date through the scoring core, written as ``ipvi score --all``
  writes them (``batch``) — 24 lists, so each offence is scored many times, as in a
  deployment; outcomes of the first year mature by the extract;
- staff decisions: one for about a third of the offences, 10 % of them overriding the tier.

The monitor runs as the command a site would schedule (``ipvi monitor --as-of EXTRACT --json
F``), in its own process; its wall time, CPU seconds and the peak resident memory of its
process tree (the monitor and its helper processes together, and each at its own peak) are
printed as one JSON line. Usage: ``python benchmarks/bench_monitor.py [--quick] [--keep
DIR]``; a DIR built before is reused (its ``built.json``), so only the monitor runs and is
timed again.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_foundation import PeakRss  # noqa: E402
from sqlalchemy import func, select  # noqa: E402

from fairness.promotion import set_champion  # noqa: E402
from ipvi.bulk import bulk_insert  # noqa: E402
from ipvi.config import load_config  # noqa: E402
from ipvi.db import open_registry, session_scope  # noqa: E402
from ipvi.site_key import load_site_key  # noqa: E402
from ipvi.tables.ingest import events as events_t  # noqa: E402
from ipvi.tables.ingest import mentions as mentions_t  # noqa: E402
from ipvi.tables.linkage import crosswalk as crosswalk_t  # noqa: E402
from ipvi.tables.linkage import persons as persons_t  # noqa: E402
from ipvi.tables.monitoring import issued_scores  # noqa: E402
from ipvi.tables.serving import decisions as decisions_t  # noqa: E402
from synth.histories import toy_history  # noqa: E402
from training.data import SCORING_MENTIONS, read_history  # noqa: E402
from training.issued import write_issued  # noqa: E402
from training.run import train_from_registry  # noqa: E402
from training.scoring import RiskScorer  # noqa: E402

MODEL_NAME = "ipvi-risk"
START, YEARS = "2017-01-01", 8
TRAINED_BY = "2024-01-01"
LISTS = pd.date_range("2024-01-01", "2025-12-01", freq="MS")  # two years of monthly lists
RACES = (["white", "black", "asian", "native_american", "other"], [0.55, 0.3, 0.06, 0.04, 0.05])
ETHNICITIES = (["non_hispanic", "hispanic"], [0.8, 0.2])
ZIPS = [str(27200 + k) for k in range(40)]
OVERRIDE_REASONS = ["victim request", "new information", "officer judgement", "duplicate person"]


def _attributes(mentions: pd.DataFrame, crosswalk: pd.DataFrame, rng) -> pd.DataFrame:
    """One race, ethnicity and home zip per offender, on every mention of them (victims
    unknown). The zips (of unequal sizes) place each incident for the count alarm, which
    scans them as it would a city's."""
    person = mentions["record_id"].map(crosswalk.set_index("record_id")["person_id"])
    offenders = pd.Index(person[~person.str.startswith("V")].unique())
    race = pd.Series(rng.choice(RACES[0], size=len(offenders), p=RACES[1]), index=offenders)
    ethnicity = pd.Series(
        rng.choice(ETHNICITIES[0], size=len(offenders), p=ETHNICITIES[1]), index=offenders
    )
    zip_code = pd.Series(
        rng.choice(ZIPS, size=len(offenders), p=rng.dirichlet(np.full(len(ZIPS), 2.0))),
        index=offenders,
    )
    return mentions.assign(
        race=person.map(race).fillna("unknown").to_numpy(),
        ethnicity=person.map(ethnicity).fillna("unknown").to_numpy(),
        zip=person.map(zip_code).to_numpy(),
    )


def build(folder: Path, *, persons: int, seed: int) -> dict:
    """The registry, the champion and two years of issued scores and decisions in ``folder``;
    the monitor's environment and what was built."""
    rng = np.random.default_rng(seed)
    url = f"sqlite:///{folder / 'registry.sqlite'}"
    config_path = folder / "config.yaml"
    config_path.write_text(
        yaml.safe_dump(
            {
                "database": {"url": url},
                "mlflow": {
                    "tracking_uri": f"sqlite:///{folder / 'mlflow.db'}",
                    "artifact_location": str(folder / "artifacts"),
                },
                "training": {"extract_date": TRAINED_BY},
                "paths": {
                    "home": str(folder / "home"),
                    "reports_dir": str(folder / "reports"),
                    "audit_key_file": str(folder / "audit.key"),
                },
            }
        )
    )
    env = {
        "IPVI_CONFIG": str(config_path),
        "IPVI_DATABASE_URL": url,
        "MLFLOW_TRACKING_URI": f"sqlite:///{folder / 'mlflow.db'}",
    }
    os.environ.update(env)
    config = load_config(str(config_path))
    run_uri = env["MLFLOW_TRACKING_URI"]
    started = time.perf_counter()
    events, mentions, crosswalk = toy_history(persons, years=YEARS, seed=seed, start=START)
    mentions = _attributes(mentions, crosswalk, rng)
    engine = open_registry(url)
    people = pd.DataFrame({"person_id": sorted(crosswalk["person_id"].unique())})
    people = people.assign(seq=np.arange(1, len(people) + 1), status="active", created_run_id="toy")
    ingested = {"version": 1, "ingest_run_id": 1, "content_hash": "0" * 32}
    with session_scope(engine) as session:
        connection = session.connection()
        bulk_insert(connection, events_t, events.assign(**ingested))
        bulk_insert(connection, mentions_t, mentions.assign(address_confidential=False, **ingested))
        bulk_insert(connection, persons_t, people)
        bulk_insert(connection, crosswalk_t, crosswalk)
    # The champion, as `ipvi train` makes it with the extract date set to TRAINED_BY: only
    # what was recorded by then is known, only windows closed by then are labels.
    run = train_from_registry(engine, config, key=load_site_key(folder / "audit.key", create=True))
    set_champion(
        MODEL_NAME, run["model_version"], reason="benchmark", forced=True, tracking_uri=run_uri
    )
    scorer = RiskScorer.from_registry(run_uri, MODEL_NAME, run["model_version"])
    history = read_history(engine, mention_columns=SCORING_MENTIONS)
    first_scores = []
    for as_of in LISTS:
        scored = scorer.score_many(*history, as_of=as_of).to_frame()
        with session_scope(engine) as session:
            write_issued(session, scored, features=scorer.bundle.features)
        first_scores.append(scored[["person_id", "index_event_id", "as_of", "tier"]])
    offences = pd.concat(first_scores).drop_duplicates(["person_id", "index_event_id"])
    decided = offences.sample(frac=0.33, random_state=seed)
    overridden = rng.random(len(decided)) < 0.1
    actions = list(config.serving.decision_actions)
    staff = pd.DataFrame(
        {
            "decision_id": [uuid.uuid4().hex for _ in range(len(decided))],
            "person_id": decided["person_id"].to_numpy(),
            "action": rng.choice(actions, size=len(decided)),
            "tier_decision": np.where(overridden, "overridden", "followed"),
            "tier": decided["tier"].to_numpy(),
            "reason": np.where(overridden, rng.choice(OVERRIDE_REASONS, len(decided)), None),
            "warnings": [[] for _ in range(len(decided))],
            "key_name": "bench",
            "decided_at": (
                decided["as_of"] + pd.to_timedelta(rng.integers(1, 30, len(decided)), unit="D")
            ).to_numpy(),
            "recorded_at": pd.Timestamp("2026-01-01"),
            "payload_hash": "0" * 64,
        }
    )
    with session_scope(engine) as session:
        bulk_insert(session.connection(), decisions_t, staff)
        rows = session.execute(select(func.count()).select_from(issued_scores)).scalar()
        extract = session.execute(select(func.max(events_t.c.recorded_at))).scalar()
    engine.dispose()
    return {
        "env": env,
        "extract": str(pd.Timestamp(extract).date()),
        "persons": int(len(people[people["person_id"].str.startswith("P")])),
        "events": int(len(events)),
        "mentions": int(len(mentions)),
        "issued_rows": int(rows),
        "offences_scored": int(len(offences)),
        "decisions": int(len(staff)),
        "build_seconds": round(time.perf_counter() - started, 1),
    }


def run_monitor(folder: Path, built: dict) -> dict:
    """``ipvi monitor`` in its own process: its wall time, the peak resident memory of its
    process tree (the monitor and its helper process, summed: :class:`PeakRss`), its CPU
    seconds and its JSON."""
    out = folder / "monitor.json"
    command = [sys.executable, "-m", "ipvi.cli", "monitor", "--as-of", built["extract"]]
    started = time.perf_counter()
    process = subprocess.Popen(
        [*command, "--json", str(out)],
        env={**os.environ, **built["env"]},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    with PeakRss(process.pid, every=0.1) as usage:
        _, stderr = process.communicate()
    seconds = time.perf_counter() - started
    if process.returncode not in (0, 1):  # 1 is an alarm, still a full report
        raise SystemExit(f"ipvi monitor failed ({process.returncode}): {stderr.decode()[-2000:]}")
    payload = json.loads(out.read_text())
    return {
        "monitor_seconds": round(seconds, 2),
        "monitor_peak_rss_mb": round(usage.peak_mb, 1),
        "monitor_peak_rss_mb_by_process": {
            "monitor": round(usage.peak.get("driver", 0) / 2**20, 1),
            "helper": round(usage.peak.get("workers", 0) / 2**20, 1),
        },
        "monitor_cpu_seconds": round(usage.cpu_seconds, 1),
        "monitor_status": payload["status"],
        "offences_monitored": payload["counts"]["issued"],
        "matured": payload["counts"]["matured"],
        "periods": len(payload["periods"]),
        "reaudit_gate": (payload["reaudit"] or {}).get("gate", {}).get("status"),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--keep", type=Path, help="build (or reuse) the registry here")
    args = parser.parse_args()
    persons = 3000 if args.quick else 100_000
    with tempfile.TemporaryDirectory() as tmp:
        folder = (args.keep or Path(tmp)).resolve()
        folder.mkdir(parents=True, exist_ok=True)
        manifest = folder / "built.json"
        if manifest.exists():
            built = json.loads(manifest.read_text())
        else:
            built = build(folder, persons=persons, seed=11)
            manifest.write_text(json.dumps(built))
        figures = run_monitor(folder, built)
    print(
        json.dumps(
            {
                "benchmark": "bench_monitor",
                **{k: v for k, v in built.items() if k != "env"},
                **figures,
                "cpu_count": os.cpu_count(),
                "target_seconds": 60,
                "target_rss_mb": 4096,
            }
        )
    )


if __name__ == "__main__":
    main()
