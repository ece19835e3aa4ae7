"""The truth folder is for evaluation only: without it the pipeline produces the same results.

The generator writes its truth beside the extracts; ``ingest`` never opens it and later stages
read it only through ``--truth``. Here the same extracts go through ingest -> link -> train ->
score twice, once with the truth folder beside them and once after deleting it, and the
crosswalk, the model's test predictions and the scores must be identical.
"""

from __future__ import annotations

import shutil

import pandas as pd
import pytest

from ipvi.db import make_engine
from tests.cli_support import run_ipvi

PERSONS = 1200
pytestmark = pytest.mark.slow


def _pipeline(data, home) -> dict[str, pd.DataFrame]:
    env = {
        "IPVI_DATABASE_URL": f"sqlite:///{home / 'registry.sqlite'}",
        "MLFLOW_TRACKING_URI": f"sqlite:///{home / 'mlflow.db'}",
    }
    run_ipvi(["ingest", str(data)], env)
    run_ipvi(["link", "--no-link-index"], env)  # nothing serves here
    run_ipvi(["train"], env)
    run_ipvi(["score", "--all", "--as-of", "2026-01-01", "--model", "challenger"], env)
    engine = make_engine(env["IPVI_DATABASE_URL"])
    with engine.connect() as connection:
        tables = {
            "crosswalk": pd.read_sql(
                "SELECT record_id, person_id, link_probability FROM crosswalk ORDER BY record_id",
                connection,
            ),
            "evaluation_predictions": pd.read_sql(
                "SELECT index_event_id, person_id, as_of, probability, band, tier, label "
                "FROM evaluation_predictions ORDER BY index_event_id",
                connection,
            ),
            "scores": pd.read_sql(
                "SELECT person_id, index_event_id, probability, band, tier, provisional "
                "FROM scores ORDER BY person_id, index_event_id",
                connection,
            ),
        }
    engine.dispose()
    return tables


def test_deleting_the_truth_changes_no_crosswalk_model_or_score(tmp_path):
    data = tmp_path / "data"
    run_ipvi(["generate", "--persons", str(PERSONS), "--seed", "11", "--out", str(data)], {})
    blind = tmp_path / "blind"
    shutil.copytree(data, blind)
    shutil.rmtree(blind / "truth")
    assert (data / "truth").is_dir() and not (blind / "truth").exists()

    home_a, home_b = tmp_path / "a", tmp_path / "b"
    home_a.mkdir()
    home_b.mkdir()
    with_truth = _pipeline(data, home_a)
    without_truth = _pipeline(blind, home_b)

    for name, table in with_truth.items():
        assert len(table) > 0, name
        pd.testing.assert_frame_equal(table, without_truth[name], check_exact=True, obj=name)
