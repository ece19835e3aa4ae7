"""Fellegi-Sunter model: m and u per comparison level, learned without labels.

* ``u`` (how often non-matches reach each level) comes from random pairs, nearly all
  non-matches.
* ``m`` (how often matches reach each level) comes from EM, run once per blocking rule on the
  pairs that rule produced, leaving out the comparisons the rule itself reads (inside a block
  those agree by construction, so they would teach EM nothing true); each comparison's ``m`` is
  the match-weighted mean over the rules that could estimate it (Splink's scheme).
* The prior (the probability that two random records match) is the fixed point of "expected
  matches among the candidate pairs / all pairs".
* Term frequencies: agreement on a rare value is stronger evidence; the exact level of a
  ``tf`` comparison uses ``u = frequency of the value`` instead of the level's mean ``u``.

A pair's match weight is the sum of per-comparison log2 Bayes factors (the evidence a reviewer
sees) plus the prior's log-odds; its probability is the logistic of the weight.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ipvi.errors import IpviError
from linkage.compare import NULL_LEVEL, Comparison

NOT_FITTED = "the Fellegi-Sunter model is not fitted: call fit() first"
MODEL_MISMATCH = "the stored Fellegi-Sunter model does not match the configured comparisons"
# Bounds keep a level that never occurs in one class from giving an infinite weight.
PROBABILITY_FLOOR = 1e-6


class FellegiSunter:
    """Unsupervised Fellegi-Sunter scorer over comparison levels.

    Parameters
    ----------
    comparisons : list of Comparison
        The comparisons whose level matrix is scored (column k of the matrix is comparison k).
    max_iterations : int
        EM iterations per training rule.
    tolerance : float
        EM stops when no m moves by more than this.

    Attributes
    ----------
    m_ : list of ndarray
        P(level | match) per comparison (index 0, missing, is 1: missing is no evidence).
    u_ : list of ndarray
        P(level | non-match) per comparison.
    prior_ : float
        Probability that two random records match.
    tf_ : dict of str -> Series
        Value frequencies of the term-frequency-adjusted comparisons.

    Examples
    --------
    >>> model = FellegiSunter(comparisons=[])
    >>> model.match_weight(np.zeros((1, 0), dtype=np.int8))
    Traceback (most recent call last):
    ...
    ipvi.errors.IpviError: the Fellegi-Sunter model is not fitted: call fit() first
    """

    def __init__(self, comparisons: list[Comparison], max_iterations: int = 100, tolerance=1e-5):
        self.comparisons = comparisons
        self.max_iterations = max_iterations
        self.tolerance = tolerance

    # ------------------------------------------------------------------ fitting

    def fit(
        self,
        levels: np.ndarray,
        random_levels: np.ndarray,
        rule_pairs: list[np.ndarray],
        rule_excluded: list[set[int]],
        n_total_pairs: float,
        tf_values: dict[str, pd.Series] | None = None,
    ) -> FellegiSunter:
        """Learn u from ``random_levels``, m by EM per rule, then the prior.

        Parameters
        ----------
        levels : ndarray (pairs, comparisons)
            Levels of the candidate pairs.
        random_levels : ndarray (pairs, comparisons)
            Levels of random record pairs.
        rule_pairs : list of ndarray
            Row positions in ``levels`` of the pairs each blocking rule produced.
        rule_excluded : list of set of int
            Comparisons each rule reads (not estimated from its pairs).
        n_total_pairs : float
            Number of possible pairs (for the prior).
        tf_values : dict, optional
            Standardised column values (all records) of term-frequency comparisons.
        """
        if levels.shape[1] != len(self.comparisons):
            raise IpviError("level matrix and comparisons disagree in number")
        self.u_ = [
            self._level_frequencies(random_levels[:, k], c) for k, c in enumerate(self.comparisons)
        ]
        # Every pair's level pattern once: EM and the prior then work on pattern counts.
        pattern_of, patterns = pattern_codes(levels)
        self.m_, self.m_support_ = self._estimate_m(pattern_of, patterns, rule_pairs, rule_excluded)
        self.tf_ = {}
        for comparison in self.comparisons:
            if comparison.tf_level() is not None and tf_values and comparison.column in tf_values:
                values = tf_values[comparison.column]
                values = values[values != ""]
                self.tf_[comparison.column] = values.value_counts(normalize=True)
        self.prior_ = PROBABILITY_FLOOR  # placeholder until the fixed point below
        counts = np.bincount(pattern_of, minlength=len(patterns))
        self.prior_ = self._fit_prior(patterns, counts, n_total_pairs)
        return self

    @staticmethod
    def _level_frequencies(column: np.ndarray, comparison: Comparison) -> np.ndarray:
        counts = np.bincount(column, minlength=comparison.n_levels).astype(float)
        counts[NULL_LEVEL] = 0
        counts[1:] += 0.5  # a level unseen among random pairs is rare, not impossible
        frequencies = counts / counts.sum()
        frequencies[NULL_LEVEL] = 1.0
        return np.clip(frequencies, PROBABILITY_FLOOR, 1.0)

    def _initial_m(self, comparison: Comparison) -> np.ndarray:
        # Matches mostly reach the most specific level; the rest spread over the others.
        m = np.full(comparison.n_levels, 0.1 / max(comparison.n_levels - 2, 1))
        m[1] = 0.9
        m[NULL_LEVEL] = 1.0
        return m

    def _estimate_m(self, pattern_of, patterns, rule_pairs, rule_excluded):
        """m per comparison from EM on each rule's pairs (``pattern_of``: pattern per pair)."""
        n_comparisons = len(self.comparisons)
        sums = [np.zeros(c.n_levels) for c in self.comparisons]
        support = np.zeros(n_comparisons)
        for pairs, excluded in zip(rule_pairs, rule_excluded, strict=True):
            active = [k for k in range(n_comparisons) if k not in excluded]
            if len(pairs) == 0 or not active:
                continue
            rule_counts = np.bincount(pattern_of[pairs], minlength=len(patterns))
            present = np.flatnonzero(rule_counts)
            # The rule's patterns on its active comparisons, merged where they now coincide.
            sub_of, sub_patterns = pattern_codes(patterns[np.ix_(present, active)])
            counts = np.bincount(sub_of, weights=rule_counts[present])
            m_rule, expected_matches = self._em(sub_patterns, counts, active)
            for j, k in enumerate(active):
                sums[k] += m_rule[j] * expected_matches
                support[k] += expected_matches
        m = []
        for k, comparison in enumerate(self.comparisons):
            estimate = sums[k] / support[k] if support[k] > 0 else self._initial_m(comparison)
            estimate[NULL_LEVEL] = 1.0
            m.append(np.clip(estimate, PROBABILITY_FLOOR, 1.0))
        return m, support

    def _em(self, patterns: np.ndarray, counts: np.ndarray, active: list[int]):
        """EM for m and the in-block match share on aggregated patterns; u stays fixed."""
        comparisons = [self.comparisons[k] for k in active]
        u = [self.u_[k] for k in active]
        m = [self._initial_m(c) for c in comparisons]
        share = 0.1
        log_u = sum(np.log(u[j][patterns[:, j]]) for j in range(len(active)))
        for _ in range(self.max_iterations):
            log_m = sum(np.log(m[j][patterns[:, j]]) for j in range(len(active)))
            log_odds = np.log(share) - np.log1p(-share) + log_m - log_u
            posterior = 1.0 / (1.0 + np.exp(-np.clip(log_odds, -700, 700)))
            weighted = posterior * counts
            share = float(np.clip(weighted.sum() / counts.sum(), 1e-9, 1 - 1e-9))
            moved = 0.0
            for j, comparison in enumerate(comparisons):
                totals = np.bincount(
                    patterns[:, j], weights=weighted, minlength=comparison.n_levels
                )
                totals[NULL_LEVEL] = 0
                if totals.sum() <= 0:
                    continue
                new = np.clip(totals / totals.sum(), PROBABILITY_FLOOR, 1.0)
                new[NULL_LEVEL] = 1.0
                moved = max(moved, float(np.abs(new - m[j]).max()))
                m[j] = new
            if moved < self.tolerance:
                break
        return m, float(weighted.sum())

    def _fit_prior(self, patterns: np.ndarray, counts: np.ndarray, n_total_pairs: float):
        """The prior's fixed point over the distinct level ``patterns`` and their ``counts``.

        Without term frequencies a pair's weight depends on its level pattern only, so this
        iterates over thousands of patterns, not over millions of candidate pairs.
        """
        bayes = self._bayes_log2(patterns)
        prior = max(1.0 / max(n_total_pairs, 1.0), PROBABILITY_FLOOR**2)
        for _ in range(100):
            log_odds = bayes + np.log2(prior) - np.log2(1 - prior)
            matches = 1.0 / (1.0 + np.exp2(-np.clip(log_odds, -1000, 1000)))
            expected = float(matches @ counts)
            new = float(np.clip(expected / max(n_total_pairs, 1.0), 1e-12, 0.5))
            if abs(new - prior) <= 1e-6 * prior:
                prior = new
                break
            prior = new
        return prior

    # ------------------------------------------------------------------ scoring

    def _check_fitted(self) -> None:
        if not hasattr(self, "m_"):
            raise IpviError(NOT_FITTED)

    def level_weights(self) -> list[np.ndarray]:
        """log2(m / u) per comparison level (0 for missing)."""
        self._check_fitted()
        return [np.log2(m) - np.log2(u) for m, u in zip(self.m_, self.u_, strict=True)]

    def _bayes_log2(self, levels: np.ndarray, tf_left: dict[str, np.ndarray] | None = None):
        total = np.zeros(len(levels))
        for k, weights in enumerate(self.level_weights()):
            total += weights[levels[:, k]]
        # Added column by column: a (pairs, comparisons) float matrix is 7 GB at 66M pairs.
        for _, rows, adjustment in self._tf_parts(levels, tf_left):
            total[rows] += adjustment
        return total

    def _tf_parts(self, levels: np.ndarray, tf_left: dict[str, np.ndarray] | None):
        """(comparison index, rows at its tf level, log2 adjustment of those rows) per tf column.

        ``tf_left`` maps a tf column to the left record's value of each pair: an array of
        values, or a ``pd.Categorical`` (its categories are looked up once, not every pair).
        """
        if not tf_left:
            return
        for k, comparison in enumerate(self.comparisons):
            level = comparison.tf_level()
            frequencies = self.tf_.get(comparison.column)
            if level is None or frequencies is None or comparison.column not in tf_left:
                continue
            rows = np.flatnonzero(levels[:, k] == level)
            if not len(rows):
                continue
            value_frequency = _frequency_of(tf_left[comparison.column][rows], frequencies)
            yield k, rows, np.log2(self.u_[k][level]) - np.log2(value_frequency)

    def tf_adjustments(self, levels: np.ndarray, tf_left: dict[str, np.ndarray] | None):
        """Per-comparison term-frequency adjustment (log2), for pairs at the exact level.

        ``tf_left`` maps a tf column to the left record's value of each pair (see
        :meth:`_tf_parts`).
        """
        adjustments = np.zeros(levels.shape, dtype=float)
        for k, rows, adjustment in self._tf_parts(levels, tf_left):
            adjustments[rows, k] = adjustment
        return adjustments

    def match_weight(self, levels: np.ndarray, tf_left: dict[str, np.ndarray] | None = None):
        """Match weight (log2 odds) of each pair: prior + Bayes factors + tf adjustments."""
        self._check_fitted()
        return self._bayes_log2(levels, tf_left) + np.log2(self.prior_) - np.log2(1 - self.prior_)

    def predict_proba(self, levels: np.ndarray, tf_left: dict[str, np.ndarray] | None = None):
        """Match probability of each pair."""
        return probability(self.match_weight(levels, tf_left))

    def contributions(
        self, levels: np.ndarray, tf_left: dict[str, np.ndarray] | None = None
    ) -> pd.DataFrame:
        """Per-comparison evidence of each pair: level label and log2 Bayes factor (+ tf)."""
        self._check_fitted()
        tf = self.tf_adjustments(levels, tf_left)
        columns = {}
        weights_of = self.level_weights()
        for k, (comparison, weights) in enumerate(zip(self.comparisons, weights_of, strict=True)):
            labels = np.array(comparison.level_labels(), dtype=object)
            columns[f"{comparison.name}_level"] = labels[levels[:, k]]
            columns[f"{comparison.name}_weight"] = np.round(weights[levels[:, k]] + tf[:, k], 3)
        return pd.DataFrame(columns)

    def to_dict(self) -> dict:
        """Everything :meth:`from_dict` needs to score without refitting (JSON-safe).

        Holds the term-frequency tables (standardised values), so it is stored apart from the
        run log, which must carry no personal values.
        """
        self._check_fitted()
        return {
            "comparisons": [c.name for c in self.comparisons],
            "prior": float(self.prior_),
            "m": [m.tolist() for m in self.m_],
            "u": [u.tolist() for u in self.u_],
            "m_support": np.asarray(self.m_support_, dtype=float).tolist(),
            "tf": {
                column: {"values": f.index.tolist(), "frequencies": f.to_numpy().tolist()}
                for column, f in self.tf_.items()
            },
        }

    @classmethod
    def from_dict(cls, comparisons: list[Comparison], state: dict) -> FellegiSunter:
        """A fitted model from :meth:`to_dict` output, checked against ``comparisons``.

        Examples
        --------
        >>> from linkage.compare import Exact
        >>> model = FellegiSunter.from_dict([Comparison("zip", [Exact()])], {
        ...     "comparisons": ["zip"], "prior": 0.01, "m": [[1.0, 0.9, 0.1]],
        ...     "u": [[1.0, 0.1, 0.9]], "m_support": [5.0], "tf": {}})
        >>> model.predict_proba(np.array([[1], [2]], dtype=np.int8)).round(3).tolist()
        [0.083, 0.001]
        """
        names = [c.name for c in comparisons]
        if state.get("comparisons") != names:
            raise IpviError(MODEL_MISMATCH)
        model = cls(comparisons)
        model.m_ = [np.asarray(m, dtype=float) for m in state["m"]]
        model.u_ = [np.asarray(u, dtype=float) for u in state["u"]]
        if any(len(m) != c.n_levels for m, c in zip(model.m_, comparisons, strict=True)):
            raise IpviError(MODEL_MISMATCH)
        model.m_support_ = np.asarray(state["m_support"], dtype=float)
        model.prior_ = float(state["prior"])
        model.tf_ = {
            column: pd.Series(tf["frequencies"], index=pd.Index(tf["values"], dtype=object))
            for column, tf in state["tf"].items()
        }
        return model

    def parameters(self) -> dict:
        """m, u and weights per level label, for the run log (no personal values)."""
        self._check_fitted()
        out = {"prior": self.prior_}
        for comparison, m, u in zip(self.comparisons, self.m_, self.u_, strict=True):
            out[comparison.name] = {
                label: {"m": round(float(mi), 6), "u": round(float(ui), 8)}
                for label, mi, ui in zip(comparison.level_labels(), m, u, strict=True)
            }
        return out


def pattern_codes(levels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The pattern (distinct row) of each row of a level matrix, and the distinct rows.

    Rows are packed into one integer (mixed radix) and factorised: ``patterns[codes]`` is
    ``levels``.

    >>> codes, patterns = pattern_codes(np.array([[1, 2], [0, 1], [1, 2]], dtype=np.int8))
    >>> codes.tolist(), patterns.tolist()
    ([0, 1, 0], [[1, 2], [0, 1]])
    """
    radix = int(levels.max()) + 1 if levels.size else 1
    packed = np.zeros(len(levels), dtype=np.int64)
    for column in range(levels.shape[1]):
        packed = packed * radix + levels[:, column]
    codes, uniques = pd.factorize(packed)
    first = np.zeros(len(uniques), dtype=np.int64)
    first[codes[::-1]] = np.arange(len(codes))[::-1]
    return codes, levels[first]


def _frequency_of(values, frequencies: pd.Series) -> np.ndarray:
    """The frequency of each value in ``frequencies`` (unseen values: the smallest one)."""
    floor = frequencies.min()
    if isinstance(values, pd.Categorical):
        # One lookup per category; code -1 (a missing value) takes the appended floor.
        known = np.append(frequencies.reindex(values.categories).fillna(floor).to_numpy(), floor)
        return known[values.codes]
    return pd.Series(values).map(frequencies).fillna(floor).to_numpy()


def probability(weight: np.ndarray) -> np.ndarray:
    """Logistic of a log2-odds match weight."""
    return 1.0 / (1.0 + np.exp2(-np.clip(weight, -1000, 1000)))
