"""`ipvi train` / `ipvi score` end to end: registry tables, MLflow, parity, promotion, purge."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from sqlalchemy import insert, select

from ipvi.cli import main
from ipvi.db import open_registry, session_scope
from ipvi.errors import IpviError
from ipvi.schema import PERSONAL_FIELDS, PROTECTED_FIELDS
from ipvi.tables.ingest import events as events_table
from ipvi.tables.ingest import mentions as mentions_table
from ipvi.tables.linkage import crosswalk as crosswalk_table
from ipvi.tables.training import evaluation_predictions, scores, tier_lists
from synth.histories import toy_history


def _rows(frame: pd.DataFrame) -> list[dict]:
    return frame.astype(object).where(frame.notna(), None).to_dict(orient="records")


def fill_registry(url: str, n_persons: int = 600, seed: int = 5):
    """Store a toy history in the ingest and linkage tables (a stand-in for ingest + link)."""
    engine = open_registry(url)
    events, mentions, crosswalk = toy_history(n_persons, seed=seed)
    stored_events = events.assign(version=1, ingest_run_id=1, content_hash="x")
    for column in ("offense_date", "recorded_at"):
        stored_events[column] = stored_events[column].astype(object)
    stored_mentions = mentions.assign(
        version=1, ingest_run_id=1, content_hash="x", address_confidential=False
    )
    with session_scope(engine) as session:
        session.execute(insert(events_table), _rows(stored_events))
        session.execute(insert(mentions_table), _rows(stored_mentions))
        session.execute(insert(crosswalk_table), _rows(crosswalk))
    return engine


def run_cli(*args: str) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(list(args))
    return code, out.getvalue()


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    folder = tmp_path_factory.mktemp("train")
    url = f"sqlite:///{folder / 'registry.sqlite'}"
    tracking = f"sqlite:///{folder / 'mlflow.db'}"
    config_path = folder / "config.yaml"
    config_path.write_text(
        yaml.safe_dump(
            {
                "database": {"url": url},
                "mlflow": {
                    "tracking_uri": tracking,
                    "artifact_location": str(folder / "artifacts"),
                },
                "training": {"n_bootstrap": 20, "list_dir": str(folder / "lists")},
            }
        )
    )
    saved = {k: os.environ.pop(k, None) for k in ("MLFLOW_TRACKING_URI", "IPVI_DATABASE_URL")}
    engine = fill_registry(url)
    code, out = run_cli("--config", str(config_path), "train", "--json")
    assert code == 0
    figures = json.loads(out.strip().splitlines()[-1])
    yield {
        "engine": engine,
        "figures": figures,
        "tracking": tracking,
        "config": str(config_path),
        "folder": folder,
    }
    engine.dispose()
    for key, value in saved.items():
        if value is not None:
            os.environ[key] = value


def test_train_json_and_evaluation_predictions(setup):
    """The printed figures are those of the stored test predictions, recomputed here with
    scikit-learn; without a truth folder every truth figure is null."""
    from sklearn.metrics import brier_score_loss, roc_auc_score

    figures = setup["figures"]
    assert figures["model_version"] == "1"
    with setup["engine"].connect() as connection:
        rows = pd.read_sql(
            select(evaluation_predictions).where(
                evaluation_predictions.c.run_id == figures["run_id"]
            ),
            connection,
        )
    assert len(rows) == figures["n_test"] > 0
    y = rows["label"]
    tier_ordinal = rows["tier"].map({"D": 1, "C": 2, "B": 3, "A": 4})
    assert figures["auc"] == pytest.approx(roc_auc_score(y, rows["probability"]), abs=1e-9)
    assert figures["brier"] == pytest.approx(brier_score_loss(y, rows["probability"]), abs=1e-9)
    assert figures["auc_tiers"] == pytest.approx(roc_auc_score(y, tier_ordinal), abs=1e-9)
    assert figures["auc_odara"] == pytest.approx(roc_auc_score(y, rows["odara_count"]), abs=1e-9)
    assert figures["auc_scorecard"] == pytest.approx(
        roc_auc_score(y, rows["scorecard_points"]), abs=1e-9
    )
    low, high = figures["auc_ci"]
    assert low < figures["auc"] < high
    assert 0 < figures["ece"] < 0.5
    assert figures["n_train"] > 0
    shares = figures["tier_shares"]
    assert set(shares) <= {"A", "B", "C", "D"} and sum(shares.values()) == pytest.approx(
        1, abs=1e-3
    )
    for key in (
        "auc_ceiling",
        "ece_ceiling",
        "auc_ratio_ci",
        "mae_vs_truth",
        "auc_truth_crosswalk",
        "auc_no_linkage",
    ):
        assert figures[key] is None, key
    columns = set(evaluation_predictions.c.keys())
    assert not (PROTECTED_FIELDS | {"sex"}) & columns and "age" in columns


def test_mlflow_run_version_and_bundle(setup):
    import mlflow
    from mlflow import MlflowClient

    from training.registry import input_example, version_info

    info = version_info(setup["tracking"], "ipvi-risk", "challenger")
    assert info["version"] == setup["figures"]["model_version"]
    assert [b["name"] for b in info["bands"]][-1] == "highest likelihood"
    assert {b["use"] for b in info["bands"]} == {"none", "outreach", "punitive"}
    assert len(info["data_fingerprint"]) == 64
    client = MlflowClient(tracking_uri=setup["tracking"])
    run = client.get_run(info["run_id"])
    assert not {k for k in run.data.params if any(f in k for f in PERSONAL_FIELDS)}
    assert "data_fingerprint" in run.data.params and "model_auc" in run.data.metrics
    artifacts = {a.path for a in client.list_artifacts(info["run_id"])}
    assert {"model_card.md", "feature_definitions.json", "plots"} <= artifacts
    mlflow.set_tracking_uri(setup["tracking"])
    model = mlflow.pyfunc.load_model("models:/ipvi-risk@challenger")
    features = [f["name"] for f in info["feature_definitions"]]
    example = input_example(
        [f for f in features if f in model.metadata.get_input_schema().input_names()]
    )
    p = model.predict(example)
    assert 0 <= float(np.asarray(p)[0]) <= 1


def test_service_path_reproduces_evaluation_predictions(setup):
    from training.scoring import RiskScorer

    scorer = RiskScorer.from_registry(setup["tracking"], "ipvi-risk", "challenger")
    with setup["engine"].connect() as connection:
        stored = pd.DataFrame(
            connection.execute(select(evaluation_predictions).limit(8)).mappings().fetchall()
        )
    for row in stored.itertuples():
        result = scorer.score_from_db(
            setup["engine"],
            person_id=row.person_id,
            as_of=row.as_of,
            index_event_id=row.index_event_id,
        )
        assert abs(result["probability"] - row.probability) < 1e-9
        assert result["tier"] == row.tier and result["band"] == row.band
        assert result["model_version"] == setup["figures"]["model_version"]


def test_set_champion_records_reason(setup):
    from mlflow import MlflowClient

    from fairness.promotion import set_champion
    from training.registry import version_info

    version = setup["figures"]["model_version"]
    with pytest.raises(IpviError, match="reason"):
        set_champion("ipvi-risk", version, forced=True, tracking_uri=setup["tracking"])
    done = set_champion(
        "ipvi-risk", version, forced=True, reason="pilot", tracking_uri=setup["tracking"]
    )
    assert done["previous"] is None
    info = version_info(setup["tracking"], "ipvi-risk", "champion")
    assert info["version"] == version and info["tags"]["promotion_reason"] == "pilot"
    run = MlflowClient(tracking_uri=setup["tracking"]).get_run(info["run_id"])
    assert run.data.tags["champion_promotion_forced"] == "true"
    with pytest.raises(IpviError, match="no version or alias"):
        version_info(setup["tracking"], "ipvi-risk", "99")


def test_score_all_writes_lists_with_changes(setup):
    code, out = run_cli(
        "--config",
        setup["config"],
        "score",
        "--all",
        "--as-of",
        "2019-06-01",
        "--model",
        "challenger",
        "--json",
    )
    assert code == 0
    first = json.loads(out.strip().splitlines()[-1])
    code, out = run_cli(
        "--config",
        setup["config"],
        "score",
        "--all",
        "--as-of",
        "2020-06-01",
        "--model",
        "challenger",
        "--json",
    )
    second = json.loads(out.strip().splitlines()[-1])
    assert first["n_scored"] > 0 and set(first["changes"]) == {"new"}
    listing = pd.read_csv(second["csv"])
    before = set(pd.read_csv(first["csv"])["person_id"])
    on_list = listing[listing["change"] != "left the list"]
    assert len(on_list) == second["n_scored"] and set(on_list["tier"]) <= set("ABCD")
    # "new" is exactly who was not on the first list; those who left are listed at the end.
    now = set(on_list["person_id"])
    assert set(on_list.loc[on_list["change"] == "new", "person_id"]) == now - before
    assert set(listing.loc[listing["change"] == "left the list", "person_id"]) == before - now
    assert listing["change"].value_counts().to_dict() == second["changes"]
    assert on_list["tier_reasons"].str.len().min() > 0
    page = Path(second["html"]).read_text()
    data = json.loads(re.search(r'id="list-data">(.*?)</script>', page, re.S).group(1))
    assert [row[1] for row in data["rows"]] == listing["person_id"].tolist()
    with setup["engine"].connect() as connection:
        assert connection.execute(select(tier_lists)).fetchall()
        n = len(connection.execute(select(scores.c.score_id)).fetchall())
    assert n == first["n_scored"] + second["n_scored"]


def test_purge_step_removes_derived_rows(setup, site_key):
    from ipvi.purge import PurgeTarget
    from ipvi.tables.training import model_training_persons
    from training.store import affected_model_versions, purge_step

    with setup["engine"].connect() as connection:
        trained = set(connection.execute(select(model_training_persons.c.person_hash)).scalars())
        tested = connection.execute(select(evaluation_predictions.c.person_id)).scalars()
        # A person both trained on and in the test period (splits are by time, not by person).
        person = next(p for p in tested if site_key.pseudonym(p) in trained)
    target = PurgeTarget(
        person_id=person, persons=(person,), pseudonyms={person: site_key.pseudonym(person)}
    )
    with session_scope(setup["engine"]) as session:
        versions = affected_model_versions(session, [site_key.pseudonym(person)])
        counts = purge_step(session, target)
        left = session.execute(
            select(evaluation_predictions).where(evaluation_predictions.c.person_id == person)
        ).fetchall()
        after = affected_model_versions(session, [site_key.pseudonym(person)])
    assert counts["evaluation_predictions"] >= 1 and not left
    assert counts["model_versions_trained_on_person"] == len(versions) >= 1
    assert counts["model_training_persons"] == len(versions) and after == []


def test_train_on_empty_registry_is_a_clear_error(tmp_path, capsys):
    config_path = tmp_path / "config.yaml"
    config_path.write_text(
        yaml.safe_dump(
            {
                "database": {"url": f"sqlite:///{tmp_path / 'empty.sqlite'}"},
                "mlflow": {"tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}"},
            }
        )
    )
    code = main(["--config", str(config_path), "train"])
    assert code == 2
    assert "no linked persons" in capsys.readouterr().err


def test_review_pairs_touching_tier_reasons_are_prioritised(sqlite_url):
    from ipvi.tables.linkage import review_pairs
    from training.review_priority import prioritise_review_pairs

    engine = open_registry(sqlite_url)
    pair = {
        "match_probability": 0.6,
        "match_weight": 1.0,
        "evidence": {},
        "status": "pending",
        "linkage_run_id": "L1",
    }
    with session_scope(engine) as session:
        session.execute(
            insert(review_pairs),
            [
                {**pair, "pair_id": "p1", "record_id_a": "R1", "record_id_b": "R9"},
                {**pair, "pair_id": "p2", "record_id_a": "R7", "record_id_b": "R8"},
            ],
        )
    scored = pd.DataFrame(
        {
            "tier": ["A", "D"],
            "provisional": [True, False],
            "tier_reasons": [[{"record_ids": ["R1", "R2"]}], [{"record_ids": ["R3"]}]],
        }
    )
    with session_scope(engine) as session:
        assert prioritise_review_pairs(session, scored) == 1
    with engine.connect() as connection:
        got = dict(
            connection.execute(select(review_pairs.c.pair_id, review_pairs.c.priority)).fetchall()
        )
    assert got == {"p1": 4.5, "p2": None}
    engine.dispose()


def test_evaluation_rows_round_trip_on_each_engine(db_url):
    from training.store import read_predictions, write_run

    engine = open_registry(db_url)
    row = {
        "index_event_id": "PD-E1",
        "person_id": "P1",
        "as_of": pd.Timestamp("2021-03-04"),
        "probability": 0.123456789012345,
        "band": "lower likelihood",
        "band_use": "none",
        "tier": "C",
        "provisional": False,
        "identity_review_required": False,
        "possible_dual_arrest": False,
        "tier_reasons": [{"reason": "first IPV charge", "record_ids": ["PD-R1"]}],
        "reason_codes": [{"text": "age 30", "record_ids": []}],
        "lethality_flags": [],
        "scorecard_points": np.int64(3),
        "odara_count": 1,
        "prior_ipv_offences": 0,
        "age": 30.5,
        "label": 1,
    }
    truth = pd.DataFrame(
        [
            {
                "index_event_id": "PD-E1",
                "person_id": "P1",
                "p_recorded": 0.2,
                "true_reoffense": 1.0,
                "truth_tier": "C",
                "truth_prior_ipv_offences": np.nan,
            }
        ]
    )
    with session_scope(engine) as session:
        write_run(
            session,
            run={"run_id": "r1", "model_version": "1", "model_name": "ipvi-risk"},
            summary={"n_train": 10, "n_test": 1},
            data_fingerprint="0" * 64,
            predictions=pd.DataFrame([row]),
            truth=truth,
            trained_persons=["a" * 64],
        )
    with session_scope(engine) as session:
        stored = read_predictions(session, "r1")
    assert abs(stored.loc[0, "probability"] - row["probability"]) < 1e-12
    assert stored.loc[0, "tier_reasons"][0]["record_ids"] == ["PD-R1"]
    engine.dispose()


def test_person_history_of_many_persons_reads_whole_tables_on_each_engine(db_url, monkeypatch):
    """More persons than a query binds (PostgreSQL takes at most 65,535 parameters) are found
    in the whole tables, with the answer of the query: their events, every mention of those
    events, those mentions' crosswalk rows."""
    import training.data
    from training.data import person_history

    engine = fill_registry(db_url, n_persons=40, seed=8)
    with engine.connect() as connection:
        everyone = connection.execute(select(crosswalk_table.c.person_id).distinct()).scalars()
        persons = sorted(everyone)[::3]
        queried = person_history(connection, persons)
        monkeypatch.setattr(training.data, "MAX_BOUND_PERSONS", 7)
        read_whole = person_history(connection, persons)
    engine.dispose()
    assert len(persons) > 7 and set(persons) <= set(queried[2]["person_id"])
    for one, other in zip(queried, read_whole, strict=True):
        key = one.columns[0]
        assert len(set(one[key])) == len(one)
        pd.testing.assert_frame_equal(
            one.to_frame().sort_values(key).reset_index(drop=True),
            other.to_frame().sort_values(key).reset_index(drop=True),
        )
