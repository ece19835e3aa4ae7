"""ipvi.arrays: each helper answers what the numpy, pandas or scipy function it stands for does."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ipvi.arrays import (
    connected_labels,
    factorize,
    in_sorted,
    is_in,
    object_array,
    positions_in,
    run_starts,
    unique_counts,
    unique_sorted,
)


def _ids(n: int, seed: int, missing: bool) -> np.ndarray:
    rng = np.random.default_rng(seed)
    values = np.array([f"P{k:05d}" for k in rng.integers(0, max(n // 3, 2), n)], dtype=object)
    if missing:
        values[rng.random(n) < 0.2] = None
        values[rng.random(n) < 0.1] = np.nan
    return values


@pytest.mark.parametrize("n", [0, 1, 7, 5000])
@pytest.mark.parametrize("sort", [False, True])
@pytest.mark.parametrize("missing", [False, True])
def test_factorize_of_strings_is_pandas_factorize(n, sort, missing):
    values = _ids(n, seed=n, missing=missing)
    codes, uniques = factorize(values, sort=sort)
    expected_codes, expected_uniques = pd.factorize(values, sort=sort)
    np.testing.assert_array_equal(codes, expected_codes)
    assert list(uniques) == list(expected_uniques)


@pytest.mark.parametrize("n", [0, 1, 7, 3000])
@pytest.mark.parametrize("sort", [False, True])
def test_factorize_of_integers_dates_and_mixed_objects_is_pandas_factorize(n, sort):
    rng = np.random.default_rng(n)
    integers = rng.integers(-5, max(n // 3, 2), n)
    dates = np.datetime64("2020-01-01", "ns") + integers.astype("timedelta64[D]")
    dates[rng.random(n) < 0.2] = np.datetime64("NaT")
    numbers = integers.astype(object)  # objects that are not strings sort as numbers
    for values in (integers, dates, numbers):
        codes, uniques = factorize(values, sort=sort)
        expected_codes, expected_uniques = pd.factorize(values, sort=sort)
        np.testing.assert_array_equal(codes, expected_codes)
        np.testing.assert_array_equal(uniques, np.asarray(expected_uniques))


@pytest.mark.parametrize("n", [0, 1, 2, 9, 5000])
def test_unique_sorted_and_counts_are_numpy_unique(n):
    rng = np.random.default_rng(n)
    integers = rng.integers(-50, max(n // 2, 1), n)
    dates = np.datetime64("2020-01-01") + integers.astype("timedelta64[D]")
    increasing = np.arange(n, dtype=np.int64) * 3  # already sorted and distinct
    for values in (integers, dates, increasing):
        np.testing.assert_array_equal(unique_sorted(values), np.unique(values))
        assert unique_sorted(values).dtype == values.dtype
        distinct, counts = unique_counts(values)
        expected, expected_counts = np.unique(values, return_counts=True)
        np.testing.assert_array_equal(distinct, expected)
        np.testing.assert_array_equal(counts, expected_counts)


@pytest.mark.parametrize("n", [0, 1, 7, 3000])
def test_in_sorted_is_numpy_isin_values_first(n):
    rng = np.random.default_rng(n)
    values = rng.integers(-3, 40, n)
    for keys in (unique_sorted(rng.integers(0, 30, n // 2 + 1)), np.array([], dtype=np.int64)):
        np.testing.assert_array_equal(in_sorted(values, keys), np.isin(values, keys))
    dates = np.datetime64("2024-01-01") + values.astype("timedelta64[D]")
    some = unique_sorted(dates[:2])
    np.testing.assert_array_equal(in_sorted(dates, some), np.isin(dates, some))
    # The argument order is numpy's: swapping them gives another (wrong) answer, not an error.
    assert in_sorted(np.array([5, 1]), np.array([1, 2, 5])).tolist() == [True, True]
    assert in_sorted(np.array([1, 2, 5]), np.array([1, 5])).tolist() == [True, False, True]


@pytest.mark.parametrize("n", [0, 1, 6, 2000])
def test_run_starts_marks_where_pandas_sees_a_new_value(n):
    rng = np.random.default_rng(n)
    ordered = np.sort(rng.integers(0, max(n // 4, 1), n))
    labels = np.array([f"P{k}" for k in ordered], dtype=object)
    for values in (ordered, labels):
        series = pd.Series(values)
        expected = (series != series.shift()).to_numpy()
        np.testing.assert_array_equal(run_starts(values), expected)


def test_object_array_keeps_each_item_whole():
    values = object_array([[1, 2], [3], None])
    assert values.shape == (3,) and values.dtype == object
    assert values[0] == [1, 2] and values[2] is None
    assert object_array(iter(["a", "b"])).tolist() == ["a", "b"]
    assert object_array([]).shape == (0,)


def test_connected_labels_match_scipy_on_random_graphs_and_chains():
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    rng = np.random.default_rng(3)
    for n, m in [(1, 0), (50, 30), (2000, 1500)]:
        left, right = rng.integers(0, n, m), rng.integers(0, n, m)
        chain = np.arange(n)  # a chain of every item: one component, many hops
        for a, b in [(left, right), (np.r_[left, chain[1:]], np.r_[right, chain[:-1]])]:
            ours = connected_labels(n, a, b)
            graph = coo_matrix((np.ones(len(a)), (a, b)), shape=(n, n))
            reference = connected_components(graph, directed=False)[1]
            assert (pd.factorize(ours)[0] == pd.factorize(reference)[0]).all()
            assert (ours <= np.arange(n)).all()  # each label is the component's first item


@pytest.mark.parametrize("n", [0, 1, 7, 5000])
def test_positions_in_and_is_in_are_pandas_get_indexer_and_numpy_isin(n):
    keys = np.array(sorted(set(_ids(n, seed=1, missing=False))), dtype=object)
    values = _ids(n, seed=2, missing=True)
    np.testing.assert_array_equal(positions_in(values, keys), pd.Index(keys).get_indexer(values))
    repeated = np.concatenate([keys, keys[::2]])
    expected = pd.Series(values).isin(repeated).to_numpy()
    np.testing.assert_array_equal(is_in(values, repeated), expected)


def test_positions_among_repeated_keys_are_refused():
    with pytest.raises(ValueError, match="repeat"):
        positions_in(np.array(["a"], dtype=object), np.array(["a", "a"], dtype=object))
