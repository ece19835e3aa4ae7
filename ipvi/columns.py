"""Columns: a table held as named numpy arrays of one length, for the per-request scoring path.

The scoring functions run on a million index events in training and on one person per
request in the service. On a few rows a pandas DataFrame costs far more to build and index
than the work itself (each construction checks and consolidates every column), so those
functions take either a DataFrame or :class:`Columns` and answer in the kind they were given
(:func:`like`): training keeps its frames, the service never builds one. :class:`Columns`
offers the small part of the DataFrame interface they use (``frame[name]``, ``len``,
``columns``, ``empty``, ``take``, ``assign``, ``reset_index``, ``to_numpy``), so the code
reading them is the same for both.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import numpy as np
import pandas as pd

from ipvi.arrays import object_array, unique_sorted


def _array(values: Any) -> np.ndarray:
    if isinstance(values, np.ndarray):
        return values
    if isinstance(values, list):
        return object_array(values)
    return np.asarray(values)


class Columns:
    """Equal-length numpy arrays by name, in insertion order.

    Parameters
    ----------
    data : mapping of str to array-like
        The columns; a list becomes an object array of its items.

    Raises
    ------
    ValueError
        When the columns differ in length.
    """

    __slots__ = ("_data", "_rows")

    def __init__(self, data: Mapping[str, Any] | None = None) -> None:
        self._data = {
            name: values if type(values) is np.ndarray else _array(values)
            for name, values in (data or {}).items()
        }
        lengths = set(map(len, self._data.values()))
        if len(lengths) > 1:
            raise ValueError(f"columns of different lengths: {sorted(lengths)}")
        self._rows = lengths.pop() if lengths else 0

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> Columns:
        """The columns of a DataFrame (positional: its index is dropped)."""
        return cls({name: frame[name].to_numpy() for name in frame.columns})

    def __getitem__(self, key: str | list[str]) -> Any:
        if isinstance(key, str):
            return self._data[key]
        return Columns._of({name: self._data[name] for name in key}, self._rows)

    def __setitem__(self, name: str, values: Any) -> None:
        values = _array(values)
        if self._data and len(values) != self._rows:
            raise ValueError(f"column {name!r} has {len(values)} values for {self._rows} rows")
        self._data[name] = values
        self._rows = len(values)

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

    @property
    def empty(self) -> bool:
        return self._rows == 0

    @classmethod
    def _of(cls, data: dict[str, np.ndarray], rows: int) -> Columns:
        """Arrays known to be numpy and of ``rows`` values each (no checks: internal)."""
        table = cls.__new__(cls)
        table._data, table._rows = data, rows
        return table

    def take(self, positions: np.ndarray) -> Columns:
        """The rows at ``positions``, in that order."""
        positions = np.asarray(positions)
        data = {name: values[positions] for name, values in self._data.items()}
        return Columns._of(
            data, len(positions) if positions.dtype != bool else int(positions.sum())
        )

    def assign(self, **columns: Any) -> Columns:
        """A copy with ``columns`` added or replaced."""
        return Columns({**self._data, **columns})

    def reset_index(self, drop: bool = True) -> Columns:
        """Itself: columns are positional already (for code shared with DataFrames)."""
        return self

    def to_numpy(self, dtype: Any = None, na_value: Any = None) -> np.ndarray:
        """The columns side by side as one 2-d array (``na_value`` accepted for pandas parity:
        float columns already hold NaN)."""
        if not self._data:
            return np.empty((self._rows, 0), dtype=dtype)
        if dtype is None:
            return np.column_stack(list(self._data.values()))
        # Filled a column at a time: column_stack reshapes and copies each one first.
        matrix = np.empty((self._rows, len(self._data)), dtype=dtype)
        for position, values in enumerate(self._data.values()):
            matrix[:, position] = values
        return matrix

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame(self._data)

    def lists(self) -> dict[str, list[Any]]:
        """The columns as lists of Python values: dates as datetimes, NaN and NaT as None."""
        native = {}
        for name, values in self._data.items():
            if values.dtype.kind == "M":
                values = values.astype("datetime64[us]")
            items = values.tolist()  # NaT is None already
            if values.dtype.kind == "f":
                missing = np.isnan(values).nonzero()[0].tolist()
            elif values.dtype.kind == "O":
                # On a few values a Python pass costs less than pandas' isna.
                missing = (
                    [position for position, item in enumerate(items) if _missing(item)]
                    if len(items) <= SMALL
                    else pd.isna(values).nonzero()[0].tolist()
                )
            else:
                missing = []
            for position in missing:
                items[position] = None
            native[name] = items
        return native


def _missing(item: Any) -> bool:
    if item is None or item is pd.NA or item is pd.NaT:
        return True
    return isinstance(item, float) and item != item


# Below this many values, Python dicts beat pandas' hash tables, whose fixed cost (tens of
# microseconds a call) is most of the scoring path's time for one person.
SMALL = 512


def factorize(values: Any, sort: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """:func:`pandas.factorize` (codes, uniques; missing values coded -1), quicker when small.

    With ``sort``, uniques are sorted and codes follow them. Small object arrays are coded
    with a dict, small sorted integer and date arrays by sorting; anything else (or values
    that do not sort) goes to pandas, except that many strings are sorted as a numpy string
    array (compared in C, not one Python comparison at a time: several seconds at a million
    ids). Same answer.
    """
    array = np.asarray(values)
    if sort and array.dtype.kind in "iuM" and len(array) <= SMALL:
        missing = np.isnat(array) if array.dtype.kind == "M" else np.zeros(len(array), bool)
        uniques = unique_sorted(array[~missing])
        codes = np.searchsorted(uniques, array)
        codes[missing] = -1
        return codes, uniques
    if array.dtype != object or len(array) > SMALL:
        strings = sort and array.dtype == object
        codes, uniques = pd.factorize(array, sort=sort and not strings)
        uniques = np.asarray(uniques)
        if strings and pd.api.types.infer_dtype(uniques, skipna=False) == "string":
            return _sorted_codes(codes, uniques, np.argsort(uniques.astype(str), kind="stable"))
        if strings:
            codes, uniques = pd.factorize(array, sort=True)
            return codes, np.asarray(uniques)
        return codes, uniques
    seen: dict[Any, int] = {}
    codes = np.fromiter(
        (-1 if _missing(item) else seen.setdefault(item, len(seen)) for item in array.tolist()),
        dtype=np.intp,
        count=len(array),
    )
    uniques = list(seen)
    if sort and uniques:
        try:
            order = sorted(range(len(uniques)), key=uniques.__getitem__)
        except TypeError:
            codes, uniques = pd.factorize(array, sort=sort)
            return codes, np.asarray(uniques)
        if order != list(range(len(order))):  # often sorted already (one person's ids)
            return _sorted_codes(codes, object_array(uniques), np.asarray(order, dtype=np.intp))
    return codes, object_array(uniques)


def _sorted_codes(
    codes: np.ndarray, uniques: np.ndarray, order: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Codes and uniques renumbered so that uniques follow ``order`` (missing stays -1)."""
    rank = np.empty(len(order), dtype=np.intp)
    rank[order] = np.arange(len(order))
    codes = np.where(codes >= 0, rank[np.maximum(codes, 0)], -1)
    return codes, uniques[order]


def get_indexer(keys: Any, queries: Any) -> np.ndarray:
    """Each query's position among ``keys`` (-1 when absent), as
    ``pandas.Index(keys).get_indexer(queries)``: quicker when small. ``keys`` must be unique."""
    keys, queries = np.asarray(keys), np.asarray(queries)
    if keys.dtype != object or len(keys) + len(queries) > SMALL:
        return pd.Index(keys).get_indexer(queries)
    where = {key: position for position, key in enumerate(keys.tolist())}
    if len(where) < len(keys) or any(_missing(key) for key in where):
        return pd.Index(keys).get_indexer(queries)  # pandas' answer (or its error)
    return np.fromiter(
        (where.get(query, -1) for query in queries.tolist()), dtype=np.intp, count=len(queries)
    )


def is_one_of(values: Any, choices: Iterable[Any]) -> np.ndarray:
    """Whether each value equals one of a few ``choices`` (vocabulary words, tiers), as
    ``np.isin``: one comparison per choice, without ``np.isin``'s set-up, which costs more
    than the comparisons on one person's rows."""
    values = np.asarray(values)
    found = np.zeros(values.shape, dtype=bool)
    for choice in choices:
        found |= values == choice
    return found


def isin(values: Any, wanted: Iterable[Any]) -> np.ndarray:
    """Whether each value is one of ``wanted``, by hashing (``np.isin`` sorts or loops over
    object arrays: quadratic for a thousand ids)."""
    wanted = set(wanted)
    items = np.asarray(values, dtype=object).tolist()
    return np.fromiter((item in wanted for item in items), dtype=bool, count=len(items))


Table = pd.DataFrame | Columns


def like(template: Table, data: Mapping[str, Any]) -> Table:
    """``data`` as a DataFrame when ``template`` is one, else as :class:`Columns`."""
    if isinstance(template, pd.DataFrame):
        return pd.DataFrame(dict(data))
    return Columns(data)
