"""Columns: the one table type of the scoring core, named numpy arrays of one length.

The scoring path (offences, features, tiers, scores) runs on a million index events in training
and on one person per request in the service. It takes and returns :class:`Columns` only, so a
function written once works for both and nothing in it depends on pandas' indexes. Training
converts its DataFrames once, where it enters the core (:meth:`Columns.from_frame`), and back
where it leaves (:meth:`Columns.to_frame`); the service never builds a DataFrame.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import pandas as pd

from ipvi.arrays import object_array


class Columns:
    """Equal-length 1-d numpy arrays by name, in insertion order.

    Parameters
    ----------
    data : mapping of str to array-like
        The columns; a list becomes an object array of its items (lists stay items).

    Raises
    ------
    ValueError
        When the columns differ in length.
    """

    def __init__(self, data: Mapping[str, Any] | None = None) -> None:
        self._data = {
            name: object_array(values) if isinstance(values, list) else np.asarray(values)
            for name, values in (data or {}).items()
        }
        lengths = {len(values) for values in self._data.values()}
        if len(lengths) > 1:
            raise ValueError(f"columns of different lengths: {sorted(lengths)}")
        self._rows = lengths.pop() if lengths else 0

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> Columns:
        """The columns of a DataFrame, by position (its index is not kept)."""
        return cls({name: frame[name].to_numpy() for name in frame.columns})

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame(self._data)

    def __getitem__(self, name: str) -> np.ndarray:
        return self._data[name]

    def __contains__(self, name: object) -> bool:
        return name in self._data

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return self._rows

    def __repr__(self) -> str:
        return f"Columns({self._rows} rows: {', '.join(self._data)})"

    @property
    def columns(self) -> list[str]:
        return list(self._data)

    def take(self, positions: np.ndarray) -> Columns:
        """The rows at ``positions`` (integers, or a boolean mask), in that order."""
        return Columns({name: values[positions] for name, values in self._data.items()})

    def assign(self, **columns: Any) -> Columns:
        """A copy with ``columns`` added or replaced."""
        return Columns({**self._data, **columns})

    def lists(self) -> dict[str, list[Any]]:
        """The columns as lists of Python values: dates as datetimes, NaN and NaT as None."""
        native = {}
        for name, values in self._data.items():
            if values.dtype.kind == "M":
                values = values.astype("datetime64[us]")  # tolist gives datetimes, NaT None
            items = values.tolist()
            if values.dtype.kind in "fO":
                for position in np.flatnonzero(pd.isna(values)).tolist():
                    items[position] = None
            native[name] = items
        return native
