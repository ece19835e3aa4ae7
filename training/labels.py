"""The label of docs/ARCHITECTURE.md, one definition for training and the generator's target.

For an index IPV offence with decision date T (index date + decision lag): positive when an
incident, charge or order violation with ``ipv = true``, not part of the index offence, has its
``offense_date`` in the ``followup_days`` at liberty after T (custody days extend the window)
and was recorded by ``recording_days`` after the window's end. The window is observed only when
that horizon is on or before the extract date; other index offences are excluded and counted.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ipvi.arrays import run_starts
from training.features import PersonDates, expand
from training.offences import LABEL_EVENT_TYPES

# The person-event columns the label reads (custody spells, then new offences).
LABEL_COLUMNS = ("person_id", "offence_id", "event_type", "ipv", "offense_date", "recorded_at")
# Enough rounds for the custody-extended window to settle (each round adds custody days
# that started inside the previous extension).
_WINDOW_ROUNDS = 8


def custody_spells(person_events: pd.DataFrame, open_end: pd.Timestamp) -> pd.DataFrame:
    """Custody spells ``person_id, start, end`` from custody_start / custody_end events.

    Bookings nest and overlap (a sentence starts while the arrest custody lasts, a probation
    violation jails someone already held), so custody is counted, not paired: each start adds
    one, each end removes one (an end with nothing open is ignored), and a person is in custody
    while the count is above zero. A sign of liberty (an incident or an order violation: an
    offence committed outside) closes everything open, so a missing release record does not
    stop the clock forever; custody still open at the person's last record stays open until
    ``open_end``. The spells returned do not overlap.
    """
    dated = person_events[["person_id", "offense_date", "event_type"]]
    step = {"custody_start": 1, "custody_end": -1, "incident": 0, "order_violation": 0}
    rows = dated[dated["event_type"].isin(list(step))]
    rows = pd.DataFrame(
        {
            "person_id": rows["person_id"].to_numpy(),
            "time": rows["offense_date"].to_numpy(dtype="datetime64[ns]"),
            "step": rows["event_type"].map(step).to_numpy(dtype=np.int64),
            # At one instant: liberty first, then releases, then bookings.
            "rank": rows["event_type"].map({**step, "custody_end": 1, "custody_start": 2}),
        }
    ).sort_values(["person_id", "time", "rank"], kind="stable")
    person = rows["person_id"].to_numpy()
    time = rows["time"].to_numpy()
    steps = rows["step"].to_numpy()
    liberty = steps == 0
    segment = np.cumsum(run_starts(person) | liberty)
    # The count floored at zero: cumulative steps minus their running minimum (when negative).
    total = pd.Series(steps).groupby(segment).cumsum().to_numpy()
    count = total - np.minimum(pd.Series(total).groupby(segment).cummin().to_numpy(), 0)
    before = np.zeros_like(count)
    before[1:] = count[:-1]
    before[run_starts(segment)] = 0
    opening = (steps == 1) & (before == 0)
    closing = (steps == -1) & (count == 0) & (before > 0)
    opens = pd.DataFrame(
        {"segment": segment[opening], "person_id": person[opening], "start": time[opening]}
    )
    closes = pd.DataFrame({"segment": segment[closing], "end": time[closing]})
    # Opens and closes alternate within a segment: each open's close is the next one.
    spells = pd.merge_asof(
        opens.sort_values("start", kind="stable"),
        closes.sort_values("end", kind="stable"),
        left_on="start",
        right_on="end",
        by="segment",
        direction="forward",
        allow_exact_matches=False,  # a close at the open's instant closed an earlier spell
    )
    # Still open at the segment's end: closed by the next sign of liberty, if any.
    freed = pd.DataFrame({"person_id": person[liberty], "free": time[liberty]})
    spells = pd.merge_asof(
        spells,
        freed.sort_values("free", kind="stable"),
        left_on="start",
        right_on="free",
        by="person_id",
        direction="forward",
        allow_exact_matches=False,
    )
    spells["end"] = spells["end"].fillna(spells["free"]).fillna(open_end)
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


def _spells_of(
    index: pd.DataFrame, spells: pd.DataFrame
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each row's custody spells from its ``as_of`` on: (row, start, end) per pair of an
    ``index`` row and a spell of its person, the start no earlier than the row's as-of date."""
    if spells.empty:
        empty = np.array([], dtype="datetime64[ns]")
        return np.array([], dtype=np.intp), empty, empty
    spells = spells.sort_values(["person_id", "start"], kind="stable")
    lo, hi = PersonDates.of(spells["person_id"], spells["start"]).ranges(index["person_id"])
    owner, positions = expand(lo, hi)
    start = spells["start"].to_numpy(dtype="datetime64[ns]")[positions]
    end = spells["end"].to_numpy(dtype="datetime64[ns]")[positions]
    as_of = index["as_of"].to_numpy(dtype="datetime64[ns]")[owner]
    return owner, np.maximum(start, as_of), end


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
    owner, start, end = _spells_of(index, spells)
    for _ in range(_WINDOW_ROUNDS):
        # Days of custody between each row's as-of date and its window's current end.
        days = (np.minimum(end, window_end[owner]) - start) / np.timedelta64(1, "D")
        extra = np.bincount(owner, weights=np.clip(days, 0, None), minlength=len(index))
        window_end = as_of + ((followup_days + extra) * 86400).astype("timedelta64[s]")
    out = index.copy()
    out["window_end"] = window_end
    out["horizon"] = out["window_end"] + pd.Timedelta(days=recording_days)
    out["observed"] = out["horizon"] <= extract_date
    owner, _, _ = _new_offences(out, person_events)
    positive = np.zeros(len(out), dtype=np.int64)
    positive[owner] = 1
    out["label"] = positive
    return out


def _new_offences(
    labelled: pd.DataFrame, person_events: pd.DataFrame
) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """The new offences that make a label positive: (row of ``labelled``, position in the
    returned candidate events) pairs, candidates sorted by person and date."""
    candidates = person_events[
        person_events["event_type"].isin(LABEL_EVENT_TYPES) & person_events["ipv"]
    ].sort_values(["person_id", "offense_date"], kind="stable")
    dated = PersonDates.of(candidates["person_id"], candidates["offense_date"])
    # New offences dated in [as_of, window_end), recorded by the horizon: the window starts
    # where the as-of features stop (offense_date < as_of) and runs for whole days, so a
    # date-only record of the day after the window (midnight) is outside it.
    lo, hi = dated.ranges(labelled["person_id"], labelled["as_of"], labelled["window_end"])
    owner, positions = expand(lo, hi)
    hit = (
        candidates["offence_id"].to_numpy()[positions] != labelled["offence_id"].to_numpy()[owner]
    ) & (
        candidates["recorded_at"].to_numpy(dtype="datetime64[ns]")[positions]
        <= labelled["horizon"].to_numpy(dtype="datetime64[ns]")[owner]
    )
    return owner[hit], positions[hit], candidates


def first_reoffence(labelled: pd.DataFrame, person_events: pd.DataFrame) -> pd.Series:
    """The date of the first new offence of each row of :func:`label_index`'s output, by the
    label's own definition (NaT: none recorded by the data at hand). On rows whose window has
    not closed it is the first one recorded so far, for survival curves censored at the
    extract date."""
    owner, positions, candidates = _new_offences(labelled, person_events)
    dates = pd.Series(candidates["offense_date"].to_numpy(dtype="datetime64[ns]")[positions])
    first = dates.groupby(owner).min()
    out = pd.Series(pd.NaT, index=labelled.index, dtype="datetime64[ns]")
    out.iloc[first.index.to_numpy()] = first.to_numpy()
    return out
