"""Linkage quality against a truth: pairwise and B-cubed scores after clustering, by group.

Pairwise scores count same-cluster record pairs; B-cubed scores average, per record, how much of
its predicted cluster is its true person (precision) and how much of its person its cluster holds
(recall). Both are computed from the contingency table of (predicted cluster, true person) sizes,
never by listing pairs. By group (race, ethnicity), a pair counts for a group when either record
is in it, so a false merge across groups is charged to both.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def _pairs(n: np.ndarray) -> np.ndarray:
    n = n.astype(np.float64)
    return n * (n - 1) / 2


def _f1(precision: float, recall: float) -> float:
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def cluster_metrics(
    predicted: np.ndarray, truth: np.ndarray, in_group: np.ndarray | None = None
) -> dict[str, float]:
    """Pairwise P/R/F1, B-cubed P/R/F1, split rate and false-merge rate.

    Parameters
    ----------
    predicted, truth : array
        Cluster label and true person of each record.
    in_group : bool array, optional
        Restrict to pairs touching (and records in) this group.

    Examples
    --------
    >>> m = cluster_metrics(np.array([0, 0, 1, 2]), np.array(["a", "a", "a", "b"]))
    >>> round(m["pairwise_precision"], 3), round(m["pairwise_recall"], 3)
    (1.0, 0.333)
    """
    predicted = pd.factorize(pd.Series(predicted))[0]
    truth = pd.factorize(pd.Series(truth))[0]
    group = np.ones(len(predicted), bool) if in_group is None else np.asarray(in_group, bool)
    frame = pd.DataFrame({"p": predicted, "t": truth, "g": group.astype(np.int64)})

    def touching(keys: list[str]) -> float:
        sizes = frame.groupby(keys, sort=False)["g"].agg(["size", "sum"])
        return float(
            (
                _pairs(sizes["size"].to_numpy()) - _pairs((sizes["size"] - sizes["sum"]).to_numpy())
            ).sum()
        )

    true_positive = touching(["p", "t"])
    predicted_pairs = touching(["p"])
    true_pairs = touching(["t"])
    precision = true_positive / predicted_pairs if predicted_pairs else 1.0
    recall = true_positive / true_pairs if true_pairs else 1.0

    cell = frame.groupby(["p", "t"])["g"].transform("size").to_numpy()
    cluster_size = frame.groupby("p")["g"].transform("size").to_numpy()
    person_size = frame.groupby("t")["g"].transform("size").to_numpy()
    b_precision = float((cell / cluster_size)[group].mean()) if group.any() else 1.0
    b_recall = float((cell / person_size)[group].mean()) if group.any() else 1.0

    members = frame[frame.g == 1]
    persons = frame[frame.t.isin(members.t)].groupby("t")["p"].nunique()
    person_records = frame[frame.t.isin(members.t)].groupby("t").size()
    multi = person_records[person_records > 1].index
    split_rate = float((persons.loc[multi] > 1).mean()) if len(multi) else 0.0
    clusters = frame[frame.p.isin(members.p)].groupby("p")["t"].nunique()
    cluster_records = frame[frame.p.isin(members.p)].groupby("p").size()
    multi_clusters = cluster_records[cluster_records > 1].index
    false_merge = float((clusters.loc[multi_clusters] > 1).mean()) if len(multi_clusters) else 0.0
    return {
        "pairwise_precision": precision,
        "pairwise_recall": recall,
        "pairwise_f1": _f1(precision, recall),
        "bcubed_precision": b_precision,
        "bcubed_recall": b_recall,
        "bcubed_f1": _f1(b_precision, b_recall),
        "split_rate": split_rate,
        "false_merge_rate": false_merge,
        "records": int(group.sum()),
        "persons": int(frame.t[group].nunique()),
    }


def blocking_metrics(
    left: np.ndarray, right: np.ndarray, truth: np.ndarray, n_total_pairs: float
) -> dict[str, float]:
    """Pair completeness (true pairs among the candidates), reduction ratio, pairs per record."""
    truth = pd.factorize(pd.Series(truth))[0]
    true_pairs = float(_pairs(np.bincount(truth)).sum())
    found = float((truth[left] == truth[right]).sum())
    return {
        "pair_completeness": found / true_pairs if true_pairs else 1.0,
        "reduction_ratio": 1.0 - len(left) / n_total_pairs if n_total_pairs else 0.0,
        "candidate_pairs": int(len(left)),
        "pairs_per_record": len(left) / max(len(truth), 1),
    }


def metrics_by_group(
    predicted: np.ndarray,
    truth: np.ndarray,
    groups: pd.DataFrame,
    min_persons: int = 0,
) -> dict[str, dict[str, dict[str, float]]]:
    """:func:`cluster_metrics` per value of each column of ``groups`` (e.g. race, ethnicity).

    A value with fewer than ``min_persons`` true persons is reported with ``small: true``.
    """
    out: dict[str, dict[str, dict[str, float]]] = {}
    for column in groups.columns:
        values = groups[column].fillna("unknown").astype(str).to_numpy()
        out[column] = {}
        for value in sorted(set(values)):
            metrics = cluster_metrics(predicted, truth, in_group=values == value)
            metrics["small"] = metrics["persons"] < min_persons
            out[column][value] = metrics
    return out
