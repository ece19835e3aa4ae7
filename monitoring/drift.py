"""Drift: how the live inputs, scores, tiers and bands moved away from training.

Per feature, the population stability index (PSI) of each period's issued inputs against the
distribution kept with the run (:mod:`training.reference`: its test period, the most recent
window before deployment), and the
Kolmogorov-Smirnov distance for continuous inputs. For the scores, the PSI of the issued
probabilities against the version's test-period predictions, and the largest change in a tier's
or a band's share, with the smallest change its sampling error leaves plausible (a quarter's
couple of hundred scores move a share by several points by chance alone). None of these needs
an outcome, so drift shows long before outcomes mature.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import norm

# A bin empty on one side contributes as if it held this share (PSI is infinite otherwise).
PSI_FLOOR = 1e-4


def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    """Population stability index: sum of (actual - expected) * ln(actual / expected) over
    bins of shares.

    >>> round(psi(np.array([0.5, 0.5]), np.array([0.5, 0.5])), 6)
    0.0
    """
    e = np.clip(np.asarray(expected, dtype=float), PSI_FLOOR, None)
    a = np.clip(np.asarray(actual, dtype=float), PSI_FLOOR, None)
    return float(np.sum((a - e) * np.log(a / e)))


def _discrete_shares(reference: dict, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(training, live) shares of each training value, plus one bin for unseen values."""
    known = reference["values"]
    live = np.array([(values == v).mean() for v in known] + [0.0])
    live[-1] = 1.0 - live[:-1].sum()
    return np.array([*reference["shares"], 0.0]), live


def _continuous_shares(reference: dict, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    edges = np.asarray(reference["edges"], dtype=float)
    codes = np.searchsorted(edges, values, side="left")
    live = np.bincount(codes, minlength=len(edges) + 1) / len(values)
    return np.asarray(reference["shares"], dtype=float), live


def ks_distance(percentiles: list[float], values: np.ndarray) -> float:
    """Largest gap between the live values' distribution function and the training one, the
    latter interpolated from its 101 percentiles (accurate to about 0.01).

    >>> ks_distance(list(np.linspace(0, 1, 101)), np.linspace(0, 1, 1001)) < 0.01
    True
    """
    grid = np.asarray(percentiles, dtype=float)
    levels = np.linspace(0.0, 1.0, grid.size)
    values = np.sort(np.asarray(values, dtype=float))
    points = np.unique(np.concatenate([grid, values]))
    live = np.searchsorted(values, points, side="right") / values.size
    # The training CDF at each point: the highest level whose percentile is at or below it.
    training = np.interp(points, grid, levels, left=0.0, right=1.0)
    return float(np.max(np.abs(live - training)))


def feature_drift(reference: dict[str, dict], inputs: pd.DataFrame) -> dict[str, dict]:
    """PSI (and KS for continuous inputs) of each feature of ``inputs`` against ``reference``.

    Unknown values (NaN) are compared as their own share (``missing``). A feature with no
    known value in ``inputs`` has no PSI (None).
    """
    out = {}
    for name, entry in reference.items():
        column = inputs[name].to_numpy(dtype=float)
        known = column[~np.isnan(column)]
        result = {
            "kind": entry["kind"],
            "n": int(column.size),
            "missing": float(np.isnan(column).mean()) if column.size else None,
            "missing_at_training": entry["missing"],
            "psi": None,
            "ks": None,
        }
        if known.size:
            shares = _discrete_shares if entry["kind"] == "discrete" else _continuous_shares
            expected, actual = shares(entry, known)
            result["psi"] = psi(expected, actual)
            if entry["kind"] == "continuous":
                result["ks"] = ks_distance(entry["percentiles"], known)
        out[name] = result
    return out


def score_psi(test_probabilities: np.ndarray, issued: np.ndarray) -> float | None:
    """PSI of issued probabilities against the test period's, in the test period's deciles."""
    test = np.asarray(test_probabilities, dtype=float)
    if not test.size or not len(issued):
        return None
    edges = np.unique(np.quantile(test, np.linspace(0.1, 0.9, 9)))
    expected = np.bincount(np.searchsorted(edges, test), minlength=edges.size + 1) / test.size
    live = np.bincount(np.searchsorted(edges, issued), minlength=edges.size + 1) / len(issued)
    return psi(expected, live)


def mix(values: pd.Series, levels: list[str]) -> dict[str, float]:
    """Each level's share of ``values`` (levels in order, absent levels 0)."""
    shares = values.astype(str).value_counts(normalize=True)
    return {level: float(shares.get(level, 0.0)) for level in levels}


def mix_shift(training: dict[str, float], live: dict[str, float]) -> float:
    """The largest absolute change of one level's share."""
    levels = set(training) | set(live)
    return max((abs(live.get(k, 0.0) - training.get(k, 0.0)) for k in levels), default=0.0)


def wilson_interval(share: np.ndarray, n: int, *, confidence: float = 0.95) -> np.ndarray:
    """Wilson score interval of binomial shares observed on ``n`` draws: rows (low, high).

    Unlike share +- z * standard error, it stays inside [0, 1] and keeps its coverage for
    shares near 0 or 1 (a tier a few per cent of scores hold).

    >>> np.round(wilson_interval(np.array([0.0, 0.5]), 100), 3)
    array([[0.   , 0.404],
           [0.037, 0.596]])
    """
    p = np.asarray(share, dtype=float)
    z2 = norm.ppf(0.5 + confidence / 2) ** 2
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = np.sqrt(z2 * p * (1 - p) / n + z2**2 / (4 * n**2)) / (1 + z2 / n)
    return np.stack([centre - half, centre + half])


def mix_shift_low(
    training: dict[str, float],
    live: dict[str, float],
    *,
    n_training: int,
    n_live: int,
    confidence: float = 0.95,
) -> float:
    """The change of a share that the sampling error of both mixes leaves certain: over the
    levels, the largest lower end of the ``confidence`` interval of |live - training share|
    (Newcombe's hybrid score interval of a difference of two independent shares, built from
    each share's Wilson interval); 0 for a level whose interval holds no change.

    ``mix_shift`` is judged by this rather than by the estimate: a share that moved from 0.3
    to 0.4 between 1,500 test-period scores and a quarter's 230 leaves a change of 0.03
    plausible (no warning); the same move on 5,000 scores each leaves no less than 0.08.

    >>> round(mix_shift_low({"A": 0.3}, {"A": 0.4}, n_training=1500, n_live=230), 3)
    0.034
    >>> round(mix_shift_low({"A": 0.3}, {"A": 0.4}, n_training=5000, n_live=5000), 3)
    0.081
    >>> mix_shift_low({"A": 0.3}, {"A": 0.32}, n_training=1000, n_live=230)
    0.0
    """
    levels = sorted(set(training) | set(live))
    before = np.array([training.get(k, 0.0) for k in levels])
    after = np.array([live.get(k, 0.0) for k in levels])
    (low_b, high_b) = wilson_interval(before, n_training, confidence=confidence)
    (low_a, high_a) = wilson_interval(after, n_live, confidence=confidence)
    change = after - before
    low = change - np.hypot(after - low_a, high_b - before)
    high = change + np.hypot(high_a - after, before - low_b)
    # Nearest end of the interval to no change; 0 when the interval straddles it.
    return float(np.max(np.maximum(np.maximum(low, -high), 0.0), initial=0.0))
