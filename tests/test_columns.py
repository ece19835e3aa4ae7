"""ipvi.columns: the scoring core's table answers what the DataFrame it stands for holds."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ipvi.columns import Columns


def _ids(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    values = np.array([f"P{k:05d}" for k in rng.integers(0, max(n // 3, 2), n)], dtype=object)
    values[rng.random(n) < 0.2] = None
    values[rng.random(n) < 0.1] = np.nan
    return values


@pytest.mark.parametrize("n", [1, 7, 3000])
def test_lists_hold_python_values_with_missing_as_none(n):
    rng = np.random.default_rng(n)
    frame = pd.DataFrame(
        {
            "id": _ids(n, seed=n),
            "score": np.where(rng.random(n) < 0.3, np.nan, rng.random(n)),
            "when": pd.to_datetime(np.where(rng.random(n) < 0.3, None, "2024-05-01")),
            "count": rng.integers(0, 9, n),
            "reasons": [[f"r{k}"] for k in range(n)],
        }
    )
    frame.loc[0, "id"] = pd.NA
    lists = Columns.from_frame(frame).lists()
    expected = {
        name: [None if pd.isna(v) else v for v in frame[name].astype(object).tolist()]
        for name in ("id", "score", "when", "count")
    }
    expected["when"] = [None if v is None else v.to_pydatetime() for v in expected["when"]]
    expected["reasons"] = frame["reasons"].tolist()
    assert lists == expected
    assert lists["id"][0] is None
    assert all(type(v) is float for v in lists["score"] if v is not None)
    assert all(type(v) is int for v in lists["count"])


def test_columns_round_trip_take_and_assign_like_the_frame():
    frame = pd.DataFrame({"a": [3, 1, 2], "b": ["x", None, "z"]}, index=[10, 11, 12])
    table = Columns.from_frame(frame)
    assert len(table) == 3 and table.columns == ["a", "b"] and "a" in table
    taken = table.take(np.array([2, 0]))
    pd.testing.assert_frame_equal(taken.to_frame(), frame.take([2, 0]).reset_index(drop=True))
    masked = table.take(np.array([True, False, True]))
    assert masked["a"].tolist() == [3, 2]
    assigned = taken.assign(c=[[1], [2, 3]])
    assert assigned["c"].dtype == object and assigned["c"][1] == [2, 3]  # lists stay items
    assert table.columns == ["a", "b"]  # assign copies
    assert len(Columns()) == 0


def test_columns_of_different_lengths_are_refused():
    with pytest.raises(ValueError, match=r"\[2, 3\]"):
        Columns({"a": [1, 2, 3], "b": [1, 2]})
