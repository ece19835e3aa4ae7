"""Reading the training inputs: registry tables, and (evaluation only) the generator's truth.

Training reads ``events``, ``mentions`` and ``crosswalk`` from the registry database. It reads
only the mention columns it needs (never names or addresses). The truth folder is opened only
through an explicit ``--truth DIR`` option, for evaluation.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import pandas as pd
from sqlalchemy import (
    Boolean,
    Date,
    DateTime,
    Float,
    Integer,
    String,
    Table,
    bindparam,
    select,
    type_coerce,
)

from ipvi.columns import Columns
from ipvi.errors import IpviError
from ipvi.schema import EVENT_COLUMNS
from ipvi.tables.ingest import events as events_t
from ipvi.tables.ingest import mentions as mentions_t
from ipvi.tables.linkage import crosswalk as crosswalk_t

# The mention columns scoring reads: roles and links, date of birth and sex for age.
SCORING_MENTIONS: tuple[str, ...] = ("record_id", "dob", "sex", "event_id", "role")
# Training reads the agency person ids too, for the no-linkage baseline.
MENTION_READ: tuple[str, ...] = (*SCORING_MENTIONS, "agency", "agency_person_id")
# Offences and their labels read roles and links only (training.offences.person_events).
OFFENCE_MENTIONS: tuple[str, ...] = ("record_id", "event_id", "role")
CROSSWALK_READ: tuple[str, ...] = ("record_id", "person_id", "link_probability", "linkage_run_id")
NOT_LINKED = "no linked persons: the crosswalk is empty (run `ipvi link` first)"


def _read(connection, table: Table, columns: tuple[str, ...]) -> Columns:
    """Whole columns of ``table``, through the driver's own cursor: SQLAlchemy's result rows
    and their per-value conversions took most of the time of reading a 1M-mention registry."""
    declared = [table.c[c] for c in columns]
    query = select(*[_raw(c) for c in declared]).compile(dialect=connection.dialect)
    cursor = connection.connection.driver_connection.cursor()
    try:
        cursor.execute(str(query))
        rows = cursor.fetchall()
    finally:
        cursor.close()
    return _columns(rows, declared)


def _raw(column):
    """``column`` selected as the driver returns it, converted by :func:`_columns` a column at
    a time: SQLAlchemy's conversion of each value (SQLite keeps dates as text and flags as
    integers) took longer than the rest of reading a million-mention registry."""
    if isinstance(column.type, Date | DateTime):
        return type_coerce(column, String).label(column.name)
    if isinstance(column.type, Boolean):
        return type_coerce(column, Integer).label(column.name)
    return column


def load_history(engine) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """``events``, ``mentions`` and ``crosswalk`` of the whole registry, as DataFrames.

    The tables are the declared ones (every command migrates the registry first), read in one
    connection.
    """
    events, mentions, crosswalk = read_history(engine)
    return events.to_frame(), mentions.to_frame(), crosswalk.to_frame()


def read_history(
    engine, mention_columns: tuple[str, ...] = MENTION_READ
) -> tuple[Columns, Columns, Columns]:
    """The whole registry's ``events``, ``mentions`` (``mention_columns``) and ``crosswalk``
    as :class:`Columns`, read in one connection: ``ipvi score --all`` scores them as they
    are, without the DataFrames that cost seconds to build at a million mentions."""
    with engine.connect() as connection:
        crosswalk = _read(connection, crosswalk_t, CROSSWALK_READ)
        mentions = _read(connection, mentions_t, mention_columns)
        events = _read(connection, events_t, EVENT_COLUMNS)
    if not len(crosswalk):
        raise IpviError(NOT_LINKED)
    return events, mentions, crosswalk


@functools.cache
def _history_queries(mention_read: tuple[str, ...]) -> tuple:
    """The two queries of :func:`person_history`, built once: building a statement and its
    cache key cost more than running it on SQLite. ``person_ids`` is an expanding parameter."""
    their_events = (
        select(mentions_t.c.event_id)
        .join(crosswalk_t, crosswalk_t.c.record_id == mentions_t.c.record_id)
        .where(crosswalk_t.c.person_id.in_(bindparam("person_ids", expanding=True)))
    )
    links = [crosswalk_t.c[c] for c in CROSSWALK_READ if c != "record_id"]
    mention_columns = [*[mentions_t.c[c] for c in mention_read], *links]
    linked = (
        select(*[_raw(column) for column in mention_columns])
        .select_from(
            mentions_t.outerjoin(crosswalk_t, crosswalk_t.c.record_id == mentions_t.c.record_id)
        )
        .where(mentions_t.c.event_id.in_(their_events))
    )
    event_columns = [events_t.c[c] for c in EVENT_COLUMNS]
    events = select(*[_raw(column) for column in event_columns]).where(
        events_t.c.event_id.in_(their_events)
    )
    return (linked, mention_columns), (events, event_columns)


# The most person ids bound in one query (PostgreSQL takes at most 65,535 parameters a
# statement); more persons than this are found in the whole tables instead.
MAX_BOUND_PERSONS = 10_000


def person_history(
    connection, person_ids: list[str], mention_columns: tuple[str, ...] = MENTION_READ
) -> tuple[Columns, Columns, Columns]:
    """``events``, ``mentions`` (``mention_columns``) and ``crosswalk`` of named persons, as
    :class:`Columns`.

    Their mentions' events, every mention of those events (victims and partners included, for
    dual arrests) and the crosswalk rows of those mentions; dates as ``datetime64``. Up to
    :data:`MAX_BOUND_PERSONS` persons (the service's request), two queries of a few index
    lookups each on an open ``connection``, and no DataFrame; more (the monitor's every
    scored person), the three tables read whole and filtered: a query's index lookups cost
    more than reading a table once when they reach most of it.
    """
    person_ids = list(person_ids)
    if len(person_ids) > MAX_BOUND_PERSONS:
        return _history_of_many(connection, person_ids, mention_columns)
    (linked, both_columns), (events, event_columns) = _history_queries(tuple(mention_columns))
    wanted = {"person_ids": person_ids}
    # Plain tuples: numpy probes a SQLAlchemy row for array interfaces, each probe a raised
    # and caught error inside SQLAlchemy (a millisecond a request).
    linked_rows = [tuple(row) for row in connection.execute(linked, wanted)]
    event_rows = [tuple(row) for row in connection.execute(events, wanted)]
    both = _columns(linked_rows, both_columns)
    mentions = Columns({name: both[name] for name in mention_columns})
    linked = pd.notna(both["person_id"])
    crosswalk = Columns({name: both[name][linked] for name in CROSSWALK_READ})
    if not len(crosswalk):
        raise IpviError(NOT_LINKED)
    return _columns(event_rows, event_columns), mentions, crosswalk


def _history_of_many(
    connection, person_ids: list[str], mention_columns: tuple[str, ...]
) -> tuple[Columns, Columns, Columns]:
    """:func:`person_history` of many persons, from the whole tables (no bound ids)."""
    crosswalk = _read(connection, crosswalk_t, CROSSWALK_READ)
    mentions = _read(connection, mentions_t, mention_columns)
    events = _read(connection, events_t, EVENT_COLUMNS)
    link = pd.Index(crosswalk["record_id"]).get_indexer(mentions["record_id"])
    person = np.where(link >= 0, crosswalk["person_id"][link], None)
    theirs = mentions["event_id"][pd.Series(person).isin(person_ids).to_numpy()]
    keep = pd.Series(mentions["event_id"]).isin(theirs).to_numpy()
    crosswalk = crosswalk.take(link[keep & (link >= 0)])
    if not len(crosswalk):
        raise IpviError(NOT_LINKED)
    return (
        events.take(pd.Series(events["event_id"]).isin(theirs).to_numpy()),
        mentions.take(keep),
        crosswalk,
    )


def _columns(rows: list, columns: list) -> Columns:
    """Result rows (selected with :func:`_raw`) as :class:`Columns` named after ``columns``:
    dates as ``datetime64[ns]``, flags as ``bool`` (objects ``True``, ``False`` and ``None``
    when one is missing), floats as ``float`` (``None`` as NaN), the rest as objects."""
    grid = np.array(rows, dtype=object).reshape(len(rows), len(columns))
    out = {}
    for position, column in enumerate(columns):
        items = grid[:, position]
        if isinstance(column.type, Date | DateTime):
            out[column.name] = items.astype("datetime64[ns]")  # ISO text or datetimes
        elif isinstance(column.type, Boolean):
            out[column.name] = _flags(items)
        elif isinstance(column.type, Float):
            out[column.name] = np.array(items.tolist(), dtype=float)  # None as NaN
        else:
            out[column.name] = items.copy()
    return Columns(out)


def _flags(items: np.ndarray) -> np.ndarray:
    """Flags read as integers or booleans, as ``bool``; with a missing one, as objects."""
    present = items != None  # noqa: E711 (elementwise)
    if present.all():
        return items.astype(bool)
    flags = items.copy()
    flags[present] = items[present].astype(bool).tolist()
    return flags


def no_linkage_crosswalk(mentions: pd.DataFrame) -> pd.DataFrame:
    """Each agency's records as separate people: one person per agency person id (or record).

    The baseline that shows what linkage is worth (``auc_no_linkage``).
    """
    agency_id = mentions["agency_person_id"].astype("string")
    person = np.where(
        agency_id.notna() & (agency_id.str.len() > 0),
        mentions["agency"].astype(str) + ":" + agency_id.fillna(""),
        "rec:" + mentions["record_id"].astype(str),
    )
    return pd.DataFrame(
        {
            "record_id": mentions["record_id"].to_numpy(),
            "person_id": person,
            "link_probability": 1.0,
            "linkage_run_id": "no-linkage",
        }
    )


def _find(folder: Path, required: set[str], preferred: str) -> pd.DataFrame:
    candidates = sorted(folder.glob("*.csv")) + sorted(folder.glob("*.parquet"))
    candidates.sort(key=lambda path: path.name != preferred)
    for path in candidates:
        frame = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path, dtype=str)
        if required <= set(frame.columns):
            return frame
    raise IpviError(f"truth folder {folder} has no file with columns {', '.join(sorted(required))}")


def _event_list(value) -> list[str]:
    if isinstance(value, list):
        return [str(v) for v in value]
    text = str(value).strip()
    if text.startswith("["):
        return [str(v) for v in json.loads(text)]
    for separator in ("|", ";", ","):
        if separator in text:
            return [part.strip() for part in text.split(separator) if part.strip()]
    return [text] if text else []


def load_truth(folder: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The truth crosswalk (``record_id``, ``person_id``) and index offences (exploded).

    Returns
    -------
    crosswalk : DataFrame
        ``record_id``, ``person_id``, ``link_probability`` (1), ``linkage_run_id`` ("truth").
    offences : DataFrame
        One row per (truth index offence, event id): ``truth_row``, ``true_person_id``,
        ``event_id``, ``p_recorded``, ``true_reoffense``.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise IpviError(f"truth folder not found: {folder}")
    links = _find(folder, {"record_id", "person_id"}, "records.csv")
    crosswalk = links[["record_id", "person_id"]].assign(
        link_probability=1.0, linkage_run_id="truth"
    )
    offences = _find(
        folder, {"event_ids", "person_id", "p_recorded", "true_reoffense"}, "index_offences.csv"
    )
    exploded = pd.DataFrame(
        {
            "truth_row": np.arange(len(offences)),
            "true_person_id": offences["person_id"].to_numpy(),
            "event_id": [_event_list(v) for v in offences["event_ids"]],
            "p_recorded": offences["p_recorded"].astype(float).to_numpy(),
            "true_reoffense": offences["true_reoffense"]
            .astype(str)
            .str.lower()
            .isin(["true", "1", "1.0"])
            .astype(int)
            .to_numpy(),
        }
    ).explode("event_id")
    return crosswalk, exploded
