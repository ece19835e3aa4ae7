"""Person events, offences and index offences.

The registry holds agency events and the people named in them; the crosswalk says which
mentions are one person. This module joins the three into *person events* (one row per linked
offender and event) and groups them into *offences* (../shared/DESIGN.md): the events of one
person sharing a ``case_ref``, or else within a couple of days of each other. Features count
offences, not records, and every IPV offence of a linked person is an *index offence*.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from ipvi.errors import IpviError
from ipvi.schema import EVENT_COLUMNS, EVENT_FLAGS, OFFENDER_ROLES

# Event types that are (part of) an act; orders, probation and custody are status events.
OFFENCE_EVENT_TYPES: frozenset[str] = frozenset(
    {"incident", "arrest", "charge", "disposition", "order_violation", "custody_start"}
)
# Event types that can be the new offence of a label (../shared/DESIGN.md, "The label").
LABEL_EVENT_TYPES: frozenset[str] = frozenset({"incident", "charge", "order_violation"})

PERSON_EVENT_COLUMNS: tuple[str, ...] = (
    "person_id",
    "record_id",
    "link_probability",
    *EVENT_COLUMNS,
    "victim_person_id",
)


def _require(frame: pd.DataFrame, columns: tuple[str, ...] | list[str], name: str) -> None:
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        raise IpviError(f"{name} lacks column(s): {', '.join(missing)}")


def person_events(
    events: pd.DataFrame, mentions: pd.DataFrame, crosswalk: pd.DataFrame
) -> pd.DataFrame:
    """Join events, offender mentions and the crosswalk into one row per person and event.

    Parameters
    ----------
    events, mentions : DataFrame
        Canonical events and mentions (:mod:`ipvi.schema`).
    crosswalk : DataFrame
        ``record_id``, ``person_id``, ``link_probability``.

    Returns
    -------
    DataFrame
        :data:`PERSON_EVENT_COLUMNS`, one row per (offender person, event), sorted by person
        and date; ``victim_person_id`` is the linked victim of the event, if any.
    """
    _require(events, EVENT_COLUMNS, "events")
    _require(mentions, ("record_id", "event_id", "role"), "mentions")
    _require(crosswalk, ("record_id", "person_id", "link_probability"), "crosswalk")
    links = crosswalk[["record_id", "person_id", "link_probability"]]
    linked = mentions[["record_id", "event_id", "role"]].merge(links, on="record_id", how="inner")
    if linked.empty:
        raise IpviError("no linked persons: the crosswalk matches no mention (run `ipvi link`)")
    offenders = linked[linked["role"].isin(OFFENDER_ROLES)]
    # A victim is named by a victim mention of the event or by the event's victim_record_id.
    victims = pd.concat(
        [
            linked.loc[linked["role"] == "victim", ["event_id", "person_id"]],
            events[["event_id", "victim_record_id"]]
            .dropna()
            .merge(links, left_on="victim_record_id", right_on="record_id")[
                ["event_id", "person_id"]
            ],
        ]
    ).drop_duplicates("event_id")
    victims = victims.rename(columns={"person_id": "victim_person_id"})
    frame = (
        offenders.sort_values("link_probability", ascending=False, kind="stable")
        .drop_duplicates(["person_id", "event_id"])
        .drop(columns="role")
        .merge(events, on="event_id", how="inner")
        .merge(victims, on="event_id", how="left")
    )
    # A person is never their own victim (a data error or a dual arrest recorded oddly).
    frame.loc[frame["victim_person_id"] == frame["person_id"], "victim_person_id"] = None
    frame["offense_date"] = pd.to_datetime(frame["offense_date"])
    frame["recorded_at"] = pd.to_datetime(frame["recorded_at"])
    for flag in EVENT_FLAGS:
        frame[flag] = frame[flag].astype("boolean").fillna(False).astype(bool)
    frame = frame.sort_values(["person_id", "offense_date", "recorded_at", "event_id"])
    return frame[list(PERSON_EVENT_COLUMNS)].reset_index(drop=True)


def assign_offences(person_events: pd.DataFrame, window_days: int = 2) -> pd.DataFrame:
    """Add ``offence_id``: events of one person sharing a case_ref or within ``window_days``.

    Status events (orders, probation, custody end, notifications) belong to no offence and get
    ``offence_id = -1``. Offence ids are integers, stable for the same input.
    """
    frame = person_events.reset_index(drop=True)
    is_act = frame["event_type"].isin(OFFENCE_EVENT_TYPES).to_numpy()
    acts = frame.loc[is_act, ["person_id", "case_ref", "offense_date"]].copy()
    acts["row"] = np.arange(len(acts))
    acts = acts.sort_values(["person_id", "offense_date"], kind="stable")
    rows = acts["row"].to_numpy()
    # Chain: consecutive acts of one person within the window.
    same_person = acts["person_id"].to_numpy()[1:] == acts["person_id"].to_numpy()[:-1]
    gap = np.diff(acts["offense_date"].to_numpy()).astype("timedelta64[s]").astype(np.int64)
    close = same_person & (gap <= window_days * 86400)
    sources = [rows[:-1][close]]
    targets = [rows[1:][close]]
    # Shared case_ref: link every act to the first act of its (person, case_ref) group.
    with_ref = acts[acts["case_ref"].notna() & (acts["case_ref"].astype(str).str.len() > 0)]
    first = with_ref.groupby(["person_id", "case_ref"], sort=False)["row"].transform("first")
    sources.append(with_ref["row"].to_numpy())
    targets.append(first.to_numpy())
    source = np.concatenate(sources)
    target = np.concatenate(targets)
    n = len(acts)
    graph = coo_matrix((np.ones(len(source)), (source, target)), shape=(n, n))
    _, component = connected_components(graph, directed=False)
    offence = np.full(len(frame), -1, dtype=np.int64)
    offence[np.flatnonzero(is_act)] = component
    frame["offence_id"] = offence
    return frame


def index_offences(person_events: pd.DataFrame, lag_days: int) -> pd.DataFrame:
    """Every IPV offence of a person, with its index event, date and decision date ``as_of``.

    The index event is the offence's earliest event; ``index_date`` its earliest offence date;
    ``as_of`` = the day of the index date + ``lag_days``.
    """
    acts = person_events[person_events["offence_id"] >= 0]
    ipv_offences = acts.loc[acts["ipv"], "offence_id"].unique()
    first = (
        acts[acts["offence_id"].isin(ipv_offences)]
        .sort_values(["offense_date", "recorded_at", "event_id"], kind="stable")
        .drop_duplicates("offence_id")
    )
    index = pd.DataFrame(
        {
            "index_event_id": first["event_id"].to_numpy(),
            "person_id": first["person_id"].to_numpy(),
            "offence_id": first["offence_id"].to_numpy(),
            "index_date": first["offense_date"].to_numpy(),
        }
    )
    # The decision date counts whole days from the day of the offence, as the label says.
    index["as_of"] = index["index_date"].dt.normalize() + pd.Timedelta(days=lag_days)
    return index.sort_values(["index_date", "index_event_id"], kind="stable").reset_index(drop=True)
