"""Group metrics, the person bootstrap, protected groups and the disparity rule.

Numbers are checked against a hand computation on a small table, and the vectorised bootstrap
against fairlearn's MetricFrame run on the very rows each resample draws.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from fairlearn.metrics import MetricFrame
from sklearn.metrics import roc_auc_score

from fairness.audit import _count_totals
from fairness.bootstrap import NOT_FITTED, PersonBootstrap
from fairness.disparities import DisparityRule, fnr_ratio, fpr_gap, outside_tolerance
from fairness.groups import (
    CONFLICTING,
    UNKNOWN,
    add_intersections,
    age_band,
    person_attribute,
)
from fairness.metrics import COUNT_STATS, DECISION_METRICS, RATE_COUNTS, GroupMetrics

# Group a: (y, d) = (1,1) (1,0) (0,1) (0,0) (0,0): tp 1, fn 1, fp 1, tn 2.
# Group b: (1,1) (1,1) (1,0) (0,1) (0,0) (0,0): tp 2, fn 1, fp 1, tn 2.
HAND = pd.DataFrame(
    {
        "group": ["a"] * 5 + ["b"] * 6,
        "y": [1, 1, 0, 0, 0, 1, 1, 1, 0, 0, 0],
        "d": [1, 0, 1, 0, 0, 1, 1, 0, 1, 0, 0],
    }
)
HAND_RATES = {
    "a": {
        "base_rate": 2 / 5,
        "selection_rate": 2 / 5,
        "fpr": 1 / 3,
        "fnr": 1 / 2,
        "ppv": 1 / 2,
        "npv": 2 / 3,
    },
    "b": {
        "base_rate": 3 / 6,
        "selection_rate": 3 / 6,
        "fpr": 1 / 3,
        "fnr": 1 / 3,
        "ppv": 2 / 3,
        "npv": 2 / 3,
    },
}


def _hand_metrics() -> GroupMetrics:
    return GroupMetrics(DECISION_METRICS, HAND["y"], HAND["d"], sensitive_features=HAND["group"])


def test_group_metrics_match_a_hand_computation():
    table = _hand_metrics().by_group
    for group, rates in HAND_RATES.items():
        for name, value in rates.items():
            assert table.loc[group, name] == pytest.approx(value), (group, name)
    assert table.loc["a", "n"] == 5 and table.loc["b", "positives"] == 3


def test_difference_and_ratio_against_a_reference_group():
    metrics = _hand_metrics()
    assert metrics.ratio(reference="b").loc["a", "fnr"] == pytest.approx(1.5)
    assert metrics.difference(reference="b").loc["a", "fnr"] == pytest.approx(1 / 6)
    assert metrics.ratio(reference="b").loc["b", "fpr"] == pytest.approx(1.0)
    # Without a reference: fairlearn's own between-groups difference (max - min).
    assert metrics.difference()["fnr"] == pytest.approx(1 / 6)
    with pytest.raises(KeyError, match="reference group 'zzz'"):
        metrics.ratio(reference="zzz")


def test_named_disparities_are_thin_layers_over_group_metrics():
    gaps = fpr_gap(HAND["y"], HAND["d"], sensitive_features=HAND["group"], reference="b")
    assert gaps.loc["a", "fpr"] == pytest.approx(0.0)
    ratios = fnr_ratio(HAND["y"], HAND["d"], sensitive_features=HAND["group"], reference="b")
    assert ratios.loc["a", "fnr"] == pytest.approx(1.5)


def _random_table(n: int = 600, seed: int = 4) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    score = np.round(rng.random(n), 1)  # ties on purpose: AUC must count them one half
    return pd.DataFrame(
        {
            "person": rng.integers(0, n // 3, n),
            "group": rng.choice(["x", "y", "z"], n),
            "y": (rng.random(n) < score).astype(int),
            "d": (score >= 0.5).astype(int),
            "score": score,
        }
    )


def test_bootstrap_totals_equal_metricframe_on_the_resampled_rows():
    frame = _random_table()
    codes, labels = pd.factorize(frame["group"])
    boot = PersonBootstrap(n_resamples=4, seed=11).fit(frame["person"])
    y, d = frame["y"].to_numpy(), frame["d"].to_numpy()
    stats = np.column_stack([COUNT_STATS[s](y, d) for s in COUNT_STATS])
    totals = boot.totals(stats, codes, len(labels))
    aucs = boot.auc(y, frame["score"], codes, len(labels))
    names = list(COUNT_STATS)
    for b in range(boot.n_resamples):
        # The resample as rows: every row of a person drawn k times appears k times.
        rows = np.repeat(np.arange(len(frame)), boot.counts_[b][boot.row_person_])
        drawn = frame.iloc[rows]
        reference = MetricFrame(
            metrics={**DECISION_METRICS},
            y_true=drawn["y"],
            y_pred=drawn["d"],
            sensitive_features=drawn["group"],
        ).by_group
        for cell, group in enumerate(labels):
            for rate, (num, den) in RATE_COUNTS.items():
                ours = totals[b, cell, names.index(num)] / totals[b, cell, names.index(den)]
                assert ours == pytest.approx(reference.loc[group, rate]), (b, group, rate)
            part = drawn[drawn["group"] == group]
            assert aucs[b, cell] == pytest.approx(roc_auc_score(part["y"], part["score"]))


def test_audit_count_totals_from_four_terms_equal_each_statistics_own_totals():
    frame = _random_table()
    codes, labels = pd.factorize(frame["group"])
    cells = np.column_stack([codes, np.where(frame["y"] == 1, len(labels), -1)])
    boot = PersonBootstrap(n_resamples=20, seed=2).fit(frame["person"])
    y = frame["y"].to_numpy()
    decisions = [frame["d"].to_numpy(), (frame["score"] >= 0.3).to_numpy(dtype=int)]
    stats = np.column_stack([COUNT_STATS[s](y, d) for d in decisions for s in COUNT_STATS])
    direct = boot.totals(stats, cells, len(labels) + 1)
    assert np.array_equal(_count_totals(boot, y, decisions, cells, len(labels) + 1), direct)


def test_bootstrap_resamples_persons_not_rows_and_is_seeded():
    persons = ["p1"] * 5 + ["p2"] * 5
    boot = PersonBootstrap(n_resamples=50, seed=3).fit(persons)
    cells = np.zeros(10, dtype=int)
    from_p1 = np.r_[np.ones(5), np.zeros(5)][:, None]  # 1 on p1's rows only
    totals = boot.totals(from_p1, cells, 1)[:, 0, 0]
    # A person's five rows travel together: 0, 1 or 2 copies of p1, never a part of them.
    assert set(totals) == {0.0, 5.0, 10.0}
    again = PersonBootstrap(n_resamples=50, seed=3).fit(persons)
    assert np.array_equal(boot.counts_, again.counts_)
    other = PersonBootstrap(n_resamples=50, seed=4).fit(persons)
    assert not np.array_equal(boot.counts_, other.counts_)


def test_bootstrap_interval_covers_the_point_and_checks_fitting():
    frame = _random_table(n=3000)
    codes, labels = pd.factorize(frame["group"])
    boot = PersonBootstrap(n_resamples=200, seed=5).fit(frame["person"])
    y, d = frame["y"].to_numpy(), frame["d"].to_numpy()
    totals = boot.totals(np.column_stack([COUNT_STATS["fp"](y, d), 1 - y]), codes, len(labels))
    fpr = totals[:, :, 0] / totals[:, :, 1]
    lo, hi = boot.interval(fpr)
    point = MetricFrame(
        metrics={"fpr": DECISION_METRICS["fpr"]},
        y_true=y,
        y_pred=d,
        sensitive_features=frame["group"],
    ).by_group["fpr"]
    for cell, group in enumerate(labels):
        assert lo[cell] < point[group] < hi[cell]
        assert hi[cell] - lo[cell] < 0.1
    with pytest.raises(RuntimeError, match=re.escape(NOT_FITTED)):
        PersonBootstrap().totals(np.ones((2, 1)), np.zeros(2, dtype=int), 1)


def test_person_attribute_majority_conflicting_unknown():
    persons = pd.Series(["p1", "p1", "p1", "p2", "p2", "p3", "p3", "p4"])
    values = pd.Series(["black", "Black", "white", "white", "black", None, "unknown", "asian"])
    result = person_attribute(persons, values)
    assert result.to_dict() == {
        "p1": "black",
        "p2": CONFLICTING,
        "p3": UNKNOWN,
        "p4": "asian",
    }


def test_age_bands_and_intersections():
    bands = age_band(pd.Series([17, 25, 34, 35, 60, None]), [25, 35, 45, 55])
    assert bands.tolist() == ["<25", "25-34", "25-34", "35-44", "55+", UNKNOWN]
    frame = pd.DataFrame({"race": ["black", "white"], "sex": ["male", "female"], "eth": ["h", "n"]})
    names = add_intersections(frame, ["race", "sex", "eth"])
    assert names == ["race & sex", "race & eth", "sex & eth", "race & sex & eth"]
    assert frame["race & sex & eth"].tolist() == ["black & male & h", "white & female & n"]


def test_disparity_rule_needs_both_ratio_and_difference():
    point = DisparityRule(decide_by="point")
    assert point.flagged(2.0, 0.02) is False  # 2 % against 1 %: a ratio, no real gap
    assert point.flagged(1.2, 0.10) is False  # inside the tolerance band
    assert point.flagged(0.5, -0.2) is True
    interval = DisparityRule()
    assert interval.flagged(0.5, -0.2, (0.4, 0.7), (-0.3, -0.1)) is True
    assert interval.flagged(0.5, -0.2, (0.4, 0.9), (-0.3, -0.1)) is False  # interval reaches 0.8
    assert interval.flagged(0.5, -0.2, (0.4, 0.7), (-0.3, -0.01)) is False
    assert outside_tolerance(0.1, (0.06, 0.14), tolerance=0.05, decide_by="interval")
    assert not outside_tolerance(0.1, (0.02, 0.14), tolerance=0.05, decide_by="interval")
    assert outside_tolerance(0.1, None, tolerance=0.05, decide_by="point")


@pytest.mark.parametrize(
    "module",
    ["fairness.metrics", "fairness.bootstrap", "fairness.groups", "fairness.disparities",
     "fairness.policy"],
)  # fmt: skip
def test_docstring_examples_run(module):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module))
    assert result.attempted > 0 and result.failed == 0
