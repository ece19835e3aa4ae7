"""Multi-level comparisons with vectorised kernels, usable as recordlinkage compare features.

A :class:`Comparison` is an ordered list of levels (Splink's idea): "missing" first, the most
specific agreement next, "else" last; a pair takes the first level whose condition holds.
Each level is a small class with two jobs, its vectorised condition and its human label.
A comparison has recordlinkage's compare-feature interface (``labels_left``, ``labels_right``,
``_compute_vectorized``): :func:`linkage.rl.compare_with_recordlinkage` runs the same objects
inside ``recordlinkage.Compare``. The production path (:func:`compare_pairs`) gathers the pair
values with numpy ``take`` instead, and never imports recordlinkage (which loads scikit-learn,
seconds of start-up for ``ipvi dedupe``). String similarity uses ``rapidfuzz.process.cpdist``
(C++, once per distinct value pair) instead of recordlinkage's per-pair Python loops.
"""

from __future__ import annotations

from functools import cache
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from rapidfuzz import process
from rapidfuzz.distance import DamerauLevenshtein, JaroWinkler

from ipvi.errors import IpviError
from linkage.standardize import MISSING, postal_area

NULL_LEVEL = 0
NO_DATE = -(2**40)  # the day number of a value that is no date
MISSING_CODE = 0  # the code of "" in every Vocabulary


class Vocabulary:
    """Every distinct standardised string of the compared columns, ``""`` (missing) at code 0.

    Pairs are compared on integer codes: equality is code equality, and a string kernel runs
    once per distinct (left value, right value) pair, not once per record pair.
    """

    def __init__(self, values: np.ndarray):
        self.values = values
        self._derived: dict[str, np.ndarray] = {}
        self._code_maps: dict[str, dict] = {}

    @classmethod
    def encode(cls, frames: list[pd.DataFrame], columns: list[str]):
        """Codes of ``columns`` in each frame (a list of code frames) and their vocabulary."""
        stacked = np.concatenate(
            [np.array([MISSING], dtype=object)]
            + [frame[c].to_numpy(dtype=object) for frame in frames for c in columns]
        )
        codes, uniques = pd.factorize(stacked)
        codes = codes.astype(np.int32)
        out, position = [], 1
        for frame in frames:
            coded = {}
            for column in columns:
                coded[column] = codes[position : position + len(frame)]
                position += len(frame)
            out.append(pd.DataFrame(coded))
        return out, cls(np.asarray(uniques, dtype=object))

    @classmethod
    def encode_arrays(cls, left: dict[str, np.ndarray], right: dict[str, np.ndarray]):
        """The vocabulary of two dicts of aligned value arrays, and their code dicts."""
        columns = list(left)
        stacked = np.concatenate(
            [np.array([MISSING], dtype=object)]
            + [left[c] for c in columns]
            + [right[c] for c in columns]
        )
        codes, uniques = pd.factorize(stacked)
        n = len(left[columns[0]]) if columns else 0
        m = len(right[columns[0]]) if columns else 0
        out_left, out_right, position = {}, {}, 1
        for column in columns:
            out_left[column] = codes[position : position + n]
            position += n
        for column in columns:
            out_right[column] = codes[position : position + m]
            position += m
        return cls(np.asarray(uniques, dtype=object)), out_left, out_right

    def derived(self, name: str, function, codes: np.ndarray) -> np.ndarray:
        """A per-value array (e.g. the year of a date), filled in for ``codes`` as needed.

        Computed only for the values some pair asks about, each once per vocabulary.
        """
        if name not in self._derived:
            self._derived[name] = (
                np.zeros(len(self.values), dtype=object),
                np.zeros(len(self.values), bool),
            )
        values, done = self._derived[name]
        # Distinct codes by marking (linear; np.unique hashes or sorts every pair's code).
        marked = np.zeros(len(self.values), dtype=bool)
        marked[codes] = True
        wanted = np.flatnonzero(marked)
        todo = wanted[~done[wanted]]
        if len(todo):
            values[todo] = list(function(pd.Series(self.values[todo])))
            done[todo] = True
        return values

    def derived_codes(
        self, name: str, function, codes: np.ndarray, space: str | None = None
    ) -> np.ndarray:
        """:meth:`derived` as integers (equal derived values, equal integers), so that pairs
        compare integers rather than Python strings.

        Derivations whose codes are compared with each other (a first token with a last
        token) name one ``space``: each name has its own integers otherwise, and equal
        integers from two spaces would mean nothing (they depend on the order values came in).
        """
        code_of = self._code_maps.setdefault(space or name, {})

        def coded(values: pd.Series) -> list[int]:
            return [code_of.setdefault(value, len(code_of)) for value in function(values)]

        return self.derived(f"{name} codes", coded, codes).astype(np.int64)


# Pairs compared at once by compare_pairs (bounds its memory).
COMPARE_CHUNK = 8_000_000
# Below this many pairs threads cost more than they save (one record's candidates: a few ms).
PARALLEL_MIN_PAIRS = 20_000


def _workers(n_pairs: int) -> int:
    return -1 if n_pairs >= PARALLEL_MIN_PAIRS else 1


class PairValues:
    """The codes of one comparison's columns on both sides of some pairs, with cached kernels.

    ``cache`` (kernel key -> per-pair result) may be shared by the levels of one comparison:
    :meth:`Comparison.levels_from_codes` filters it with the pairs, so a second Jaro-Winkler
    level reuses the first one's similarities.
    """

    def __init__(self, left: dict, right: dict, column: str, vocabulary: Vocabulary, cache=None):
        self.left = left
        self.right = right
        self.column = column
        self.vocabulary = vocabulary
        self._cache: dict[Any, np.ndarray] = {} if cache is None else cache

    @property
    def a(self) -> np.ndarray:
        return self.left[self.column]

    @property
    def b(self) -> np.ndarray:
        return self.right[self.column]

    def values(self, codes: np.ndarray) -> np.ndarray:
        return self.vocabulary.values[codes]

    def similarity(self, scorer, left_column: str | None = None, right_column: str | None = None):
        """``scorer`` over aligned pairs of two columns (default: the comparison's column),
        once per distinct (a, b) value pair."""
        left_column = left_column or self.column
        right_column = right_column or self.column
        key = (scorer.__module__, scorer.__qualname__, left_column, right_column)
        if key not in self._cache:
            a, b = self.left[left_column], self.right[right_column]
            self._cache[key] = self.on_distinct_pairs(
                a,
                b,
                lambda ua, ub: process.cpdist(
                    ua, ub, scorer=scorer, workers=_workers(len(ua)), dtype=np.float32
                ),
            )
        return self._cache[key]

    def on_distinct_pairs(self, a: np.ndarray, b: np.ndarray, function) -> np.ndarray:
        """``function(values_a, values_b)`` evaluated once per distinct code pair."""
        if len(a) == 0:
            return np.zeros(0)
        joint = a.astype(np.int64) * len(self.vocabulary.values) + b
        codes, uniques = pd.factorize(joint)
        width = len(self.vocabulary.values)
        ua = list(self.vocabulary.values[uniques // width])
        ub = list(self.vocabulary.values[uniques % width])
        return np.asarray(function(ua, ub))[codes]


class Level:
    """One agreement level: a vectorised condition over :class:`PairValues` and a label."""

    kind: ClassVar[str] = ""
    tf: bool = False

    def mask(self, values: PairValues) -> np.ndarray:
        raise NotImplementedError

    def label(self, column: str) -> str:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.__dict__})"


class Exact(Level):
    """Equal values; with ``tf`` the weight is adjusted by how common the value is."""

    kind = "exact"

    def __init__(self, tf: bool = False):
        self.tf = tf

    def mask(self, values):
        return values.a == values.b

    def label(self, column):
        return f"{column}: exact"


class JaroWinklerAtLeast(Level):
    """Jaro-Winkler similarity at least ``threshold``."""

    kind = "jaro_winkler"

    def __init__(self, threshold: float):
        self.threshold = threshold

    def mask(self, values):
        return values.similarity(JaroWinkler.normalized_similarity) >= self.threshold

    def label(self, column):
        return f"{column}: Jaro-Winkler >= {self.threshold}"


class OneCharOff(Level):
    """At most one edit (substitution, insertion, deletion or adjacent transposition)."""

    kind = "one_char_off"

    def mask(self, values):
        return values.similarity(DamerauLevenshtein.distance) <= 1

    def label(self, column):
        return f"{column}: one character off"


class Nickname(Level):
    """The two first names are nickname equivalents (Bob / Robert), from ``nicknames``."""

    kind = "nickname"

    def mask(self, values):
        related = nickname_pairs()
        return values.on_distinct_pairs(
            values.a,
            values.b,
            lambda ua, ub: [f"{x}|{y}" in related for x, y in zip(ua, ub, strict=True)],
        ).astype(bool)

    def label(self, column):
        return f"{column}: nickname"


class TokenOverlap(Level):
    """A multi-token value shares its first or last token with the other (Garcia / Garcia
    Lopez, Jose Luis / Jose)."""

    kind = "token_overlap"

    def mask(self, values):
        vocabulary, a, b = values.vocabulary, values.a, values.b
        codes = np.r_[a, b]
        first = vocabulary.derived_codes(
            "first token", lambda v: v.str.split(" ").str[0], codes, space="token"
        )
        last = vocabulary.derived_codes(
            "last token", lambda v: v.str.split(" ").str[-1], codes, space="token"
        )
        compound = (first[a] != last[a]) | (first[b] != last[b])
        shared = (
            (first[a] == first[b])
            | (first[a] == last[b])
            | (last[a] == first[b])
            | (last[a] == last[b])
        )
        return compound & shared

    def label(self, column):
        return f"{column}: shares a name token"


class NameSwap(Level):
    """First and last names written the other way round."""

    kind = "name_swap"

    def mask(self, values):
        first_last = values.similarity(JaroWinkler.normalized_similarity, "first_name", "last_name")
        last_first = values.similarity(JaroWinkler.normalized_similarity, "last_name", "first_name")
        return (first_last >= 0.92) & (last_first >= 0.92)

    def label(self, column):
        return f"{column}: first and last names swapped"


class Initial(Level):
    """One value is the initial of the other (middle name "A" / "Ann")."""

    kind = "initial"

    def mask(self, values):
        vocabulary = values.vocabulary
        a, b = values.a, values.b
        codes = np.r_[a, b]
        initial = vocabulary.derived_codes("initial", lambda v: v.str[:1], codes)
        short = vocabulary.derived("short", lambda v: v.str.len() == 1, codes).astype(bool)
        return (short[a] | short[b]) & (initial[a] == initial[b])

    def label(self, column):
        return f"{column}: initial agrees"


class DayMonthSwapped(Level):
    """Dates with the same year and day and month exchanged."""

    kind = "day_month_swapped"

    def mask(self, values):
        a, b = values.a, values.b
        year, month, day = _date_parts(values.vocabulary, np.r_[a, b])
        return (year[a] >= 0) & (year[a] == year[b]) & (month[a] == day[b]) & (day[a] == month[b])

    def label(self, column):
        return f"{column}: day and month swapped"


class SameYear(Level):
    """Dates in the same year."""

    kind = "same_year"

    def mask(self, values):
        year, _, _ = _date_parts(values.vocabulary, np.r_[values.a, values.b])
        return (year[values.a] >= 0) & (year[values.a] == year[values.b])

    def label(self, column):
        return f"{column}: same year only"


class WithinDays(Level):
    """Dates at most ``days`` apart (a month or a year written wrong, not a wholly other date)."""

    kind = "within_days"

    def __init__(self, days: int = 366):
        self.days = days

    def mask(self, values):
        ordinal = values.vocabulary.derived("ordinal", day_numbers, np.r_[values.a, values.b])
        ordinal = ordinal.astype(np.int64)
        a, b = ordinal[values.a], ordinal[values.b]
        return (a != NO_DATE) & (b != NO_DATE) & (np.abs(a - b) <= self.days)

    def label(self, column):
        return f"{column}: within {self.days} days"


class PostalArea(Level):
    """The same postal area: a US ZIP3 or a UK outward code (see linkage.standardize)."""

    kind = "postal_area"

    def mask(self, values):
        area = values.vocabulary.derived_codes(
            "postal area", lambda v: v.map(postal_area), np.r_[values.a, values.b]
        )
        return area[values.a] == area[values.b]

    def label(self, column):
        return f"{column}: same postal area"


class SamePrefix(Level):
    """Different values with the same prefix before ``separator`` (same agency, other id)."""

    kind = "same_prefix"

    def __init__(self, separator: str = " "):
        self.separator = separator

    def mask(self, values):
        separator = self.separator
        prefix = values.vocabulary.derived_codes(
            f"prefix{separator}",
            lambda v: v.str.split(separator, n=1).str[0],
            np.r_[values.a, values.b],
        )
        return prefix[values.a] == prefix[values.b]

    def label(self, column):
        return f"{column}: same agency, different id"


def day_numbers(values: pd.Series) -> np.ndarray:
    """Days since 1970 of each ``YYYY-MM-DD`` value (NO_DATE for anything else)."""
    dates = pd.to_datetime(values, format="%Y-%m-%d", errors="coerce")
    days = (dates - pd.Timestamp("1970-01-01")).dt.days
    return np.where(dates.notna(), days.fillna(0).to_numpy(np.int64), NO_DATE)


def _date_parts(vocabulary: Vocabulary, codes: np.ndarray) -> tuple[np.ndarray, ...]:
    """Year, month and day of each vocabulary value that is a ``YYYY-MM-DD`` date (else -1)."""

    def part(start: int, stop: int):
        def compute(values: pd.Series) -> np.ndarray:
            is_date = values.str.fullmatch(r"\d{4}-\d{2}-\d{2}").fillna(False).to_numpy(bool)
            number = pd.to_numeric(values.str[start:stop], errors="coerce").fillna(-1)
            return np.where(is_date, number.to_numpy(np.int64), -1)

        return compute

    return tuple(
        vocabulary.derived(name, part(start, stop), codes).astype(np.int64)
        for name, start, stop in (("year", 0, 4), ("month", 5, 7), ("day", 8, 10))
    )


LEVEL_TYPES: dict[str, type[Level]] = {
    cls.kind: cls
    for cls in (
        Exact,
        JaroWinklerAtLeast,
        OneCharOff,
        Nickname,
        TokenOverlap,
        NameSwap,
        Initial,
        DayMonthSwapped,
        SameYear,
        WithinDays,
        PostalArea,
        SamePrefix,
    )
}
# Extra columns a level reads beyond the comparison's own.
LEVEL_COLUMNS: dict[str, tuple[str, ...]] = {
    "name_swap": ("first_name", "last_name"),
}


def make_level(spec: dict[str, Any]) -> Level:
    """A level from its plain-dict form, e.g. ``{"type": "jaro_winkler", "threshold": 0.9}``."""
    spec = dict(spec)
    kind = spec.pop("type", None)
    if kind not in LEVEL_TYPES:
        raise IpviError(f"unknown comparison level type {kind!r}; known: {sorted(LEVEL_TYPES)}")
    try:
        return LEVEL_TYPES[kind](**spec)
    except TypeError as error:
        raise IpviError(f"comparison level {kind!r}: {error}") from None


@cache
def nickname_pairs() -> frozenset[str]:
    """``"a|b"`` for every pair of names the ``nicknames`` package relates (both directions).

    Names sharing a canonical form (Bob and Rob, both Robert) are related too.
    """
    from nicknames import NickNamer

    namer = NickNamer()
    groups: dict[str, set[str]] = {}
    for name in list(namer._nickname_lookup) + list(namer._canonical_lookup):
        for canonical in namer.canonicals_of(name) | {name}:
            groups.setdefault(canonical, {canonical}).add(name)
    related: set[str] = set()
    for members in groups.values():
        for a in members:
            for b in members:
                if a != b:
                    related.add(f"{a}|{b}")
    return frozenset(related)


class Comparison:
    """An ordered list of levels over one column: missing, then ``levels`` in order, then else.

    Parameters
    ----------
    column : str
        The standardised column compared.
    levels : list of Level
        The agreement levels, most specific first (missing and else are implicit).
    name : str, optional
        The name of the comparison (default: the column).

    Examples
    --------
    >>> left = pd.DataFrame({"dob": ["1980-03-04", "1980-03-04", ""]})
    >>> right = pd.DataFrame({"dob": ["1980-04-03", "1980-03-04", "1980-01-01"]})
    >>> dob = Comparison("dob", [Exact(), DayMonthSwapped()])
    >>> dob.levels_of(left, right).tolist()
    [2, 1, 0]
    >>> dob.level_labels()
    ['dob: missing', 'dob: exact', 'dob: day and month swapped', 'dob: else']
    """

    def __init__(self, column: str, levels: list[Level], name: str | None = None):
        self.column = column
        self.levels = levels
        self.name = name or column
        columns = [column]
        for level in levels:
            columns += [c for c in LEVEL_COLUMNS.get(level.kind, ()) if c not in columns]
        self.columns = columns
        # recordlinkage's compare-feature interface (see linkage.rl)
        self.labels_left = self.labels_right = columns
        self.label = self.name

    @property
    def n_levels(self) -> int:
        """Missing + the declared levels + else."""
        return len(self.levels) + 2

    def level_labels(self) -> list[str]:
        return (
            [f"{self.name}: missing"]
            + [level.label(self.name) for level in self.levels]
            + [f"{self.name}: else"]
        )

    def tf_level(self) -> int | None:
        """Index of the exact level adjusted by term frequency, if any."""
        for index, level in enumerate(self.levels, start=1):
            if level.tf:
                return index
        return None

    def _compute_vectorized(self, *series: pd.Series) -> np.ndarray:
        half = len(series) // 2
        left = {c: s.to_numpy() for c, s in zip(self.columns, series[:half], strict=True)}
        right = {c: s.to_numpy() for c, s in zip(self.columns, series[half:], strict=True)}
        return self.levels_from_codes(left, right, self.vocabulary_)

    def levels_from_codes(self, left: dict, right: dict, vocabulary: Vocabulary) -> np.ndarray:
        """The level of every aligned pair (int8: 0 missing ... n_levels - 1 else)."""
        a, b = left[self.column], right[self.column]
        result = np.full(len(a), self.n_levels - 1, dtype=np.int8)
        present = (a != MISSING_CODE) & (b != MISSING_CODE)
        result[~present] = NULL_LEVEL
        # The pairs no level has claimed yet, and their values: shrunk after every level
        # (sequential filtering, not a gather from the full arrays per level).
        rows = np.flatnonzero(present)
        left = {c: v[rows] for c, v in left.items()}
        right = {c: v[rows] for c, v in right.items()}
        cache: dict = {}
        for index, level in enumerate(self.levels, start=1):
            if len(rows) == 0:
                break
            hit = np.asarray(
                level.mask(PairValues(left, right, self.column, vocabulary, cache)), dtype=bool
            )
            result[rows[hit]] = index
            if index == len(self.levels) or not hit.any():
                continue  # nothing left to ask, or nothing claimed: no need to filter
            rest = ~hit
            rows = rows[rest]
            left = {c: v[rest] for c, v in left.items()}
            right = {c: v[rest] for c, v in right.items()}
            cache = {key: v[rest] for key, v in cache.items()}
        return result

    def levels_of(self, left: pd.DataFrame, right: pd.DataFrame) -> np.ndarray:
        """Levels of row-aligned standardised frames ``left`` and ``right``."""
        (coded_left, coded_right), vocabulary = Vocabulary.encode([left, right], self.columns)
        return self.levels_from_codes(
            {c: coded_left[c].to_numpy() for c in self.columns},
            {c: coded_right[c].to_numpy() for c in self.columns},
            vocabulary,
        )


def encode_for(comparisons: list[Comparison], frames: list[pd.DataFrame]):
    """Code frames of every column the ``comparisons`` read, and their shared vocabulary."""
    columns: list[str] = []
    for comparison in comparisons:
        columns += [c for c in comparison.columns if c not in columns]
    return Vocabulary.encode(frames, columns)


def compare_pairs(
    comparisons: list[Comparison],
    left_index: np.ndarray,
    right_index: np.ndarray,
    coded: pd.DataFrame,
    coded_other: pd.DataFrame | None,
    vocabulary: Vocabulary,
) -> np.ndarray:
    """The level matrix (pairs x comparisons, int8) of candidate pairs.

    ``coded`` (and ``coded_other`` when linking two files) are code frames from
    :func:`encode_for`; the pair values are gathered by position.
    """
    levels = np.zeros((len(left_index), len(comparisons)), dtype=np.int8)
    other = coded if coded_other is None else coded_other
    # In chunks of COMPARE_CHUNK pairs, so memory does not grow with the number of pairs; each
    # string kernel still runs once per distinct value pair of a chunk.
    for start in range(0, len(left_index), COMPARE_CHUNK):
        rows = slice(start, start + COMPARE_CHUNK)
        for k, comparison in enumerate(comparisons):
            left = {c: coded[c].to_numpy()[left_index[rows]] for c in comparison.columns}
            right = {c: other[c].to_numpy()[right_index[rows]] for c in comparison.columns}
            levels[rows, k] = comparison.levels_from_codes(left, right, vocabulary)
    return levels
