"""Person events, offences and index offences.

The registry holds agency events and the people named in them; the crosswalk says which
mentions are one person. This module joins the three into *person events* (one row per linked
offender and event) and groups them into *offences* (docs/ARCHITECTURE.md): the events of one
person sharing a ``case_ref``, or else within a couple of days of each other. Features count
offences, not records, and every IPV offence of a linked person is an *index offence*.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ipvi.arrays import connected_labels, factorize, in_sorted, positions_in, unique_sorted
from ipvi.columns import Columns
from ipvi.errors import IpviError
from ipvi.schema import EVENT_COLUMNS, EVENT_FLAGS, OFFENDER_ROLES

# Event types that are (part of) an act; orders, probation and custody are status events.
OFFENCE_EVENT_TYPES: frozenset[str] = frozenset(
    {"incident", "arrest", "charge", "disposition", "order_violation", "custody_start"}
)
# Event types that can be the new offence of a label (docs/ARCHITECTURE.md, "The label").
LABEL_EVENT_TYPES: frozenset[str] = frozenset({"incident", "charge", "order_violation"})

NO_LINKS = "no linked persons: the crosswalk matches no mention (run `ipvi link`)"

PERSON_EVENT_COLUMNS: tuple[str, ...] = (
    "person_id",
    "record_id",
    "link_probability",
    *EVENT_COLUMNS,
    "victim_person_id",
)


def _require(frame: Columns, columns: tuple[str, ...] | list[str], name: str) -> None:
    present = set(frame.columns)
    missing = [column for column in columns if column not in present]
    if missing:
        raise IpviError(f"{name} lacks column(s): {', '.join(missing)}")


def unique_ids(values, name: str) -> np.ndarray:
    """``values`` as an object array of ids; a repeated id is an error naming the column."""
    ids = np.asarray(values, dtype=object)
    if len(set(ids.tolist())) < len(ids):
        raise IpviError(f"{name} repeats an id: {name} must be unique")
    return ids


def lookup(values: np.ndarray, positions: np.ndarray, missing=None) -> np.ndarray:
    """``values[positions]``, with ``missing`` where a position is -1 (not found)."""
    values = np.asarray(values)
    found = positions >= 0
    out = np.full(len(positions), missing, dtype=values.dtype if found.all() else object)
    if found.any():
        out[found] = values[positions[found]]
    return out


def as_datetime(values) -> np.ndarray:
    """A column as ``datetime64[ns]`` (parsed only when it is not one already)."""
    if values.dtype.kind != "M":
        values = pd.to_datetime(values)
    return np.asarray(values, dtype="datetime64[ns]")


def _flag(values: np.ndarray) -> np.ndarray:
    """A nullable flag column as booleans, missing as False; anything but a boolean (or 0/1)
    is an error naming the value's type."""
    present = pd.notna(values)
    kept = values[present]
    if not ((kept == True) | (kept == False)).all():  # noqa: E712 (elementwise, not identity)
        raise IpviError("an event flag holds a value that is not true or false")
    out = np.zeros(len(values), dtype=bool)
    out[present] = kept.astype(bool)
    return out


def person_events(events: Columns, mentions: Columns, crosswalk: Columns) -> Columns:
    """Join events, offender mentions and the crosswalk into one row per person and event.

    Parameters
    ----------
    events, mentions : Columns
        Canonical events and mentions (:mod:`ipvi.schema`).
    crosswalk : Columns
        ``record_id``, ``person_id``, ``link_probability``.

    Returns
    -------
    Columns
        :data:`PERSON_EVENT_COLUMNS`, one row per (offender person, event), sorted by person,
        date, time recorded and event id; ``victim_person_id`` is the linked victim of the
        event, if any. A person named twice on one event keeps the mention with the highest
        link probability.
    """
    _require(events, EVENT_COLUMNS, "events")
    _require(mentions, ("record_id", "event_id", "role"), "mentions")
    _require(crosswalk, ("record_id", "person_id", "link_probability"), "crosswalk")
    mention_records = np.asarray(mentions["record_id"], dtype=object)
    try:
        records = unique_ids(crosswalk["record_id"], "crosswalk.record_id")
    except IpviError:
        if set(mention_records.tolist()).isdisjoint(np.asarray(crosswalk["record_id"]).tolist()):
            raise IpviError(NO_LINKS) from None  # the more useful of the two errors
        raise
    event_ids = unique_ids(events["event_id"], "events.event_id")
    at = positions_in(mention_records, records)
    linked = at >= 0
    if not linked.any():
        raise IpviError(NO_LINKS)
    at = at[linked]
    person = np.asarray(crosswalk["person_id"], dtype=object)[at]
    probability = np.asarray(crosswalk["link_probability"], dtype=float)[at]
    record = np.asarray(mentions["record_id"], dtype=object)[linked]
    event_row = positions_in(np.asarray(mentions["event_id"], dtype=object)[linked], event_ids)
    role = np.asarray(mentions["role"], dtype=object)[linked]

    # Each event's victim, by event row: named by a victim mention of the event or else by
    # the event's victim_record_id (the first one named wins).
    victim_at = positions_in(events["victim_record_id"], records)
    named = np.flatnonzero(victim_at >= 0)
    is_victim = (role == "victim") & (event_row >= 0)
    victim_row = np.concatenate([event_row[is_victim], named])
    victim_person = np.concatenate(
        [person[is_victim], np.asarray(crosswalk["person_id"], dtype=object)[victim_at[named]]]
    )
    first = np.unique(victim_row, return_index=True)[1]
    victim_of_event = np.full(len(event_ids), None, dtype=object)
    victim_of_event[victim_row[first]] = victim_person[first]

    offender = np.flatnonzero(np.isin(role, list(OFFENDER_ROLES)) & (event_row >= 0))
    offender = offender[np.argsort(-probability[offender], kind="stable")]
    person_code = pd.factorize(person)[0].astype(np.int64)
    pair = person_code[offender] * (len(event_ids) + 1) + event_row[offender]
    keep = offender[np.unique(pair, return_index=True)[1]]
    row = event_row[keep]

    offense = as_datetime(events["offense_date"])[row]
    recorded = as_datetime(events["recorded_at"])[row]
    order = np.lexsort(
        (
            factorize(event_ids, sort=True)[0][row],
            recorded,
            offense,
            factorize(person[keep], sort=True)[0],
        )
    )
    keep, row = keep[order], row[order]
    columns: dict[str, np.ndarray] = {
        "person_id": person[keep],
        "record_id": record[keep],
        "link_probability": probability[keep],
    }
    for name in EVENT_COLUMNS:
        columns[name] = np.asarray(events[name])[row]
    columns["offense_date"] = offense[order]
    columns["recorded_at"] = recorded[order]
    for flag in EVENT_FLAGS:
        if columns[flag].dtype != bool:  # nullable flags: missing means not recorded
            columns[flag] = _flag(columns[flag])
    victim = victim_of_event[row]
    # A person is never their own victim (a data error or a dual arrest recorded oddly).
    victim[victim == columns["person_id"]] = None
    columns["victim_person_id"] = victim
    return Columns({name: columns[name] for name in PERSON_EVENT_COLUMNS})


def assign_offences(person_events: Columns, window_days: int = 2) -> Columns:
    """Add ``offence_id``: events of one person sharing a case_ref or within ``window_days``.

    Status events (orders, probation, custody end, notifications) belong to no offence and get
    ``offence_id = -1``. Offence ids are integers, stable for the same input.
    """
    frame = person_events
    is_act = np.isin(frame["event_type"], list(OFFENCE_EVENT_TYPES))
    acts = np.flatnonzero(is_act)
    person = factorize(np.asarray(frame["person_id"], dtype=object), sort=True)[0][acts]
    date = as_datetime(frame["offense_date"])[acts]
    order = np.lexsort((date, person))
    # Chain: consecutive acts of one person within the window.
    same_person = person[order][1:] == person[order][:-1]
    gap = np.diff(date[order]).astype("timedelta64[s]")  # whole seconds, as dates are compared
    close = same_person & (gap <= np.timedelta64(window_days, "D"))
    sources = [order[:-1][close]]
    targets = [order[1:][close]]
    # Shared case_ref: link every act to the first act of its (person, case_ref) group.
    ref = np.asarray(frame["case_ref"], dtype=object)[acts]
    with_ref = np.flatnonzero(pd.notna(ref) & (ref.astype(str) != ""))
    ref_code = pd.factorize(ref[with_ref])[0].astype(np.int64)
    group = person[with_ref].astype(np.int64) * (ref_code.max(initial=0) + 1) + ref_code
    _, first, inverse = np.unique(group, return_index=True, return_inverse=True)
    sources.append(with_ref)
    targets.append(with_ref[first[inverse]])
    # Components numbered in order of their first act, as scipy's csgraph numbers them.
    component = np.unique(
        connected_labels(len(acts), np.concatenate(sources), np.concatenate(targets)),
        return_inverse=True,
    )[1]
    offence = np.full(len(frame), -1, dtype=np.int64)
    offence[acts] = component
    return frame.assign(offence_id=offence)


def index_offences(
    person_events: Columns, lag_days: int, *, latest_known_at: pd.Timestamp | None = None
) -> Columns:
    """Every IPV offence of a person, with its index event, date and decision date ``as_of``.

    The index event is the offence's earliest event (then the first recorded, then the lowest
    event id); ``index_date`` its offence date; ``as_of`` = the day of the index date +
    ``lag_days``. Sorted by index date and index event id.

    With ``latest_known_at``, only each person's latest IPV offence with an event known at that
    date (dated before it and recorded by it), with ``as_of = latest_known_at``, sorted by
    person: the index of a score on a date.
    """
    offence = np.asarray(person_events["offence_id"])
    ipv = np.asarray(person_events["ipv"], dtype=bool)
    date = np.asarray(person_events["offense_date"], dtype="datetime64[ns]")
    recorded = np.asarray(person_events["recorded_at"], dtype="datetime64[ns]")
    wanted = unique_sorted(offence[ipv & (offence >= 0)])
    if latest_known_at is not None:
        known_at = pd.Timestamp(latest_known_at).as_unit("ns").to_datetime64()
        known = (offence >= 0) & (date < known_at) & (recorded <= known_at)
        wanted = wanted[in_sorted(wanted, unique_sorted(offence[known]))]
    candidate = np.flatnonzero(in_sorted(offence, wanted))
    event = np.asarray(person_events["event_id"], dtype=object)[candidate]
    person = np.asarray(person_events["person_id"], dtype=object)[candidate]
    date, recorded = date[candidate], recorded[candidate]
    event_code = factorize(event, sort=True)[0]
    order = np.lexsort((event_code, recorded, date))
    first = order[np.sort(np.unique(offence[candidate][order], return_index=True)[1])]
    first = first[np.lexsort((event_code[first], date[first]))]
    if latest_known_at is None:
        # The decision date counts whole days from the day of the offence, as the label says.
        as_of = date[first].astype("datetime64[D]") + np.timedelta64(lag_days, "D")
    else:
        # Sorted by index date, so each person's last offence is the latest.
        code = factorize(person[first], sort=True)[0][::-1]
        first = first[len(code) - 1 - np.unique(code, return_index=True)[1]]
        as_of = np.full(len(first), known_at, dtype="datetime64[ns]")
    return Columns(
        {
            "index_event_id": event[first],
            "person_id": person[first],
            "offence_id": offence[candidate[first]],
            "index_date": date[first],
            "as_of": as_of.astype("datetime64[ns]"),
        },
    )
