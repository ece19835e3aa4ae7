"""Fellegi-Sunter model: m and u per comparison level, learned without labels.

* ``u`` (how often non-matches reach each level) comes from random pairs, nearly all
  non-matches.
* ``m`` (how often matches reach each level) comes from EM, run once per blocking rule on the
  pairs that rule produced, leaving out the comparisons the rule itself reads (inside a block
  those agree by construction, so they would teach EM nothing true); each comparison's ``m`` is
  the match-weighted mean over the rules that could estimate it (Splink's scheme).
* A training pass whose "match" class is not the matches (agreement on a name or the date of
  birth no likelier among its matches than among random pairs: it learned, say, "same
  postcode") is left out; when every pass is, or the combined m still is, the fit is refused
  with :data:`EM_INVERTED` rather than linking on it.
* The prior (the probability that two random records match) is the fixed point of "expected
  matches among the candidate pairs / all pairs", learned from the data.
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
# What a stored model holds beside m, u and the prior: how its run blocked and scored.
STORED_RULE_KEYS = ("link_threshold", "blocking_rules", "rule_u", "rule_direct", "rule_share")
EM_INVERTED = (
    "EM found no credible match class: among the pairs it called matches, agreement on {fields} "
    "is no likelier than among random pairs; either no two records are one person, or the "
    "mapped fields do not identify a person (check --map; map a name or a date of birth)"
)
# Random-pair u counts as this many in-block non-matches (a small block's u stays near it).
PSEUDO_PAIRS = 100.0
# Bounds keep a level that never occurs in one class from giving an infinite weight.
PROBABILITY_FLOOR = 1e-6
# Pairs weighed at once: the temporaries of a weight (some 80 bytes a pair) stay bounded as
# the pairs grow.
WEIGHT_CHUNK = 2_000_000
# Fields that change together: a move changes street, city and postcode at once, so their
# agreement or disagreement is one piece of evidence (see FellegiSunter._bayes_log2).
MOVING_TOGETHER: tuple[tuple[str, ...], ...] = (("street", "city", "zip"),)
# Fields of one person alone: two people of one household agree on them no more often than
# two strangers (their u stays the random pairs' u in every training pass).
PERSONAL_COLUMNS: tuple[str, ...] = ("first_name", "dob")
# Fields whose exact agreement must be likelier among matches than among random pairs.
IDENTITY_COLUMNS: tuple[str, ...] = ("first_name", "last_name", "dob")


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
    rule_u_, rule_share_ : list
        Per training pass (blocking rule): the u of its blocks' non-matches per comparison
        (None for a pass left out) and its blocks' match share (see :meth:`match_weight`).
    discarded_passes_ : int
        Training passes left out because their match class was not the matches.

    The linker that fits a model also sets, for scoring and for the link index,
    ``blocking_rules_`` (the rules its passes are), ``rule_direct_`` (the comparisons each
    rule reads) and ``link_threshold_``; all of them are stored by :meth:`to_dict`.

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
        pair_weights: np.ndarray | None = None,
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
        pair_weights : ndarray, optional
            How many candidate pairs each row of ``levels`` stands for (a sample of them).
        """
        if levels.shape[1] != len(self.comparisons):
            raise IpviError("level matrix and comparisons disagree in number")
        self.u_ = [
            self._level_frequencies(random_levels[:, k], c) for k, c in enumerate(self.comparisons)
        ]
        # Every pair's level pattern once: EM and the prior then work on pattern counts.
        pattern_of, patterns = pattern_codes(levels)
        self.m_, self.m_support_ = self._estimate_m(pattern_of, patterns, rule_pairs, rule_excluded)
        self._check_credible()
        self.tf_ = {}
        for comparison in self.comparisons:
            if comparison.tf_level() is not None and tf_values and comparison.column in tf_values:
                values = tf_values[comparison.column]
                values = values[values != ""]
                self.tf_[comparison.column] = values.value_counts(normalize=True)
        self.prior_ = PROBABILITY_FLOOR  # placeholder until the fixed point below
        counts = np.bincount(pattern_of, weights=pair_weights, minlength=len(patterns))
        self.prior_ = self._fit_prior(patterns, counts, n_total_pairs)
        return self

    def refit_prior(self, levels: np.ndarray, n_total_pairs: float) -> FellegiSunter:
        """The prior's fixed point over other candidate pairs (m and u kept)."""
        self._check_fitted()
        pattern_of, patterns = pattern_codes(levels)
        counts = np.bincount(pattern_of, minlength=len(patterns))
        self.prior_ = self._fit_prior(patterns, counts, n_total_pairs)
        return self

    def _identity_indices(self) -> list[int]:
        return [k for k, c in enumerate(self.comparisons) if c.column in IDENTITY_COLUMNS]

    def _credible(self, m: list[np.ndarray], indices: list[int], positions: list[int]) -> list:
        """The identity comparisons (of ``indices``; their m at ``positions``) whose exact
        level is no likelier among matches than among random pairs."""
        return [
            self.comparisons[k].name
            for k, j in zip(indices, positions, strict=True)
            if m[j][1] <= self.u_[k][1]
        ]

    def _check_credible(self) -> None:
        """Refuse a fit whose m is inverted, or that every training pass had to be left out
        of (naming the comparisons those passes found inverted)."""
        identity = self._identity_indices()
        inverted = self._credible(self.m_, identity, identity)
        starved = all(self.m_support_[k] <= 0 for k in identity)
        if not inverted and identity and starved and self.discarded_passes_:
            inverted = [c.name for c in self.comparisons if c.name in self.inverted_in_passes_]
        if inverted:
            raise IpviError(EM_INVERTED.format(fields=", ".join(inverted)))

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
        """m per comparison from EM on each rule's pairs (``pattern_of``: pattern per pair),
        and each pass's view of its own blocks (``rule_share_``, ``rule_u_``)."""
        n_comparisons = len(self.comparisons)
        estimates: list[list[np.ndarray]] = [[] for _ in self.comparisons]
        weights: list[list[float]] = [[] for _ in self.comparisons]
        identity = self._identity_indices()
        self.rule_u_: list[list[np.ndarray] | None] = []
        self.rule_share_: list[float] = []
        self.discarded_passes_ = 0
        self.inverted_in_passes_: set[str] = set()
        for pairs, excluded in zip(rule_pairs, rule_excluded, strict=True):
            active = [k for k in range(n_comparisons) if k not in excluded]
            self.rule_u_.append(None)
            self.rule_share_.append(0.0)
            if len(pairs) == 0 or not active:
                continue
            rule_counts = np.bincount(pattern_of[pairs], minlength=len(patterns))
            present = np.flatnonzero(rule_counts)
            # The rule's patterns on its active comparisons, merged where they now coincide.
            sub_of, sub_patterns = pattern_codes(patterns[np.ix_(present, active)])
            counts = np.bincount(sub_of, weights=rule_counts[present])
            m_rule, posterior = self._em(sub_patterns, counts, active)
            expected_matches = float(posterior @ counts)
            checked = [k for k in identity if k in active]
            inverted = self._credible(m_rule, checked, [active.index(k) for k in checked])
            if inverted:
                self.discarded_passes_ += 1
                self.inverted_in_passes_.update(inverted)
                continue
            for j, k in enumerate(active):
                estimates[k].append(m_rule[j])
                weights[k].append(expected_matches)
            # The u of its blocks: the non-matches' levels on the fields a household shares
            # that EM saw (a person's own fields, and those EM was blind to, keep the random
            # pairs' u: non-matches sharing a key share those no more than strangers do).
            nonmatches = rule_counts[present] * (1 - posterior[sub_of])
            self.rule_u_[-1] = [
                self._in_block_u(k, patterns[present, k], nonmatches)
                if k in active and self.comparisons[k].column not in PERSONAL_COLUMNS
                else u
                for k, u in enumerate(self.u_)
            ]
            self.rule_share_[-1] = expected_matches / float(counts.sum())
        m = []
        for k, comparison in enumerate(self.comparisons):
            if sum(weights[k]) > 0:
                # The passes' mean, weighted by the matches each expects (Splink averages).
                shares = np.array(weights[k])
                estimate = shares @ np.array(estimates[k]) / shares.sum()
            else:
                estimate = self._initial_m(comparison)
            estimate[NULL_LEVEL] = 1.0
            m.append(np.clip(estimate, PROBABILITY_FLOOR, 1.0))
        return m, np.array([sum(w) for w in weights])

    def _in_block_u(self, k: int, levels: np.ndarray, nonmatches: np.ndarray) -> np.ndarray:
        """u of comparison ``k`` among a block's non-matches, shrunk towards the random
        pairs' u by PSEUDO_PAIRS (a small block's u stays near it)."""
        n_levels = self.comparisons[k].n_levels
        totals = np.bincount(levels, weights=nonmatches, minlength=n_levels)
        totals[NULL_LEVEL] = 0
        shrunk = (totals + PSEUDO_PAIRS * self.u_[k]) / (totals[1:].sum() + PSEUDO_PAIRS)
        shrunk[NULL_LEVEL] = 1.0
        return np.clip(shrunk, PROBABILITY_FLOOR, 1.0)

    def _em(self, patterns: np.ndarray, counts: np.ndarray, active: list[int]):
        """EM for m, the in-block u and the in-block match share on aggregated patterns.

        u starts from the random pairs' u and is learned inside the block, but for the fields
        of one person alone (PERSONAL_COLUMNS): non-matches that share a blocking key share
        more than random pairs do (people of one household share a surname, a phone and a
        postcode as well as a street), and a u fixed at the random pairs' values would push
        them into the match class; a first name or a date of birth they share no more often
        than strangers, and holding those fixed keeps a block of nothing but matches from
        being split into two classes of matches. Returns m and each pattern's posterior.
        """
        comparisons = [self.comparisons[k] for k in active]
        # Every active comparison's levels side by side in one flat array (one bincount per
        # step for all of them, not one per comparison).
        sizes = np.array([c.n_levels for c in comparisons])
        starts = np.r_[0, np.cumsum(sizes)[:-1]]
        flat = (patterns + starts).ravel()
        segment = np.repeat(np.arange(len(comparisons)), sizes)
        null = np.zeros(sizes.sum(), dtype=bool)
        null[starts] = True
        free_u = np.repeat([c.column not in PERSONAL_COLUMNS for c in comparisons], sizes)
        m = np.concatenate([self._initial_m(c) for c in comparisons])
        u = np.concatenate([self.u_[k] for k in active])
        share = 0.1
        n_active = len(active)
        for _ in range(self.max_iterations):
            log_odds = (np.log(m)[flat] - np.log(u)[flat]).reshape(-1, n_active).sum(axis=1)
            log_odds += np.log(share) - np.log1p(-share)
            posterior = 1.0 / (1.0 + np.exp(-np.clip(log_odds, -700, 700)))
            weighted = posterior * counts
            share = float(np.clip(weighted.sum() / counts.sum(), 1e-9, 1 - 1e-9))
            new_m = _level_shares(flat, np.repeat(weighted, n_active), segment, null, m)
            new_u = _level_shares(flat, np.repeat(counts - weighted, n_active), segment, null, u)
            moved = float(np.abs(new_m - m).max())
            m, u = new_m, np.where(free_u, new_u, u)
            if moved < self.tolerance:
                break
        return np.split(m, starts[1:]), posterior

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

    def level_weights(self, u: list[np.ndarray] | None = None) -> list[np.ndarray]:
        """log2(m / u) per comparison level (0 for missing); ``u`` defaults to the random
        pairs' u."""
        self._check_fitted()
        u = self.u_ if u is None else u
        return [np.log2(m) - np.log2(ui) for m, ui in zip(self.m_, u, strict=True)]

    def _bayes_log2(
        self, levels: np.ndarray, tf_left: dict | None = None, u=None, skip: set[int] = frozenset()
    ) -> np.ndarray:
        """Sum of the log2 Bayes factors of each pair (with ``u``, default the random pairs'
        u; comparisons in ``skip`` left out). Fields that change together (MOVING_TOGETHER:
        a move changes street, city and postcode at once) count once, by the strongest of
        their factors, not three times for one event."""
        total = np.zeros(len(levels))
        tf = {k: (rows, adjustment) for k, rows, adjustment in self._tf_parts(levels, tf_left)}
        grouped = {k for group in self._together() for k in group}
        level_weights = self.level_weights(u)
        # Added column by column: a (pairs, comparisons) float matrix is 7 GB at 66M pairs.
        for k, weights in enumerate(level_weights):
            if k not in skip and k not in grouped:
                total += weights[levels[:, k]]
                if k in tf:
                    total[tf[k][0]] += tf[k][1]
        for group in self._together():
            strongest = np.zeros(len(levels))
            for k in group:
                if k in skip:
                    continue
                weight = level_weights[k][levels[:, k]]
                if k in tf:
                    weight[tf[k][0]] += tf[k][1]
                strongest = np.where(np.abs(weight) > np.abs(strongest), weight, strongest)
            total += strongest
        return total

    def _together(self) -> list[list[int]]:
        """Comparison indices of each group of fields that change together."""
        columns = [c.column for c in self.comparisons]
        groups = [[k for k, c in enumerate(columns) if c in group] for group in MOVING_TOGETHER]
        return [group for group in groups if len(group) > 1]

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

    def match_weight(
        self,
        levels: np.ndarray,
        tf_left: dict[str, np.ndarray] | None = None,
        rule_rows: list[np.ndarray] | None = None,
    ):
        """Match weight (log2 odds) of each pair: prior + Bayes factors + tf adjustments.

        ``rule_rows`` (aligned with ``rule_u_``) names the pairs each blocking rule found. A
        pair a rule found is weighed as that rule sees it (:meth:`_rule_weight`): two people
        of one household agree on surname, street and house number far more often than two
        random people, and counting each agreement as independent evidence would merge them.
        Found by several rules, a pair takes the mean of their log odds: no one view decides
        (one blind to a house number would merge a household, one whose pass took some
        matches for non-matches would split a person). Other pairs use the random pairs' u.
        ``rule_rows`` are sorted. The pairs are weighed WEIGHT_CHUNK at a time, each alone.
        """
        self._check_fitted()
        weight = np.empty(len(levels))
        for start in range(0, len(levels), WEIGHT_CHUNK):
            stop = min(start + WEIGHT_CHUNK, len(levels))
            rows = slice(start, stop)
            weight[rows] = self._chunk_weight(
                levels[rows],
                {c: values[rows] for c, values in (tf_left or {}).items()},
                [
                    found[np.searchsorted(found, start) : np.searchsorted(found, stop)] - start
                    for found in rule_rows or []
                ],
            )
        return weight

    def _chunk_weight(self, levels: np.ndarray, tf_left: dict, rule_rows: list[np.ndarray]):
        """:meth:`match_weight` of a chunk of pairs (``rule_rows`` positions in the chunk)."""
        total = self._bayes_log2(levels, tf_left)
        if rule_rows:
            summed, count = np.zeros(len(levels)), np.zeros(len(levels))
            for r, rows in enumerate(rule_rows):
                if self.rule_u_[r] is not None and len(rows):
                    tf_rows = {c: v[rows] for c, v in (tf_left or {}).items()}
                    summed[rows] += self._rule_weight(r, levels[rows], tf_rows)
                    count[rows] += 1
            found = count > 0
            prior = np.log2(self.prior_) - np.log2(1 - self.prior_)
            # The blocks' prior replaces the global one.
            total[found] = summed[found] / count[found] - prior
        return total + np.log2(self.prior_) - np.log2(1 - self.prior_)

    def predict_proba(self, levels: np.ndarray, tf_left: dict[str, np.ndarray] | None = None):
        """Match probability of each pair."""
        return probability(self.match_weight(levels, tf_left))

    def _rule_weight(self, r: int, levels: np.ndarray, tf_left) -> np.ndarray:
        """Log2 odds of pairs rule ``r`` found, as its training pass saw its blocks: the
        blocks' match share as the prior, the fields the rule does not read against the
        blocks' non-matches (``rule_u_``). The rule's own fields agree by construction and
        add nothing more: two people of one household share surname and house number, so a
        block of both holds them as surely as it holds one person twice."""
        direct = self.rule_direct_[r]
        share = float(np.clip(self.rule_share_[r], 1e-9, 1 - 1e-9))
        columns = {self.comparisons[k].column for k in direct}
        tf_rows = {c: v for c, v in (tf_left or {}).items() if c not in columns}
        weight = self._bayes_log2(levels, tf_rows, self.rule_u_[r], skip=direct)
        weight += np.log2(share) - np.log2(1 - share)
        return weight

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
            "link_threshold": float(self.link_threshold_),
            "blocking_rules": self.blocking_rules_,
            "rule_u": [None if u is None else [ui.tolist() for ui in u] for u in self.rule_u_],
            "rule_direct": [sorted(d) for d in self.rule_direct_],
            "rule_share": list(self.rule_share_),
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
        ...     "u": [[1.0, 0.1, 0.9]], "m_support": [5.0], "tf": {}, "link_threshold": 0.5,
        ...     "blocking_rules": [["zip"]], "rule_u": [None], "rule_direct": [[0]],
        ...     "rule_share": [0.0]})
        >>> model.predict_proba(np.array([[1], [2]], dtype=np.int8)).round(3).tolist()
        [0.083, 0.001]
        """
        names = [c.name for c in comparisons]
        if state.get("comparisons") != names or not set(STORED_RULE_KEYS) <= set(state):
            raise IpviError(MODEL_MISMATCH)
        model = cls(comparisons)
        model.m_ = [np.asarray(m, dtype=float) for m in state["m"]]
        model.u_ = [np.asarray(u, dtype=float) for u in state["u"]]
        if any(len(m) != c.n_levels for m, c in zip(model.m_, comparisons, strict=True)):
            raise IpviError(MODEL_MISMATCH)
        model.m_support_ = np.asarray(state["m_support"], dtype=float)
        model.prior_ = float(state["prior"])
        model.link_threshold_ = float(state["link_threshold"])
        model.blocking_rules_ = [list(rule) for rule in state["blocking_rules"]]
        model.rule_u_ = [
            None if u is None else [np.asarray(ui, dtype=float) for ui in u]
            for u in state["rule_u"]
        ]
        model.rule_direct_ = [set(d) for d in state["rule_direct"]]
        model.rule_share_ = [float(share) for share in state["rule_share"]]
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


def _level_shares(flat, weights, segment, null, previous) -> np.ndarray:
    """The weighted share of each level within its comparison (``segment``), missing
    (``null``) kept at 1; a comparison without weight keeps its ``previous`` shares."""
    totals = np.bincount(flat, weights=weights, minlength=len(segment))
    totals[null] = 0
    sums = np.bincount(segment, weights=totals)[segment]
    shares = np.clip(
        np.divide(totals, sums, out=np.zeros_like(totals), where=sums > 0), PROBABILITY_FLOOR, 1.0
    )
    shares[null] = 1.0
    return np.where(sums > 0, shares, previous)


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


def expected_f1_threshold(probability: np.ndarray, low: float, high: float) -> float:
    """The link threshold that maximises the pairwise F1 the probabilities themselves expect.

    Linking the pairs at or above ``t`` is expected to find ``sum(p)`` true links among them
    and to make ``sum(1 - p)`` false ones, and to miss ``sum(p)`` of the rest: the threshold
    follows the data's own estimated error, not a constant. Bounded to ``[low, high]``.

    >>> expected_f1_threshold(np.array([0.99, 0.97, 0.6, 0.3, 0.01]), 0.2, 0.8)
    0.6
    """
    if not len(probability):
        return float(np.clip(0.5, low, high))
    p = np.sort(np.asarray(probability, dtype=float))[::-1]
    true_links = np.cumsum(p)
    false_links = np.cumsum(1 - p)
    missed = p.sum() - true_links
    f1 = 2 * true_links / np.maximum(2 * true_links + false_links + missed, 1e-12)
    return float(np.clip(p[int(np.argmax(f1))], low, high))


def estimated_errors(probability: np.ndarray, threshold: float) -> tuple[float, float]:
    """Pairwise precision and recall the probabilities expect of linking at ``threshold``
    (among the candidate pairs: recall does not count matches blocking never paired)."""
    p = np.asarray(probability, dtype=float)
    linked = p >= threshold
    expected = float(p.sum())
    precision = float(p[linked].mean()) if linked.any() else 1.0
    recall = float(p[linked].sum() / expected) if expected > 0 else 1.0
    return precision, recall


def probability(weight: np.ndarray) -> np.ndarray:
    """Logistic of a log2-odds match weight."""
    return 1.0 / (1.0 + np.exp2(-np.clip(weight, -1000, 1000)))
