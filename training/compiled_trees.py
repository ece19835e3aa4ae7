"""LightGBM trees compiled to lookup tables, for SHAP contributions at a fraction of the cost.

A row's path-dependent TreeSHAP values in a small tree (what LightGBM's ``pred_contrib``
computes) depend only on which way the row goes at each split: a tree with ``m`` splits has
at most ``2**m`` such patterns. Compiling precomputes the per-feature contributions of every
pattern of every tree; scoring then compares a row with every split once and looks its
contributions up. ``pred_contrib`` instead walks every path of every tree for every row,
which made reason codes most of the cost of scoring a batch. The results are LightGBM's, to
rounding (the sums run in another order).

Trees with more than :data:`MAX_SPLITS` splits, or with categorical splits, do not compile
(:func:`compile_trees` returns None) and are left to LightGBM. The tables are built whenever a
model is fitted or loaded, never stored with it, and :func:`checked_trees` compares them with
``pred_contrib`` before they are used, so a fix here reaches every registered model and a
mismatch falls back to LightGBM with a warning.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

MAX_SPLITS = 10  # 2**10 patterns per tree at most: tables of kilobytes per tree
ZERO = 1e-35  # LightGBM's kZeroThreshold: |x| <= ZERO counts as zero
CHUNK_ROWS = 4096  # rows per pass, so the lookups of a large batch stay small in memory


class CompiledTrees:
    """Contribution tables of a booster's trees; build with :func:`compile_trees`.

    ``contributions(X)`` equals ``booster.predict(X, pred_contrib=True)`` without its last
    (expected value) column, for a float64 array ``X`` with the booster's features in order.

    Every tree's splits fill a block of ``block`` slots (8 or 16; unused slots never go left),
    so a row's pattern in each tree is its block of directions packed into an integer: a row
    of the tree's part of ``table``, which starts at its ``table_offsets``.
    """

    def __init__(
        self,
        *,
        n_features: int,
        split_feature: np.ndarray,
        threshold: np.ndarray,
        nan_left: np.ndarray,
        zero_left: np.ndarray,
        block: int,
        table: np.ndarray,
        table_offsets: np.ndarray,
        table_features: np.ndarray,
    ) -> None:
        self.n_features = n_features
        self.split_feature = split_feature
        self.threshold = threshold
        self.nan_left = nan_left
        self.zero_left = zero_left
        self.block = block
        self.table = table
        self.table_offsets = table_offsets
        # Contributions summed per feature: lookups ordered by feature, then reduceat.
        flat = table_features.ravel()
        self._order = np.argsort(flat, kind="stable")
        used, starts = np.unique(flat[self._order], return_index=True)
        self._used = used[used < n_features]  # the padding feature, n_features, is dropped
        self._starts = starts[: len(self._used)]
        self._zero_splits = np.flatnonzero(zero_left >= 0)

    def _patterns(self, X: np.ndarray) -> np.ndarray:
        """Each row's pattern in each tree, as a row of the table (rows x trees)."""
        values = X[:, self.split_feature]
        # NaN never compares <=; where it goes is the split's (LightGBM reads it as zero
        # unless the split routes missing values).
        left = (values <= self.threshold) | (np.isnan(values) & self.nan_left)
        if len(self._zero_splits):  # splits that route zero as missing
            k = self._zero_splits
            split_values = values[:, k]
            zero = (np.abs(split_values) <= ZERO) | np.isnan(split_values)
            left[:, k] = np.where(zero, self.zero_left[k].astype(bool), left[:, k])
        # A block is one or two whole bytes of bits (packing the flat row is the fast way).
        packed = np.packbits(left.ravel(), bitorder="little").reshape(len(X), -1)
        codes = packed.view("<u2") if self.block == 16 else packed
        return codes + self.table_offsets

    def contributions(self, X: np.ndarray) -> np.ndarray:
        """Per-feature SHAP contributions to the raw score (rows x features)."""
        out = np.zeros((len(X), self.n_features))
        for start in range(0, len(X), CHUNK_ROWS):
            rows = slice(start, start + CHUNK_ROWS)
            parts = self.table[self._patterns(X[rows])]  # rows x trees x width
            flat = parts.reshape(len(parts), -1)[:, self._order]
            if len(self._used):
                out[rows, self._used] = np.add.reduceat(flat, self._starts, axis=1)
        return out


MISMATCH = (
    "compiled trees disagree with LightGBM's pred_contrib by {gap:.2g}; reason codes use "
    "pred_contrib (slower)"
)


def checked_trees(
    booster, num_iteration: int | None = None, *, rows: int = 64, tolerance: float = 1e-9
) -> CompiledTrees | None:
    """:func:`compile_trees`, checked against ``pred_contrib`` on ``rows`` rows that take every
    branch of the trees (each feature at, just above and below its split thresholds, at zero
    and missing). None, with a warning, when they disagree by more than ``tolerance``."""
    compiled = compile_trees(booster, num_iteration)
    if compiled is None:
        return None
    X = _probe_rows(compiled, rows)
    expected = booster.predict(X, num_iteration=num_iteration, pred_contrib=True)[:, :-1]
    gap = float(np.max(np.abs(compiled.contributions(X) - expected), initial=0.0))
    if gap > tolerance:
        warnings.warn(MISMATCH.format(gap=gap), RuntimeWarning, stacklevel=2)
        return None
    return compiled


def _probe_rows(compiled: CompiledTrees, rows: int) -> np.ndarray:
    """Rows whose values are drawn, per feature, from its thresholds, their neighbours, zero
    and NaN (a fixed seed: the same rows at every load)."""
    rng = np.random.default_rng(0)
    X = np.full((rows, compiled.n_features), np.nan)
    used = ~np.isnan(compiled.threshold)
    for feature in range(compiled.n_features):
        cuts = compiled.threshold[used & (compiled.split_feature == feature)]
        values = np.concatenate([cuts, np.nextafter(cuts, np.inf), cuts - 1.0, [0.0, np.nan]])
        X[:, feature] = rng.choice(values, rows)
    return X


def compile_trees(booster, num_iteration: int | None = None) -> CompiledTrees | None:
    """Tables for the booster's first ``num_iteration`` trees (all when None), or None when a
    tree has categorical splits or more than :data:`MAX_SPLITS` splits."""
    dump = booster.dump_model(num_iteration=num_iteration)
    compiled = [_compile_tree(tree["tree_structure"]) for tree in dump["tree_info"]]
    if any(tree is None for tree in compiled):
        return None
    compiled = [tree for tree in compiled if tree["splits"]]  # stumps add no contribution
    n_features = dump["max_feature_idx"] + 1
    block = 8 if max([len(tree["splits"]) for tree in compiled] + [0]) <= 8 else 16
    width = max([len(tree["features"]) for tree in compiled] + [1])
    n_slots = len(compiled) * block
    # Unused slots: feature 0 against NaN, which never goes left.
    split_feature = np.zeros(n_slots, dtype=np.int64)
    threshold = np.full(n_slots, np.nan)
    nan_left = np.zeros(n_slots, dtype=bool)
    zero_left = np.full(n_slots, -1, dtype=np.int8)  # -1: zero is an ordinary value
    sizes = np.array([len(tree["contributions"]) for tree in compiled], dtype=np.int64)
    offsets = np.cumsum(sizes) - sizes
    table = np.zeros((int(sizes.sum()), width))
    table_features = np.full((len(compiled), width), n_features, dtype=np.int64)
    for t, tree in enumerate(compiled):
        for k, split in enumerate(tree["splits"]):
            slot = t * block + k
            split_feature[slot] = split["split_feature"]
            threshold[slot] = split["threshold"]
            missing = split["missing_type"]
            nan_left[slot] = split["default_left"] if missing != "None" else split["threshold"] >= 0
            if missing == "Zero":
                zero_left[slot] = split["default_left"]
        patterns = tree["contributions"]
        table[offsets[t] : offsets[t] + len(patterns), : patterns.shape[1]] = patterns
        table_features[t, : len(tree["features"])] = tree["features"]
    return CompiledTrees(
        n_features=n_features,
        split_feature=split_feature,
        threshold=threshold,
        nan_left=nan_left,
        zero_left=zero_left,
        block=block,
        table=table,
        table_offsets=offsets,
        table_features=table_features,
    )


def _compile_tree(root: dict) -> dict | None:
    """One tree's splits (in the order of their pattern bits), its features, and each
    pattern's contributions (patterns x features); None when it cannot be compiled."""
    splits: list[dict] = []
    leaves: list[tuple[float, list[tuple[int, bool, float]]]] = []  # value, path

    def walk(node: dict, path: list[tuple[int, bool, float]]) -> bool:
        if "leaf_value" in node:
            leaves.append((node["leaf_value"], path))
            return True
        if node["decision_type"] != "<=" or len(splits) == MAX_SPLITS:
            return False
        index = len(splits)
        splits.append(node)
        count = node["internal_count"]
        return all(
            walk(child, [*path, (index, went_left, _count(child) / count)])
            for child, went_left in ((node["left_child"], True), (node["right_child"], False))
        )

    if not walk(root, []):
        return None
    features = sorted({split["split_feature"] for split in splits})
    column = {feature: k for k, feature in enumerate(features)}
    patterns = np.arange(2 ** len(splits), dtype=np.int64)
    went = ((patterns[:, None] >> np.arange(len(splits))) & 1).astype(bool)  # bit k: left
    contributions = np.zeros((len(patterns), len(features)))
    for value, path in leaves:
        # Per feature on the path (repeats merged): does the row follow it ("one"), and
        # what share of the training rows did ("zero", the product of the cover ratios).
        one: dict[int, np.ndarray] = {}
        zero: dict[int, float] = {}
        for index, went_left, share in path:
            feature = splits[index]["split_feature"]
            one[feature] = one.get(feature, True) & (went[:, index] == went_left)
            zero[feature] = zero.get(feature, 1.0) * share
        for feature, phi in _leaf_shap(value, one, zero).items():
            contributions[:, column[feature]] += phi
    return {"splits": splits, "features": features, "contributions": contributions}


def _count(node: dict) -> float:
    return node["leaf_count"] if "leaf_value" in node else node["internal_count"]


def _leaf_shap(
    value: float, one: dict[int, np.ndarray], zero: dict[int, float]
) -> dict[int, np.ndarray]:
    """Each path feature's SHAP value from one leaf, for every pattern at once.

    The leaf adds ``value * prod(one_j if j in S else zero_j)`` to the expected output given
    the features S, so feature i's Shapley value is ``value * (one_i - zero_i)`` times the
    sum over S of the other path features of ``|S|! (d-|S|-1)! / d!`` times that product.
    Only S within the followed features count (``one`` is 0 or 1); the sum over their
    subsets by size is a polynomial product, carried for all patterns at once.
    """
    d = len(one)
    weight = np.array([math.factorial(s) * math.factorial(d - s - 1) for s in range(d)])
    weight = weight / math.factorial(d)
    out = {}
    for i in one:
        # coef[:, s]: over subsets S of size s of the followed others, the sum of the
        # product of zero_j over the others not in S.
        coef = np.zeros((len(one[i]), d))
        coef[:, 0] = 1.0
        for j in one:
            if j == i:
                continue
            grown = zero[j] * coef
            grown[:, 1:] += coef[:, :-1]
            coef = np.where(one[j][:, None], grown, zero[j] * coef)
        out[i] = value * (one[i] - zero[i]) * (coef @ weight)
    return out
