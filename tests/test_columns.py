"""ipvi.columns: the small-table helpers answer exactly what pandas answers, small or large."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ipvi.columns import (
    SMALL,
    Columns,
    factorize,
    get_indexer,
    is_one_of,
    isin,
    like,
)


def _ids(n: int, seed: int, missing: bool = False) -> np.ndarray:
    rng = np.random.default_rng(seed)
    values = np.array([f"P{k:05d}" for k in rng.integers(0, max(n // 3, 2), n)], dtype=object)
    if missing:
        values[rng.random(n) < 0.2] = None
        values[rng.random(n) < 0.1] = np.nan
    return values


@pytest.mark.parametrize("n", [0, 1, 7, SMALL, SMALL + 1, 5000])
@pytest.mark.parametrize("sort", [False, True])
@pytest.mark.parametrize("missing", [False, True])
def test_factorize_is_pandas_factorize(n, sort, missing):
    values = _ids(n, seed=n, missing=missing)
    codes, uniques = factorize(values, sort=sort)
    expected_codes, expected_uniques = pd.factorize(values, sort=sort)
    np.testing.assert_array_equal(codes, expected_codes)
    assert list(uniques) == list(expected_uniques)


@pytest.mark.parametrize("n", [0, 1, 7, SMALL, SMALL + 1, 3000])
@pytest.mark.parametrize("sort", [False, True])
def test_factorize_of_integers_and_dates_is_pandas_factorize(n, sort):
    rng = np.random.default_rng(n)
    integers = rng.integers(-5, max(n // 3, 2), n)
    dates = np.datetime64("2020-01-01", "ns") + integers.astype("timedelta64[D]")
    dates[rng.random(n) < 0.2] = np.datetime64("NaT")
    for values in (integers, dates):
        codes, uniques = factorize(values, sort=sort)
        expected_codes, expected_uniques = pd.factorize(values, sort=sort)
        np.testing.assert_array_equal(codes, expected_codes)
        np.testing.assert_array_equal(uniques, np.asarray(expected_uniques))
        assert uniques.dtype == values.dtype


@pytest.mark.parametrize("n", [0, 5, SMALL // 2, 3000])
def test_get_indexer_and_isin_are_pandas(n):
    keys = np.array(sorted(set(_ids(n, seed=1))), dtype=object)
    queries = _ids(n, seed=2, missing=True)
    expected = pd.Index(keys).get_indexer(queries)
    np.testing.assert_array_equal(get_indexer(keys, queries), expected)
    wanted = list(keys[::2])
    np.testing.assert_array_equal(isin(queries, wanted), pd.Series(queries).isin(wanted))


@pytest.mark.parametrize("n", [0, 1, 7, 3000])
def test_is_one_of_is_numpy_isin(n):
    words = _ids(n, seed=n, missing=True)
    choices = frozenset(words[:3].tolist()) - {None}
    np.testing.assert_array_equal(is_one_of(words, choices), np.isin(words, list(choices)))
    letters = np.array(list("ABCD" * n))
    np.testing.assert_array_equal(is_one_of(letters, {"A", "B"}), np.isin(letters, ["A", "B"]))
    assert not is_one_of(words, []).any()


@pytest.mark.parametrize("n", [1, 7, SMALL + 1])
def test_lists_hold_python_values_with_missing_as_none_at_any_size(n):
    rng = np.random.default_rng(n)
    frame = pd.DataFrame(
        {
            "id": _ids(n, seed=n, missing=True),
            "score": np.where(rng.random(n) < 0.3, np.nan, rng.random(n)),
            "when": pd.to_datetime(np.where(rng.random(n) < 0.3, None, "2024-05-01")),
            "count": rng.integers(0, 9, n),
        }
    )
    frame.loc[0, "id"] = pd.NA
    lists = Columns.from_frame(frame).lists()
    expected = {
        name: [None if pd.isna(v) else v for v in frame[name].astype(object).tolist()]
        for name in frame.columns
    }
    expected["when"] = [None if v is None else v.to_pydatetime() for v in expected["when"]]
    assert lists == expected
    assert all(type(v) is float for v in lists["score"] if v is not None)


def test_to_numpy_fills_missing_as_nan_like_pandas():
    frame = pd.DataFrame(
        {"a": [1, 2, 3], "b": [0.5, np.nan, 2.0], "c": [None, 1.0, 4], "d": [True, False, True]}
    )
    np.testing.assert_array_equal(
        Columns.from_frame(frame).to_numpy(dtype=float), frame.to_numpy(dtype=float)
    )


def test_get_indexer_refuses_repeated_keys_as_pandas_does():
    with pytest.raises(pd.errors.InvalidIndexError):
        get_indexer(np.array(["a", "a"], dtype=object), np.array(["a"], dtype=object))


def test_columns_behave_like_the_frames_they_stand_for():
    frame = pd.DataFrame({"a": [3, 1, 2], "b": ["x", None, "z"]})
    table = Columns.from_frame(frame)
    assert len(table) == 3 and table.columns == ["a", "b"] and not table.empty
    taken = table.take(np.array([2, 0]))
    pd.testing.assert_frame_equal(taken.to_frame(), frame.take([2, 0]).reset_index(drop=True))
    assert taken.assign(c=[1.0, 2.0])["c"].dtype == object  # a list is kept item by item
    assert isinstance(like(table, {"a": [1]}), Columns)
    assert isinstance(like(frame, {"a": [1]}), pd.DataFrame)
    np.testing.assert_array_equal(table[["a"]].to_numpy(dtype=float), [[3.0], [1.0], [2.0]])
    with pytest.raises(ValueError, match="3 rows"):
        table["c"] = [1, 2]
