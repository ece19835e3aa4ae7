"""Protected groups: one value per person, age bands, and intersections of attributes.

A person named in several records may be recorded with different races or ethnicities. The
audit takes the strict majority of their known values; with no majority the person is
``conflicting``, with no known value ``unknown``. Nothing is imputed: a guess would move people
between the very groups being compared.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations

import numpy as np
import pandas as pd

UNKNOWN = "unknown"
CONFLICTING = "conflicting"
INTERSECTION_SEPARATOR = " & "
# Values that mean "not recorded": they do not vote in the majority.
MISSING_VALUES = frozenset({"", UNKNOWN})


def person_attribute(
    persons: pd.Series, values: pd.Series, votes: pd.Series | None = None
) -> pd.Series:
    """The majority value of one attribute across each person's mentions.

    Parameters
    ----------
    persons, values : Series
        One row per mention (or per distinct mention value, with ``votes``): the person id
        and the recorded value (null or ``unknown`` when not recorded).
    votes : Series, optional
        How many mentions each row stands for (default: one each).

    Returns
    -------
    Series
        Indexed by person id: the strict majority of the known values, else ``conflicting``;
        ``unknown`` when no mention records a value.

    Examples
    --------
    >>> person_attribute(pd.Series([1, 1, 1, 2, 2, 3]),
    ...                  pd.Series(["black", "black", "white", "white", "black", None])).to_dict()
    {1: 'black', 2: 'conflicting', 3: 'unknown'}
    """
    # Integer codes throughout: a registry has millions of mentions and a handful of values.
    person, everyone = pd.factorize(persons.to_numpy(), use_na_sentinel=False)
    value, recorded = pd.factorize(values.to_numpy())
    text = pd.Series(recorded, dtype=object).astype("string").str.strip().str.lower()
    known = (text.notna() & ~text.isin(MISSING_VALUES)).to_numpy(dtype=bool)
    meaning, names = pd.factorize(text.where(known).to_numpy(dtype=object))  # -1: not known
    value = np.append(meaning, -1)[value]  # a null value (-1) is not known either
    rows = value >= 0
    weights = np.ones(len(value)) if votes is None else votes.to_numpy(dtype=float)
    cell, at = np.unique(person[rows] * len(names) + value[rows], return_inverse=True)
    tally = np.bincount(at, weights=weights[rows], minlength=len(cell))
    owner = cell // max(len(names), 1)
    total = np.bincount(owner, weights=tally, minlength=len(everyone))
    result = np.full(len(everyone), UNKNOWN, dtype=object)
    result[total > 0] = CONFLICTING
    winners = tally * 2 > total[owner]
    result[owner[winners]] = np.asarray(names, dtype=object)[cell[winners] % len(names)]
    return pd.Series(result, index=pd.Index(everyone, name="person"), name=values.name)


def person_attributes(mentions: pd.DataFrame, attributes: Sequence[str]) -> pd.DataFrame:
    """:func:`person_attribute` for several columns of a mentions table with ``person_id``
    (and ``n_mentions`` when each row stands for several mentions, as
    :func:`fairness.store.mention_attributes` reads them)."""
    votes = mentions.get("n_mentions")
    return pd.concat(
        [
            person_attribute(mentions["person_id"], mentions[name], votes).rename(name)
            for name in attributes
        ],
        axis=1,
    )


def age_band(age: pd.Series, edges: Sequence[int]) -> pd.Series:
    """Age bands such as ``<25``, ``25-34``, ``55+``; a missing age is ``unknown``.

    Examples
    --------
    >>> age_band(pd.Series([19, 25, 40, None, 70]), [25, 35, 55]).tolist()
    ['<25', '25-34', '35-54', 'unknown', '55+']
    """
    labels = [f"<{edges[0]}"]
    labels += [f"{lo}-{hi - 1}" for lo, hi in zip(edges, edges[1:], strict=False)]
    labels += [f"{edges[-1]}+"]
    values = pd.to_numeric(age, errors="coerce").to_numpy(dtype=float)
    index = np.searchsorted(np.asarray(edges, dtype=float), values, side="right")
    out = np.asarray(labels, dtype=object)[np.minimum(index, len(labels) - 1)]
    out[np.isnan(values)] = UNKNOWN
    return pd.Series(out, index=age.index, name="age_band")


def intersection_name(attributes: Sequence[str]) -> str:
    """The column name of an intersection, e.g. ``race & sex``."""
    return INTERSECTION_SEPARATOR.join(attributes)


def add_intersections(frame: pd.DataFrame, attributes: Sequence[str]) -> list[str]:
    """Add a column for every combination of two or more ``attributes``; return their names.

    A value of an intersection joins the values, e.g. ``black & male``.
    """
    names = []
    for size in range(2, len(attributes) + 1):
        for combo in combinations(attributes, size):
            name = intersection_name(combo)
            value = frame[combo[0]].astype(str)
            for other in combo[1:]:
                value = value + INTERSECTION_SEPARATOR + frame[other].astype(str)
            frame[name] = value
            names.append(name)
    return names
