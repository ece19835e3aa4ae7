"""Figures the generator reports about its own output: the AUC ceiling and exact-match floor."""

from __future__ import annotations

import numpy as np
import pandas as pd


def roc_auc(y: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney, ties counted half); NaN with one class."""
    y = np.asarray(y, dtype=bool)
    pos, neg = y.sum(), (~y).sum()
    if pos == 0 or neg == 0:
        return float("nan")
    ranks = pd.Series(score).rank(method="average").to_numpy()
    return float((ranks[y].sum() - pos * (pos + 1) / 2) / (pos * neg))


def exact_match_quality(
    first: np.ndarray, last: np.ndarray, dob: np.ndarray, person: np.ndarray
) -> dict[str, float]:
    """Pairwise recall and precision of linking mentions that agree exactly on (first, last, dob).

    Mentions with a missing part never match. True pairs are pairs of mentions of one person.
    """
    frame = pd.DataFrame({"first": first, "last": last, "dob": dob, "person": person})
    per_person = frame.groupby("person").size().to_numpy(dtype=float)
    true_pairs = float((per_person * (per_person - 1) / 2).sum())
    usable = frame[(frame["dob"] >= 0) & (frame["first"] != "") & (frame["last"] != "")]
    keys = ["first", "last", "dob"]
    group = usable.groupby(keys).size().to_numpy(dtype=float)
    predicted = float((group * (group - 1) / 2).sum())
    same = usable.groupby([*keys, "person"]).size().to_numpy(dtype=float)
    correct = float((same * (same - 1) / 2).sum())
    return {
        "exact_match_recall": correct / true_pairs if true_pairs else float("nan"),
        "exact_match_precision": correct / predicted if predicted else float("nan"),
        "true_pairs": true_pairs,
        "predicted_pairs": predicted,
    }


def calibration_by_decile(
    p: np.ndarray, y: np.ndarray, bins: int = 10, z: float = 1.96
) -> pd.DataFrame:
    """Realised rate against the mean probability per decile of ``p``, with an interval.

    The interval is ``z`` times the standard deviation of a sum of Bernoulli(p_i): under exact
    probabilities the realised rate falls inside it 95 % of the time for ``z = 1.96``. (One
    person's index offences are a martingale-difference sequence, so they add no covariance.)
    """
    frame = pd.DataFrame({"p": p, "y": np.asarray(y, dtype=float)})
    frame["decile"] = pd.qcut(frame["p"].rank(method="first"), bins, labels=False)
    grouped = frame.groupby("decile")
    out = grouped.agg(n=("p", "size"), mean_p=("p", "mean"), rate=("y", "mean"))
    var = grouped.apply(lambda g: float((g["p"] * (1 - g["p"])).sum()), include_groups=False)
    half = z * np.sqrt(var.to_numpy()) / out["n"].to_numpy()
    out["low"] = out["mean_p"] - half
    out["high"] = out["mean_p"] + half
    out["inside"] = (out["rate"] >= out["low"]) & (out["rate"] <= out["high"])
    return out
