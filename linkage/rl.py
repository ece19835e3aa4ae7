"""recordlinkage adapters: the linker's blocking and comparisons inside recordlinkage's framework.

``UnionBlocker`` is a ``recordlinkage`` indexer and :func:`compare_with_recordlinkage` runs our
comparisons through ``recordlinkage.Compare``, so a recordlinkage pipeline (its classifiers,
its measures) can use them. The linker itself calls the same kernels directly
(:func:`linkage.blocking.candidate_pairs`, :func:`linkage.compare.compare_pairs`): importing
recordlinkage loads scikit-learn, seconds of start-up that ``ipvi dedupe`` does not pay.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import recordlinkage
from recordlinkage.base import BaseCompareFeature, BaseIndexAlgorithm

from linkage.blocking import CandidatePairs, candidate_pairs
from linkage.compare import Comparison, Vocabulary


class UnionBlocker(BaseIndexAlgorithm):
    """recordlinkage indexer for a union of exact blocking rules on standardised frames.

    Parameters
    ----------
    rules : list of list of str
        Each rule is the list of columns whose values must all agree.
    max_block_size : int or list of int
        Blocks larger than this (one limit, or one per rule) are skipped by their rule.

    Examples
    --------
    >>> frame = pd.DataFrame({"dob": ["1980-01-01", "1980-01-01", "1990-02-02"],
    ...                       "ln_phon": ["SNAT", "JAN", "JAN"]})
    >>> UnionBlocker(rules=[["dob"], ["ln_phon"]]).index(frame).tolist()
    [(0, 1), (1, 2)]
    """

    def __init__(self, rules: list[list[str]], max_block_size: int | list[int] = 500):
        super().__init__()
        self.rules = rules
        self.max_block_size = max_block_size

    def _as_index(self, pairs: CandidatePairs, a: pd.DataFrame, b: pd.DataFrame) -> pd.MultiIndex:
        return pd.MultiIndex.from_arrays([a.index[pairs.left], b.index[pairs.right]])

    def _dedup_index(self, df_a):
        pairs = candidate_pairs(self.rules, df_a.reset_index(drop=True), None, self.max_block_size)
        return self._as_index(pairs, df_a, df_a)

    def _link_index(self, df_a, df_b):
        pairs = candidate_pairs(
            self.rules,
            df_a.reset_index(drop=True),
            df_b.reset_index(drop=True),
            self.max_block_size,
        )
        return self._as_index(pairs, df_a, df_b)


class ComparisonFeature(BaseCompareFeature):
    """One :class:`~linkage.compare.Comparison` as a recordlinkage compare feature."""

    def __init__(self, comparison: Comparison, vocabulary: Vocabulary):
        super().__init__(comparison.columns, comparison.columns, label=comparison.name)
        self.comparison = comparison
        self.vocabulary = vocabulary

    def _compute_vectorized(self, *series: pd.Series) -> np.ndarray:
        half = len(series) // 2
        columns = self.comparison.columns
        left = {c: s.to_numpy() for c, s in zip(columns, series[:half], strict=True)}
        right = {c: s.to_numpy() for c, s in zip(columns, series[half:], strict=True)}
        return self.comparison.levels_from_codes(left, right, self.vocabulary)


def compare_with_recordlinkage(
    comparisons: list[Comparison],
    pairs: pd.MultiIndex,
    coded: pd.DataFrame,
    coded_other: pd.DataFrame | None,
    vocabulary: Vocabulary,
) -> pd.DataFrame:
    """Levels of ``pairs`` computed by ``recordlinkage.Compare`` (one column per comparison)."""
    compare = recordlinkage.Compare(
        features=[ComparisonFeature(c, vocabulary) for c in comparisons]
    )
    return compare.compute(pairs, coded, coded_other)
