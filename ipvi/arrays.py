"""Array helpers every stage shares: the one home for them, with one argument order.

Each helper answers as the numpy or pandas function named in its docstring does (tests compare
them on random input); they exist where that function does more work than the caller needs,
such as hashing values that are already sorted. Arguments follow numpy's order: the values
first, then what they are looked up in (``np.isin(values, keys)``).
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import repeat
from typing import Any

import numpy as np
import pandas as pd


def object_array(values: Iterable[Any]) -> np.ndarray:
    """A 1-d object array with one element per item (lists stay lists, not a second axis).

    >>> object_array([[1, 2], [3]]).shape
    (2,)
    """
    values = values if isinstance(values, list | tuple) else list(values)
    return np.fromiter(values, dtype=object, count=len(values))


def factorize(values: Any, sort: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Integer codes and the distinct values, as :func:`pandas.factorize` (missing coded -1).

    With ``sort``, the distinct values are in sorted order and the codes follow them. Strings
    are sorted as a numpy string array, in C: pandas sorts object values one Python comparison
    at a time (seconds for the million record ids of a registry).

    >>> [a.tolist() for a in factorize(np.array(["b", "a", None, "b"], dtype=object), sort=True)]
    [[1, 0, -1, 1], ['a', 'b']]
    """
    values = np.asarray(values)
    strings = values.dtype == object and pd.api.types.infer_dtype(values) == "string"
    codes, uniques = pd.factorize(values, sort=sort and not strings)
    uniques = np.asarray(uniques)
    if not (sort and strings):
        return codes, uniques
    order = np.argsort(uniques.astype(str), kind="stable")
    rank = np.empty(len(order), dtype=np.intp)
    rank[order] = np.arange(len(order))
    return np.where(codes >= 0, rank[codes], -1), uniques[order]


def positions_in(values: Any, keys: Any) -> np.ndarray:
    """Each value's position among ``keys`` (ids: distinct, none missing), -1 where absent, as
    ``pandas.Index(keys).get_indexer(values)``, by one dict: no index is built per call, whose
    set-up costs more than one request's lookups.

    >>> positions_in(np.array(["b", "x", "a"], dtype=object), ["a", "b"]).tolist()
    [1, -1, 0]
    """
    keys = np.asarray(keys, dtype=object).tolist()
    where = dict(zip(keys, range(len(keys)), strict=True))
    if len(where) < len(keys):
        raise ValueError("keys repeat a value: positions among them are ambiguous")
    values = np.asarray(values, dtype=object).tolist()
    # dict.get mapped over the values, in C (a generator's frames are the cost at a million).
    return np.fromiter(map(where.get, values, repeat(-1)), dtype=np.intp, count=len(values))


def is_in(values: Any, keys: Any) -> np.ndarray:
    """Whether each value is one of ``keys`` (ids), as ``np.isin(values, keys)``, by one set.

    >>> is_in(np.array(["b", None, "c"], dtype=object), ["a", "b", "b"]).tolist()
    [True, False, False]
    """
    wanted = set(np.asarray(keys, dtype=object).tolist())
    values = np.asarray(values, dtype=object).tolist()
    return np.fromiter((value in wanted for value in values), dtype=bool, count=len(values))


def run_starts(ordered: np.ndarray) -> np.ndarray:
    """Whether each value of an array is the first of its run of equal consecutive values.

    >>> run_starts(np.array([1, 1, 2, 2, 2, 5])).tolist()
    [True, False, True, False, False, True]
    """
    first = np.empty(len(ordered), dtype=bool)
    first[:1] = True
    first[1:] = ordered[1:] != ordered[:-1]
    return first


def unique_sorted(values: Any) -> np.ndarray:
    """The sorted distinct values of a 1-d integer (or date) array, as ``np.unique(values)``.

    By sorting rather than hashing. Values already strictly increasing (candidate pairs' codes
    usually are) are returned as they are: sorting sorted values costs a full sort. Not for
    floats: NaN would repeat.

    >>> unique_sorted(np.array([5, 1, 5, 3])).tolist()
    [1, 3, 5]
    """
    values = np.asarray(values)
    if len(values) < 2 or bool((values[1:] > values[:-1]).all()):
        return values
    ordered = np.sort(values)
    return ordered[run_starts(ordered)]


def unique_counts(values: Any) -> tuple[np.ndarray, np.ndarray]:
    """The sorted distinct values and how often each occurs, as ``np.unique(values,
    return_counts=True)``, by sorting (see :func:`unique_sorted`).

    >>> [a.tolist() for a in unique_counts(np.array([5, 1, 5]))]
    [[1, 5], [1, 2]]
    """
    ordered = np.sort(values)
    bounds = np.append(run_starts(ordered).nonzero()[0], len(ordered))
    return ordered[bounds[:-1]], bounds[1:] - bounds[:-1]


def in_sorted(values: Any, sorted_keys: np.ndarray) -> np.ndarray:
    """Whether each value is one of the sorted distinct ``sorted_keys``, as
    ``np.isin(values, sorted_keys)``, by one binary search per value (``np.isin`` would sort
    the keys again).

    >>> in_sorted(np.array([5, 1, 9, 10]), np.array([2, 5, 9])).tolist()
    [True, False, True, False]
    """
    values = np.asarray(values)
    if not len(sorted_keys):
        return np.zeros(values.shape, dtype=bool)
    position = np.minimum(np.searchsorted(sorted_keys, values), len(sorted_keys) - 1)
    return sorted_keys[position] == values


def connected_labels(n_items: int, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """The connected component of each of ``n_items`` joined by the edges ``left``-``right``,
    labelled by its smallest item (as ``scipy.sparse.csgraph.connected_components`` partitions).

    Union-find in numpy: every edge joining two components hooks the larger root onto the
    smaller, then pointers jump to their roots, until no edge joins two components.

    >>> connected_labels(6, np.array([4, 1, 3]), np.array([5, 2, 1]))
    array([0, 1, 1, 1, 4, 4])
    """
    parent = np.arange(n_items)
    left = np.asarray(left, dtype=np.int64)
    right = np.asarray(right, dtype=np.int64)
    while len(left):
        a, b = parent[left], parent[right]
        apart = a != b
        left, right, a, b = left[apart], right[apart], a[apart], b[apart]
        if not len(left):
            break
        np.minimum.at(parent, np.maximum(a, b), np.minimum(a, b))
        while True:
            jumped = parent[parent]
            if np.array_equal(jumped, parent):
                break
            parent = jumped
    return parent
