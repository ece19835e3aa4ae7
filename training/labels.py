"""The label of ../shared/DESIGN.md, one definition for training and the generator's target.

For an index IPV offence with decision date T (index date + decision lag): positive when an
incident, charge or order violation with ``ipv = true``, not part of the index offence, has its
``offense_date`` in the ``followup_days`` at liberty after T (custody days extend the window)
and was recorded by ``recording_days`` after the window's end. The window is observed only when
that horizon is on or before the extract date; other index offences are excluded and counted.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from training.features import expand, person_date_key, person_ranges
from training.offences import LABEL_EVENT_TYPES

# Enough rounds for the custody-extended window to settle (each round adds custody days
# that started inside the previous extension).
_WINDOW_ROUNDS = 8


def custody_spells(person_events: pd.DataFrame, open_end: pd.Timestamp) -> pd.DataFrame:
    """Custody spells ``person_id, start, end`` from custody_start / custody_end events.

    Each start is closed by the person's next custody end, or earlier by the next sign of
    liberty (a new custody start, incident or order violation: a missing release record must
    not stop the clock forever); a start with neither stays open until ``open_end``.
    Overlapping spells are merged.
    """
    dated = person_events[["person_id", "offense_date", "event_type"]]
    starts = dated.loc[dated["event_type"] == "custody_start", ["person_id", "offense_date"]]
    spells = starts.rename(columns={"offense_date": "start"}).sort_values("start")
    for name, kinds in (
        ("end", ["custody_end"]),
        ("free", ["custody_start", "incident", "order_violation"]),
    ):
        later = dated.loc[dated["event_type"].isin(kinds), ["person_id", "offense_date"]]
        spells = pd.merge_asof(
            spells,
            later.rename(columns={"offense_date": name}).sort_values(name),
            left_on="start",
            right_on=name,
            by="person_id",
            direction="forward",
            allow_exact_matches=name == "end",
        )
    spells["end"] = spells[["end", "free"]].min(axis=1).fillna(open_end)
    return _union(spells[["person_id", "start", "end"]])


def _union(spells: pd.DataFrame) -> pd.DataFrame:
    """Merge each person's overlapping spells, so no custody day is counted twice."""
    spells = spells.sort_values(["person_id", "start"], kind="stable").reset_index(drop=True)
    if spells.empty:
        return spells
    reach = spells.groupby("person_id", sort=False)["end"].cummax()
    previous = reach.groupby(spells["person_id"], sort=False).shift()
    new = previous.isna() | (spells["start"] > previous)
    group = new.cumsum()
    merged = spells.groupby(group, sort=False).agg(
        person_id=("person_id", "first"), start=("start", "min"), end=("end", "max")
    )
    return merged.reset_index(drop=True)


def _custody_overlap(
    index: pd.DataFrame, spells: pd.DataFrame, window_end: np.ndarray
) -> np.ndarray:
    """Days of custody between each row's ``as_of`` and ``window_end``."""
    if spells.empty:
        return np.zeros(len(index))
    spells = spells.rename(columns={"start": "offense_date"}).sort_values(
        ["person_id", "offense_date"], kind="stable"
    )
    key, persons = person_date_key(spells)
    everything = np.full(len(index), np.datetime64("1800-01-01", "s"))
    lo, hi = person_ranges(key, persons, index["person_id"], everything, everything + 10**10)
    owner, positions = expand(lo, hi)
    start = spells["offense_date"].to_numpy(dtype="datetime64[ns]")[positions]
    end = spells["end"].to_numpy(dtype="datetime64[ns]")[positions]
    low = np.maximum(start, index["as_of"].to_numpy(dtype="datetime64[ns]")[owner])
    high = np.minimum(end, window_end[owner])
    days = np.clip((high - low) / np.timedelta64(1, "D"), 0, None)
    return np.bincount(owner, weights=days, minlength=len(index))


def label_index(
    index: pd.DataFrame,
    person_events: pd.DataFrame,
    *,
    extract_date: pd.Timestamp,
    followup_days: int = 365,
    recording_days: int = 90,
) -> pd.DataFrame:
    """Label each index offence.

    Parameters
    ----------
    index : DataFrame
        ``person_id``, ``offence_id``, ``as_of`` (from :func:`training.offences.index_offences`).
    person_events : DataFrame
        Person events with ``offence_id``.
    extract_date : Timestamp
        The date the data were extracted; later horizons are not observed.

    Returns
    -------
    DataFrame
        ``index`` plus ``window_end``, ``horizon``, ``observed`` (bool) and ``label`` (0/1).
    """
    spells = custody_spells(person_events, open_end=extract_date + pd.Timedelta(days=36500))
    as_of = index["as_of"].to_numpy()
    window_end = as_of + np.timedelta64(followup_days, "D")
    for _ in range(_WINDOW_ROUNDS):
        extra = _custody_overlap(index, spells, window_end)
        window_end = as_of + ((followup_days + extra) * 86400).astype("timedelta64[s]")
    out = index.copy()
    out["window_end"] = window_end
    out["horizon"] = out["window_end"] + pd.Timedelta(days=recording_days)
    out["observed"] = out["horizon"] <= extract_date
    candidates = person_events[
        person_events["event_type"].isin(LABEL_EVENT_TYPES) & person_events["ipv"]
    ].sort_values(["person_id", "offense_date"], kind="stable")
    key, persons = person_date_key(candidates)
    # New offences dated in (as_of, window_end], recorded by the horizon.
    lo, hi = person_ranges(
        key, persons, out["person_id"], out["as_of"], out["window_end"], right_closed=True
    )
    owner, positions = expand(lo, hi)
    hit = (
        candidates["offence_id"].to_numpy()[positions] != out["offence_id"].to_numpy()[owner]
    ) & (
        candidates["recorded_at"].to_numpy(dtype="datetime64[ns]")[positions]
        <= out["horizon"].to_numpy(dtype="datetime64[ns]")[owner]
    )
    positive = np.zeros(len(out), dtype=np.int64)
    positive[owner[hit]] = 1
    out["label"] = positive
    return out
