"""Issued scores: every score the live system gave, kept with the inputs the model saw.

The service (``source`` = ``api``) and ``ipvi score --all`` (``batch``) turn the table
:meth:`training.scoring.RiskScorer.score_many` returned into ``issued_scores`` rows with
:func:`issued_rows`, the one place that decides what such a row holds. The service spools them
and a background thread stores them (:func:`store_issued`); the batch inserts them in its own
transaction. ``ipvi monitor`` reads them back. Rows are pseudonymous (person ids, event ids,
model inputs); :func:`purge_step` removes a person's rows.
"""

from __future__ import annotations

import hashlib
import math
import uuid
from datetime import datetime

import numpy as np
import pandas as pd
from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session

from ipvi.bulk import bulk_insert
from ipvi.columns import Columns
from ipvi.purge import PurgeTarget
from ipvi.tables.linkage import persons
from ipvi.tables.monitoring import issued_scores

SOURCES = ("api", "batch")
HISTORIES = ("registry", "inline")
# Columns copied as they are from the scored table.
_COPIED = (
    "person_id",
    "index_event_id",
    "model_name",
    "model_version",
    "probability",
    "band",
    "band_use",
    "tier",
    "provisional",
    "lethality_flags",
    "scorecard_points",
    "linkage_run_id",
)


def score_id(person_id: str, as_of: datetime, model_version: str) -> str:
    """An id that is the same whenever (person, as-of date, model version) is."""
    key = f"{person_id}|{as_of.isoformat()}|{model_version}"
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]


def _number(value: float) -> float | None:
    """A model input as JSON holds it: NaN (unknown) as null."""
    return None if math.isnan(value) else value


def feature_values(names: list[str], model_inputs: np.ndarray) -> list[dict[str, float | None]]:
    """One ``{feature: value}`` per row of the model's input matrix (columns in ``names``)."""
    return [dict(zip(names, map(_number, row), strict=True)) for row in model_inputs.tolist()]


def issued_rows(
    scored: Columns,
    *,
    features: list[str],
    source: str,
    history: str,
    issued_at: datetime,
) -> list[dict]:
    """``issued_scores`` rows of a scored table (:meth:`RiskScorer.score_many`).

    Parameters
    ----------
    scored : Columns
        The scores, with ``model_inputs`` (each row's model input vector).
    features : list of str
        The model's inputs in order (the bundle's ``features``).
    source : str
        ``api`` or ``batch``.
    history : str
        ``registry`` when the persons are registry persons, ``inline`` when the caller sent
        their histories (their ids are the caller's).
    issued_at : datetime
        When the scores were answered (naive UTC).
    """
    if source not in SOURCES or history not in HISTORIES:
        raise ValueError(f"source must be one of {SOURCES} and history one of {HISTORIES}")
    n = len(scored)
    if not n:  # nobody had an offence to score (a table without columns)
        return []
    values = Columns({name: scored[name] for name in ("as_of", *_COPIED)}).lists()
    as_of = values["as_of"]
    inputs = np.stack(list(scored["model_inputs"]))
    columns = {
        "issue_id": [uuid.uuid4().hex for _ in range(n)],
        "score_id": list(map(score_id, values["person_id"], as_of, values["model_version"])),
        "history": [history] * n,
        "as_of": as_of,
        **{name: values[name] for name in _COPIED},
        "features": feature_values(features, inputs),
        "source": [source] * n,
        "issued_at": [issued_at] * n,
    }
    names = list(columns)
    return [dict(zip(names, row, strict=True)) for row in zip(*columns.values(), strict=True)]


def _serialisable(row: dict) -> dict:
    """A spooled row back in the table's types (dates travel as ISO text)."""
    return {
        **row,
        "as_of": _date(row["as_of"]),
        "issued_at": _date(row["issued_at"]),
    }


def _date(value) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(value)


def store_issued(session: Session, rows: list[dict]) -> int:
    """Insert spooled rows not stored yet (a spool flushed twice adds each once).

    A registry person purged between issue and flush is not stored: the purge already ran
    and the row would bring the person back.

    Returns
    -------
    int
        Rows added.
    """
    rows = [_serialisable(row) for row in rows]
    if not rows:
        return 0
    present: set[str] = set()
    known: set[str] = set()
    ids = [row["issue_id"] for row in rows]
    registry = sorted({row["person_id"] for row in rows if row["history"] == "registry"})
    for start in range(0, max(len(ids), len(registry)), 500):
        present.update(
            session.scalars(
                select(issued_scores.c.issue_id).where(
                    issued_scores.c.issue_id.in_(ids[start : start + 500])
                )
            )
        )
        known.update(
            session.scalars(
                select(persons.c.person_id).where(
                    persons.c.person_id.in_(registry[start : start + 500])
                )
            )
        )
    fresh = [
        row
        for row in rows
        if row["issue_id"] not in present
        and (row["history"] == "inline" or row["person_id"] in known)
    ]
    if fresh:
        session.execute(insert(issued_scores), fresh)
    return len(fresh)


def write_issued(session: Session, scored: pd.DataFrame, *, features: list[str]) -> int:
    """Insert the rows of a batch (``ipvi score --all``) through the driver; returns how many."""
    rows = issued_rows(
        Columns.from_frame(scored),
        features=features,
        source="batch",
        history="registry",
        issued_at=datetime.now(),
    )
    bulk_insert(session.connection(), issued_scores, pd.DataFrame(rows))
    return len(rows)


def purge_step(session: Session, target: PurgeTarget) -> dict[str, int]:
    """Remove the issued scores of the persons the target touches (the ``ipvi purge`` step).

    An issued score rests on the person's records, like a stored score, so a record purge
    removes the issued scores of the persons those records link to.
    """
    people = list(target.persons)
    if not people:
        return {"issued_scores": 0}
    result = session.execute(delete(issued_scores).where(issued_scores.c.person_id.in_(people)))
    return {"issued_scores": int(result.rowcount or 0)}
