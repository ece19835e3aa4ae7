"""Accuracy of the current links estimated from clerks' decisions, without a truth file.

Each linkage run draws a random sample of compared record pairs (:func:`draw_sample`) within
strata of *linked or not* (the two records share a person id) crossed with bands of match
probability (:data:`PROBABILITY_EDGES`: few bands for linked pairs, whose errors decide
precision, more for unlinked ones, whose matches decide recall): half the draws spread evenly
over the strata, so that the rare kinds of pair (a link the model doubted, a non-link it
almost made) are seen, half where they narrow the estimate most (:func:`allocate`). Clerks
decide those pairs like any other (the review page's "sample for accuracy" queue); a
decision taken before the run counts too, since the sample is drawn regardless of it.

:func:`estimate` turns the decided pairs into precision and recall of the run's links:

* each stratum ``h`` of ``N_h`` pairs has an unknown share of matches ``pi_h``; its decided
  pairs (``y_h`` matches out of ``n_h``; ``unsure`` ones left out) give it the posterior
  ``Beta(q_h + y_h, 1 - q_h + n_h - y_h)``, where ``q_h`` is the share the model expects
  (its probabilities' mean) bounded to ``[MIN_SHARE_GUESS, 1 - MIN_SHARE_GUESS]``: a prior
  worth one decided pair, so the decisions outweigh the model wherever there are a few of
  them, and one that never takes the model's extremes at their word (on a generated registry
  1.5 % of the unlinked pairs the model gave under 0.001 were matches, and linked pairs owe
  their link to their cluster as much as to their own probability);
* true links ``TP = sum over linked strata of N_h pi_h``; precision ``TP / L`` (``L`` linked
  pairs, known); recall ``TP / M``, ``M`` every match among the compared pairs;
* point estimates are posterior means; intervals the 2.5 and 97.5 percentiles of precision
  and recall over draws of every ``pi_h`` from its posterior.

Matches that no blocking rule paired and iterative blocking did not find were never compared:
recall is over the compared pairs, and the blocking report's estimated pair completeness says
how many matches lie outside them. Pairs inside a cluster larger than a block are never
compared either, so they are outside the sample (counted as ``linked_not_compared``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

# Bands of match probability (upper edges open, except 1), for linked and for unlinked pairs.
PROBABILITY_EDGES: dict[bool, tuple[float, ...]] = {
    True: (0.0, 0.5, 0.99, 1.0),
    False: (0.0, 0.001, 0.1, 0.9, 1.0),
}
# Half the sample is spread evenly over the strata, half by each stratum's pairs times the
# spread of its share of matches, never taken as below this share (nor above 1 minus it):
# the model's probability is a guess of that share, and its extremes are its worst guesses.
MIN_SHARE_GUESS = 0.05
POSTERIOR_DRAWS = 4000
NOT_ENOUGH = "fewer than {need} decided pairs in stratum {stratum!r} ({have} so far)"


def stratum_name(linked: bool, lower: float, upper: float) -> str:
    """``linked 0.9-0.99``, ``not linked 0.001-0.01``: a stratum's readable name."""
    return f"{'linked' if linked else 'not linked'} {lower:g}-{upper:g}"


def draw_sample(
    left: np.ndarray,
    right: np.ndarray,
    probability: np.ndarray,
    labels: np.ndarray,
    *,
    sample_size: int,
    seed: int = 0,
) -> tuple[pd.DataFrame, dict]:
    """A stratified random sample of the compared pairs.

    Parameters
    ----------
    left, right : ndarray
        Record positions of every compared pair.
    probability : ndarray
        Their match probabilities.
    labels : ndarray
        The cluster (person) of each record.
    sample_size : int
        Pairs to draw in all (see :func:`allocate`).

    Returns
    -------
    sample : DataFrame
        ``row`` (the pair's position in ``left`` / ``right``), ``stratum``, ``linked``,
        ``match_probability`` and ``draw`` (the order of the queue).
    design : dict
        ``strata`` (name -> pairs, linked, lower, upper, expected_matches) and
        ``linked_not_compared``: pairs inside clusters larger than a block, never compared
        and so outside the sample (usually none).
    """
    rng = np.random.default_rng(seed)
    left, right = np.asarray(left, np.int64), np.asarray(right, np.int64)
    linked = labels[left] == labels[right]
    members: dict[str, np.ndarray] = {}
    strata: dict[str, dict] = {}
    for is_linked in (True, False):
        edges = np.asarray(PROBABILITY_EDGES[is_linked])
        band = np.clip(np.searchsorted(edges, probability, side="right") - 1, 0, len(edges) - 2)
        for k in range(len(edges) - 1):
            rows = np.flatnonzero((linked == is_linked) & (band == k))
            if len(rows):
                name = stratum_name(is_linked, edges[k], edges[k + 1])
                members[name] = rows
                strata[name] = {
                    "pairs": int(len(rows)),
                    "linked": is_linked,
                    "lower": float(edges[k]),
                    "upper": float(edges[k + 1]),
                    "expected_matches": round(float(probability[rows].sum()), 2),
                }
    sizes = allocate(sample_size, strata)
    parts = []
    for name, n in sizes.items():
        rows = rng.choice(members[name], size=n, replace=False)
        parts.append(
            pd.DataFrame(
                {
                    "row": rows,
                    "stratum": name,
                    "linked": strata[name]["linked"],
                    "match_probability": probability[rows],
                }
            )
        )
    columns = ["row", "stratum", "linked", "match_probability"]
    sample = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)
    # Drawn stratum by stratum, then put in a random order: a clerk working down the queue
    # covers every stratum early.
    sample = sample.iloc[rng.permutation(len(sample))].reset_index(drop=True)
    sample["draw"] = np.arange(len(sample))
    design = {
        "strata": strata,
        "sample_size": int(len(sample)),
        "linked_not_compared": _linked_not_compared(int(linked.sum()), labels),
    }
    return sample, design


def allocate(total: int, strata: dict[str, dict]) -> dict[str, int]:
    """``total`` draws over the strata: half evenly, half by ``pairs x spread``.

    The spread of a stratum is ``sqrt(q (1 - q))`` with ``q`` its expected share of matches
    bounded to ``[MIN_SHARE_GUESS, 1 - MIN_SHARE_GUESS]`` (Neyman's allocation, on a guess):
    large strata whose share is uncertain get the draws that narrow the estimate most, and
    every stratum gets some. No stratum is given more draws than it holds pairs.

    >>> allocate(10, {"a": {"pairs": 2, "expected_matches": 1.0},
    ...               "b": {"pairs": 100, "expected_matches": 0.0},
    ...               "c": {"pairs": 1000, "expected_matches": 0.0}})
    {'a': 2, 'b': 2, 'c': 6}
    """
    names = list(strata)
    pairs = np.array([strata[name]["pairs"] for name in names], dtype=float)
    share = np.array([strata[name]["expected_matches"] for name in names]) / np.maximum(pairs, 1)
    share = np.clip(share, MIN_SHARE_GUESS, 1 - MIN_SHARE_GUESS)
    spread = pairs * np.sqrt(share * (1 - share))
    goal = total / 2 / max(len(names), 1) + total / 2 * spread / max(spread.sum(), 1e-12)
    out = np.minimum(np.floor(goal), pairs).astype(int)
    # Whole draws left by rounding and by strata too small for their share: to the strata
    # with room, the furthest below their goal first.
    left = min(total, int(pairs.sum())) - int(out.sum())
    while left > 0:
        room = out < pairs
        k = int(np.argmax(np.where(room, goal - out, -np.inf)))
        out[k] += 1
        left -= 1
    return {name: int(n) for name, n in zip(names, out, strict=True)}


def _linked_not_compared(n_compared: int, labels: np.ndarray) -> int:
    """Pairs inside a cluster that were never compared (clusters larger than a block).

    >>> _linked_not_compared(2, np.array([0, 0, 0, 1]))
    1
    """
    sizes = np.bincount(labels).astype(np.int64)
    return int((sizes * (sizes - 1) // 2).sum() - n_compared)


def estimate(
    design: dict,
    decisions: pd.DataFrame,
    *,
    min_labels_per_stratum: int,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict:
    """Precision and recall of the run's links from the decided sample pairs.

    Parameters
    ----------
    design : dict
        The run's sampling design (:func:`draw_sample`).
    decisions : DataFrame
        ``stratum`` and ``decision`` (match, non-match, unsure) of the sample pairs decided.
    min_labels_per_stratum : int
        Below this many match / non-match decisions in any stratum there is no estimate.

    Returns
    -------
    dict
        ``enough`` (bool) and, when enough: ``precision``, ``recall`` and their
        ``*_interval``; always ``labels`` (decided per stratum), ``strata`` (pairs, decided,
        matches, estimated share of matches) and ``missing`` (why there is no estimate).
    """
    strata = design["strata"]
    decided = decisions[decisions["decision"].isin(["match", "non-match"])]
    matches = decided[decided["decision"] == "match"].groupby("stratum").size()
    counts = decided.groupby("stratum").size()
    names = list(strata)
    n = np.array([int(counts.get(name, 0)) for name in names], dtype=float)
    y = np.array([int(matches.get(name, 0)) for name in names], dtype=float)
    sizes = np.array([strata[name]["pairs"] for name in names], dtype=float)
    is_linked = np.array([strata[name]["linked"] for name in names], dtype=bool)
    prior_share = np.clip(
        [strata[name]["expected_matches"] / strata[name]["pairs"] for name in names],
        MIN_SHARE_GUESS,
        1 - MIN_SHARE_GUESS,
    )
    missing = [
        NOT_ENOUGH.format(need=min_labels_per_stratum, stratum=name, have=int(k))
        for name, k in zip(names, n, strict=True)
        if k < min_labels_per_stratum
    ]
    out = {
        "enough": not missing and bool(names),
        "labels": int(n.sum()),
        "labels_needed": int(min_labels_per_stratum * len(names)),
        "strata": {
            name: {
                "pairs": int(sizes[k]),
                "linked": bool(is_linked[k]),
                "decided": int(n[k]),
                "matches": int(y[k]),
                "share_of_matches": round(float((y[k] + prior_share[k]) / (n[k] + 1)), 4),
            }
            for k, name in enumerate(names)
        },
        "missing": missing,
    }
    if not out["enough"]:
        return out
    rng = np.random.default_rng(seed)
    shares = rng.beta(prior_share + y, 1 - prior_share + n - y, size=(POSTERIOR_DRAWS, len(names)))
    expected = shares * sizes
    true_links = expected[:, is_linked].sum(axis=1)
    all_matches = expected.sum(axis=1)
    linked_pairs = sizes[is_linked].sum()
    precision = true_links / linked_pairs if linked_pairs else np.ones(POSTERIOR_DRAWS)
    recall = np.divide(true_links, all_matches, out=np.ones(POSTERIOR_DRAWS), where=all_matches > 0)
    tail = 100 * (1 - confidence) / 2
    for name, draws in (("precision", precision), ("recall", recall)):
        out[name] = round(float(draws.mean()), 4)
        out[f"{name}_interval"] = [
            round(float(np.percentile(draws, tail)), 4),
            round(float(np.percentile(draws, 100 - tail)), 4),
        ]
    out["linked_pairs"] = int(linked_pairs)
    out["estimated_true_links"] = round(float(true_links.mean()), 1)
    out["estimated_matches_compared"] = round(float(all_matches.mean()), 1)
    out["confidence"] = confidence
    return out
