"""Compiled trees give LightGBM's own SHAP contributions, and the model falls back to
LightGBM where its trees do not compile."""

from __future__ import annotations

import pickle

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from training import compiled_trees
from training.compiled_trees import MAX_SPLITS, compile_trees
from training.models import RiskModel


def _data(n: int, seed: int, missing: float) -> tuple[np.ndarray, np.ndarray]:
    """Mixed features: continuous, small counts, many exact zeros, and missing values."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 6))
    X[:, 2] = rng.integers(0, 4, n)
    X[:, 3] = np.where(rng.random(n) < 0.5, 0.0, X[:, 3])
    X[rng.random((n, 6)) < missing] = np.nan
    signal = np.nan_to_num(X[:, 0]) + 0.5 * np.nan_to_num(X[:, 2]) - np.isnan(X[:, 1])
    y = (signal + rng.normal(size=n) > 0.5).astype(int)
    return X, y


@pytest.mark.parametrize(
    ("num_leaves", "missing", "zero_as_missing"),
    [(2, 0.0, False), (7, 0.1, False), (11, 0.2, False), (5, 0.3, True)],
)
def test_contributions_equal_lightgbms(num_leaves, missing, zero_as_missing):
    X, y = _data(3000, num_leaves, missing)
    params = {
        "objective": "binary",
        "num_leaves": num_leaves,
        "min_child_samples": 5,
        "zero_as_missing": zero_as_missing,
        "verbosity": -1,
        "seed": 0,
    }
    booster = lgb.train(params, lgb.Dataset(X, y), num_boost_round=60)
    compiled = compile_trees(booster, num_iteration=50)
    assert compiled is not None
    # Unseen rows: values between and beyond the thresholds, exact zeros, and NaN anywhere.
    rng = np.random.default_rng(99)
    rows = rng.normal(size=(5000, 6)) * 2
    rows[:, 2] = rng.integers(-1, 5, 5000)
    rows[rng.random(rows.shape) < 0.15] = np.nan
    rows[rng.random(rows.shape) < 0.1] = 0.0
    expected = booster.predict(rows, num_iteration=50, pred_contrib=True)[:, :-1]
    got = compiled.contributions(rows)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)
    assert np.any(expected != 0)  # the comparison is not between zeros
    # In chunks or in one pass, one row or many: the same numbers.
    np.testing.assert_array_equal(compiled.contributions(rows[:1]), got[:1])


def test_large_trees_are_left_to_lightgbm():
    X, y = _data(3000, 0, 0.0)
    params = {"objective": "binary", "num_leaves": MAX_SPLITS + 6, "verbosity": -1}
    booster = lgb.train(params, lgb.Dataset(X, y), num_boost_round=5)
    assert compile_trees(booster) is None
    frame = pd.DataFrame(X, columns=[f"f{k}" for k in range(6)])
    model = RiskModel(num_leaves=MAX_SPLITS + 6, min_child_samples=5, max_rounds=20).fit(
        frame[:2000],
        y[:2000],
        eval_set=(frame[2000:2500], y[2000:2500]),
        calibration_set=(frame[2500:], y[2500:]),
    )
    assert model.compiled_trees_ is None
    expected = model.booster_.predict(X, num_iteration=model.best_iteration_, pred_contrib=True)[
        :, :-1
    ]
    np.testing.assert_array_equal(model.contribution_matrix(frame), expected)


def _fitted_model() -> tuple[RiskModel, pd.DataFrame, np.ndarray]:
    X, y = _data(3000, 1, 0.1)
    frame = pd.DataFrame(X, columns=[f"f{k}" for k in range(6)])
    model = RiskModel(min_child_samples=10, max_rounds=40).fit(
        frame[:2000],
        y[:2000],
        eval_set=(frame[2000:2500], y[2000:2500]),
        calibration_set=(frame[2500:], y[2500:]),
    )
    return model, frame, X


def test_model_uses_compiled_trees_built_again_at_load():
    model, frame, X = _fitted_model()
    assert model.compiled_trees_ is not None
    expected = model.booster_.predict(X, num_iteration=model.best_iteration_, pred_contrib=True)[
        :, :-1
    ]
    np.testing.assert_allclose(model.contribution_matrix(frame), expected, rtol=0, atol=1e-12)
    # The tables are never pickled: a fix to the compiler reaches every saved model.
    assert "compiled_trees_" not in model.__getstate__()
    loaded = pickle.loads(pickle.dumps(model))
    assert loaded.compiled_trees_ is not None
    np.testing.assert_allclose(loaded.contribution_matrix(frame), expected, rtol=0, atol=1e-12)


def test_trees_that_disagree_with_lightgbm_fall_back_to_pred_contrib_with_a_warning(monkeypatch):
    model, frame, X = _fitted_model()
    original = compiled_trees.compile_trees

    def broken(booster, num_iteration=None):
        trees = original(booster, num_iteration)
        trees.table = trees.table * 1.01  # a compiler bug
        return trees

    monkeypatch.setattr(compiled_trees, "compile_trees", broken)
    with pytest.warns(RuntimeWarning, match="disagree with LightGBM's pred_contrib"):
        loaded = pickle.loads(pickle.dumps(model))
    assert loaded.compiled_trees_ is None
    expected = model.booster_.predict(X, num_iteration=model.best_iteration_, pred_contrib=True)[
        :, :-1
    ]
    np.testing.assert_array_equal(loaded.contribution_matrix(frame), expected)
