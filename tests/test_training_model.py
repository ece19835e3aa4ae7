"""Model, scorecard, evaluation, reason codes, tier list and a whole training run (no MLflow)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ipvi.config import load_config
from ipvi.errors import IpviError
from synth.histories import toy_history
from training.evaluate import PersonBootstrap, auc, ece
from training.models import RiskModel
from training.pipeline import train
from training.result import summary
from training.scorecard import MAX_ITEMS, Scorecard
from training.tier_list import LIST_COLUMNS, build_list, write_list


def _config(**changes):
    config = load_config().training.model_copy(deep=True)
    config.n_bootstrap = 20
    for key, value in changes.items():
        setattr(config, key, value)
    return config


@pytest.fixture(scope="module")
def toy():
    return toy_history(700, seed=3)


@pytest.fixture(scope="module")
def trained(toy):
    return train(*toy, _config())


def _xy(n=900, seed=0):
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(
        {
            "prior_ipv_offences": rng.poisson(1.0, n).astype(float),
            "age": rng.uniform(18, 60, n),
            "index_children_present": rng.integers(0, 2, n).astype(float),
        }
    )
    logit = -1.5 + 0.8 * X["prior_ipv_offences"] - 0.03 * (X["age"] - 35)
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int).to_numpy()
    return X, y


def test_risk_model_is_monotone_calibrated_and_checks_input():
    X, y = _xy()
    with pytest.raises(IpviError, match="not fitted"):
        RiskModel().predict_proba(X)
    model = RiskModel(max_rounds=60, min_child_samples=20, seed=1).fit(
        X[:500], y[:500], eval_set=(X[500:700], y[500:700]), calibration_set=(X[700:], y[700:])
    )
    grid = pd.DataFrame(
        {"prior_ipv_offences": np.arange(8.0), "age": 30.0, "index_children_present": 0.0}
    )
    raw = model.raw_score(grid)
    assert np.all(np.diff(raw) >= -1e-12)  # more prior offences never lowers the score
    p = model.predict_proba(X)
    assert p.min() >= 0 and p.max() <= 1 and auc(y, p) > 0.65
    contributions = model.contributions(X[:5])
    assert list(contributions.columns) == list(X.columns)
    # The feature matrix (columns in training order) answers as the table does.
    shuffled = X[X.columns[::-1]]
    matrix = model.feature_matrix(shuffled)
    assert matrix.shape == X.shape and model.feature_matrix(matrix) is matrix
    np.testing.assert_array_equal(model.predict_proba(matrix), p)
    np.testing.assert_array_equal(model.contribution_matrix(matrix[:5]), contributions.to_numpy())
    with pytest.raises(IpviError, match=r"needs 3 columns in training order; got shape \(5, 2\)"):
        model.predict_proba(matrix[:5, :2])
    with pytest.raises(IpviError, match="one class"):
        RiskModel().fit(X, np.zeros(len(X)), eval_set=(X, y), calibration_set=(X, y))
    constant = X.assign(age=40.0)
    with pytest.raises(IpviError, match="feature 'age' is constant"):
        RiskModel().fit(constant, y, eval_set=(X, y), calibration_set=(X, y))
    with pytest.raises(IpviError, match="protected"):
        RiskModel().fit(X.assign(race=1.0), y, eval_set=(X, y), calibration_set=(X, y))


def test_refit_retrains_on_training_and_validation_for_the_chosen_rounds():
    X, y = _xy()
    kwargs = {"max_rounds": 80, "min_child_samples": 20, "seed": 1}
    sets = {"eval_set": (X[500:700], y[500:700]), "calibration_set": (X[700:], y[700:])}
    once = RiskModel(refit=False, **kwargs).fit(X[:500], y[:500], **sets)
    refit = RiskModel(refit=True, **kwargs).fit(X[:500], y[:500], **sets)
    assert refit.best_iteration_ == once.best_iteration_
    assert refit.booster_.num_trees() == refit.best_iteration_
    # The refit trees saw the validation rows too, so they differ from the first fit's.
    assert not np.allclose(refit.raw_score(X[700:]), once.raw_score(X[700:]))


def test_scorecard_has_few_integer_items():
    X, y = _xy()
    card = Scorecard(max_items=12).fit(X, y)
    table = card.table()
    assert 1 <= len(table) <= MAX_ITEMS
    assert table["points"].dtype.kind == "i" and (table["points"] > 0).all()
    points = card.score(X)
    assert points.dtype.kind == "i" and auc(y, points) > 0.6


def test_metrics_and_person_bootstrap():
    rng = np.random.default_rng(0)
    p = rng.uniform(0, 1, 4000)
    y = (rng.random(4000) < p).astype(int)
    assert ece(y, p) < 0.03
    assert ece(y, np.clip(p + 0.2, 0, 1)) > 0.1
    persons = np.repeat(np.arange(2000), 2)
    low, high = PersonBootstrap(persons, n=50, seed=1).interval(lambda w: auc(y, p, w))
    assert low < auc(y, p) < high


def test_training_run_reproducible_and_complete(toy, trained):
    figures = summary(trained)
    again = summary(train(*toy, _config()))
    for key in ("auc", "brier", "ece", "auc_tiers", "auc_odara", "auc_scorecard"):
        assert round(figures[key], 6) == round(again[key], 6)
    assert figures["auc_ci"] == again["auc_ci"]
    assert figures["auc_ceiling"] is None and figures["auc_no_linkage"] is None
    assert figures["auc"] > 0.6 and figures["n_test"] == len(trained.predictions)
    assert set(figures["tier_shares"]) == {"A", "B", "C", "D"}
    predictions = trained.predictions
    assert not {"race", "ethnicity", "sex"} & set(predictions.columns)
    codes = predictions["reason_codes"].iloc[0]
    assert 3 <= len(codes) <= 5 and all("text" in c and "record_ids" in c for c in codes)
    assert any(c["record_ids"] for row in predictions["reason_codes"] for c in row)
    assert predictions["tier_reasons"].map(lambda r: bool(r[0]["record_ids"])).all()
    assert set(predictions["band"]) <= {b.name for b in _config().bands}


def test_time_split_has_a_gap(toy, trained):
    counts = trained.counts
    assert counts["n_gap"] > 0 and counts["n_train"] > 0 and counts["n_calibration"] > 0


def test_bad_input_is_a_clear_error(toy):
    events, mentions, crosswalk = toy
    with pytest.raises(IpviError, match="no index offences with full follow-up"):
        train(events, mentions, crosswalk, _config(extract_date="2015-06-01"))
    with pytest.raises(IpviError, match="no linked persons"):
        train(events, mentions, crosswalk.assign(record_id="x"), _config())
    no_ipv = events.assign(ipv=False)
    with pytest.raises(IpviError, match="no index offences"):
        train(no_ipv, mentions, crosswalk, _config())


def test_tier_list_escapes_formulas_and_reports_changes(trained, tmp_path):
    scored = trained.predictions.drop_duplicates("person_id").head(20).reset_index(drop=True)
    first = build_list(scored, None)
    assert set(first["change"]) == {"new"}
    previous = scored[["person_id", "tier", "band"]].copy()
    previous.loc[0, "tier"] = "A" if scored.loc[0, "tier"] != "A" else "D"
    previous = pd.concat(
        [previous, pd.DataFrame([{"person_id": "gone", "tier": "B", "band": "x"}])]
    )
    rows = build_list(scored.assign(person_id=scored["person_id"]), previous)
    assert "left the list" in set(rows["change"])
    assert rows["change"].str.startswith("tier").sum() == 1
    rows.loc[0, "reason_codes"] = "=cmd|' /C calc'!A0"
    csv_path, html_path = write_list(rows, tmp_path, stem="list", title="<b>list</b>")
    text = csv_path.read_text()
    assert "'=cmd" in text and "\n=cmd" not in text and ",=cmd" not in text
    assert "&lt;b&gt;list&lt;/b&gt;" in html_path.read_text()


def test_truth_metrics_and_variants(toy, tmp_path):
    from ipvi.columns import Columns
    from training.data import load_truth
    from training.offences import assign_offences, index_offences, person_events

    events, mentions, crosswalk = toy
    # Agencies' own person ids (the no-linkage variant treats each as a separate person).
    owner = mentions["record_id"].map(crosswalk.set_index("record_id")["person_id"])
    mentions = mentions.assign(agency_person_id=owner + "@" + mentions["agency"])
    folder = tmp_path / "truth"
    folder.mkdir()
    crosswalk[["record_id", "person_id"]].to_csv(folder / "records.csv", index=False)
    tables = [Columns.from_frame(frame) for frame in (events, mentions, crosswalk)]
    by_person = assign_offences(person_events(*tables))
    index = index_offences(by_person, 3).to_frame()
    event_lists = by_person.to_frame().groupby("offence_id")["event_id"].agg(";".join)
    rng = np.random.default_rng(0)
    pd.DataFrame(
        {
            "event_ids": index["offence_id"].map(event_lists),
            "person_id": index["person_id"],
            "p_recorded": rng.uniform(0.2, 0.8, len(index)),
            "true_reoffense": rng.random(len(index)) < 0.5,
        }
    ).to_csv(folder / "index_offences.csv", index=False)
    result = train(events, mentions, crosswalk, _config(), truth=load_truth(folder))
    figures = summary(result)
    # The ceiling figures, recomputed by hand from the rows' recorded-label probabilities.
    from sklearn.metrics import roc_auc_score

    rows = result.predictions.assign(p_recorded=result.truth["p_recorded"].to_numpy())
    rows = rows[rows["p_recorded"].notna()]
    assert figures["auc_ceiling"] == pytest.approx(
        roc_auc_score(rows["label"], rows["p_recorded"]), abs=1e-9
    )
    gap = (rows["probability"] - rows["p_recorded"]).abs().mean()
    assert figures["mae_vs_truth"] == pytest.approx(gap, abs=1e-9)
    bins = np.clip((rows["p_recorded"] * 10).astype(int), 0, 9)
    by_bin = rows.groupby(bins)[["label", "p_recorded"]].sum()
    ece_by_hand = (by_bin["label"] - by_bin["p_recorded"]).abs().sum() / len(rows)
    assert figures["ece_ceiling"] == pytest.approx(ece_by_hand, abs=1e-9)
    assert figures["auc_no_linkage"] is not None, result.metrics["no_linkage"]
    assert 0.5 < figures["auc_no_linkage"] < 1
    # The truth crosswalk here is the one trained on: the variant must reproduce the model.
    assert abs(figures["auc_truth_crosswalk"] - figures["auc"]) < 1e-9
    assert len(result.truth) == len(result.predictions)
    assert result.truth["p_recorded"].notna().mean() > 0.95
    assert set(result.truth["truth_tier"].dropna()) <= {"A", "B", "C", "D"}


@pytest.mark.parametrize("calibration", ["sigmoid", "isotonic"])
def test_calibration_shortcut_equals_the_calibrators_own_predictions(calibration):
    X, y = _xy()
    model = RiskModel(max_rounds=40, min_child_samples=20, seed=1, calibration=calibration).fit(
        X[:500], y[:500], eval_set=(X[500:700], y[500:700]), calibration_set=(X[700:], y[700:])
    )
    raw = model.raw_score(X)
    if calibration == "sigmoid":
        expected = model.calibrator_.predict_proba(raw.reshape(-1, 1))[:, 1]
    else:
        expected = model.calibrator_.predict(raw)
    np.testing.assert_array_equal(model.predict_proba(X), expected)


def test_risk_model_defaults_are_those_of_ipvi_train():
    """``RiskModel()`` and ``ipvi train`` (the packaged configuration) fit the same model."""
    from ipvi.config import ModelParams, load_config

    model = RiskModel()
    defaults = {name: getattr(model, name) for name in ModelParams.model_fields}
    assert defaults == load_config().training.model.model_dump()
    assert model.calibration == "sigmoid"


def test_tier_list_page_carries_every_row_once_with_a_summary_and_no_markup_injection(
    trained, tmp_path
):
    import json
    import re

    scored = trained.predictions.drop_duplicates("person_id").head(40).reset_index(drop=True)
    hostile = "</script><script>alert(1)</script>"
    scored.at[0, "tier_reasons"] = [{"reason": hostile, "record_ids": ["R-1", "R-2"]}]
    previous = scored[["person_id", "tier", "band"]].iloc[5:].copy()
    previous.loc[previous.index[0], "tier"] = "A" if scored.loc[5, "tier"] != "A" else "D"
    rows = build_list(scored, previous)
    csv_path, html_path = write_list(rows, tmp_path, stem="list", title="list")
    assert csv_path.read_text().splitlines()[0] == ",".join(LIST_COLUMNS)
    page = html_path.read_text()
    assert hostile not in page and "alert(1)" in page  # escaped inside the JSON, not markup
    data = json.loads(re.search(r'id="list-data">(.*?)</script>', page, re.S).group(1))
    summary = json.loads(re.search(r'id="summary-data">(.*?)</script>', page, re.S).group(1))
    assert [row[1] for row in data["rows"]] == rows["person_id"].tolist()
    first = next(row for row in data["rows"] if row[1] == scored.at[0, "person_id"])
    assert data["lookups"]["reasons"][first[8][0][0]] == hostile
    assert first[7].split(" ")[:2] == ["R-1", "R-2"] and first[8][0][1] == "0-1"
    assert {row[2] for row in data["rows"]} <= {0, 1, None}  # shown as yes / no, not True
    counts = scored["tier"].value_counts()
    assert summary["by_tier"] == {t: int(counts.get(t, 0)) for t in "ABCD"}
    assert summary["new"] == 5 and summary["tier_up"] + summary["tier_down"] == 1


def test_a_bundle_with_bad_settings_is_a_clear_error_naming_the_setting(trained, tmp_path):
    import json

    from training.bundle import SETTINGS_FILE, ModelBundle

    folder = trained.bundle.save(tmp_path / "bundle")
    loaded = ModelBundle.load(folder)
    assert loaded.settings == trained.bundle.settings  # what save writes, load reads back
    payload = json.loads((folder / SETTINGS_FILE).read_text())
    payload["settings"]["decision_lag_days"] = "three"
    (folder / SETTINGS_FILE).write_text(json.dumps(payload))
    with pytest.raises(IpviError, match=r"bundle.json setting 'decision_lag_days': .*integer"):
        ModelBundle.load(folder)
