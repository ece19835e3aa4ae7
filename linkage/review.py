"""Clerical review: the queue of uncertain pairs, its export and the import of decisions.

The export shows agreement levels and their weights, never stored values, so no name, date of
birth or address leaves the registry through it; for a pair where either mention has a
confidential address even the address levels are withheld. Cells that a spreadsheet would run
as a formula are escaped (:func:`ipvi.export.write_csv`).

Decision file schema (CSV, UTF-8, header row; other columns are ignored):

=============  ====================================================================
pair_id        an id from the export (must exist in the queue)
decision       ``match``, ``non-match`` or ``unsure``
reviewer       who decided (non-empty)
decided_at     when, ISO 8601 (``2026-11-26T14:30:00``; a time zone is allowed)
=============  ====================================================================

Decisions bind the next linkage run: ``match`` is a must-link, ``non-match`` a cannot-link;
``unsure`` leaves the pair to the model and takes it out of the pending queue.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from ipvi.errors import IpviError
from ipvi.export import write_csv
from ipvi.tables.linkage import REVIEW_QUEUE_ORDER, linkage_runs, review_pairs, review_sample

DECISIONS: frozenset[str] = frozenset({"match", "non-match", "unsure"})
DECISION_COLUMNS: tuple[str, ...] = ("pair_id", "decision", "reviewer", "decided_at")
ADDRESS_FIELDS: frozenset[str] = frozenset({"street", "city", "zip"})
WITHHELD = "withheld: confidential address"


def pair_id(record_a: str, record_b: str) -> str:
    """A stable id for an unordered pair of record ids (the same in every run)."""
    low, high = sorted((str(record_a), str(record_b)))
    return "RP-" + hashlib.sha256(f"{low}\x1f{high}".encode()).hexdigest()[:20]


def current_run(session: Session) -> str | None:
    """The newest succeeded linkage run (the one whose queue and sample are current)."""
    return session.execute(
        select(linkage_runs.c.run_id)
        .where(linkage_runs.c.status == "succeeded")
        .order_by(linkage_runs.c.finished_at.desc())
        .limit(1)
    ).scalar()


def evidence_for(contributions: pd.DataFrame, confidential: pd.Series) -> list[dict]:
    """Per pair: ``{comparison: {"level": label, "weight": log2 factor}}``, addresses withheld
    where ``confidential`` (either side) is true."""
    names = [c[: -len("_level")] for c in contributions.columns if c.endswith("_level")]
    records = []
    levels = {n: contributions[f"{n}_level"].to_numpy() for n in names}
    weights = {n: contributions[f"{n}_weight"].to_numpy() for n in names}
    hidden = confidential.to_numpy(dtype=bool)
    for row in range(len(contributions)):
        evidence = {}
        for name in names:
            if hidden[row] and name in ADDRESS_FIELDS:
                evidence[name] = {"level": WITHHELD, "weight": None}
            else:
                evidence[name] = {"level": levels[name][row], "weight": float(weights[name][row])}
        records.append(evidence)
    return records


def export_pending(
    session: Session, path: str | Path, limit: int | None = None, queue: str = "priority"
) -> int:
    """Write pending pairs of ``queue`` by priority (highest first, none last), then most
    uncertain first (``sample``: the accuracy sample's pairs, see :mod:`linkage.accuracy`)."""
    if queue == "sample":
        query = (
            select(review_pairs)
            .join(review_sample, review_sample.c.pair_id == review_pairs.c.pair_id)
            .where(
                review_pairs.c.status == "pending", review_sample.c.run_id == current_run(session)
            )
            .order_by(review_sample.c.draw)
        )
    else:
        query = (
            select(review_pairs)
            .where(review_pairs.c.status == "pending", review_pairs.c.queue == queue)
            .order_by(*REVIEW_QUEUE_ORDER)
        )
    if limit:
        query = query.limit(limit)
    rows = session.execute(query).mappings().all()
    table = []
    for row in rows:
        record = {
            "pair_id": row["pair_id"],
            "record_id_a": row["record_id_a"],
            "record_id_b": row["record_id_b"],
            "match_probability": round(row["match_probability"], 6),
            "match_weight": round(row["match_weight"], 3),
            "priority": row["priority"],
        }
        for name, item in (row["evidence"] or {}).items():
            weight = item["weight"]
            record[name] = item["level"] if weight is None else f"{item['level']} ({weight:+.1f})"
        record.update(decision="", reviewer="", decided_at="")
        table.append(record)
    columns = ["pair_id", "record_id_a", "record_id_b", "match_probability", "match_weight"]
    frame = pd.DataFrame(
        table, columns=None if table else columns + ["priority", *DECISION_COLUMNS[1:]]
    )
    write_csv(frame, path)
    return len(rows)


def _parse_time(text: str, line: int) -> datetime:
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise IpviError(f"decisions line {line}: decided_at {text!r} is not ISO 8601") from None
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment


def read_decisions(path: str | Path) -> pd.DataFrame:
    """Read and validate a decision file (see the module docstring); all or nothing."""
    from linkage.dedupe import read_table

    frame = read_table(path)
    missing = [c for c in DECISION_COLUMNS if c not in frame.columns]
    if missing:
        raise IpviError(f"decisions file {path}: missing column(s): {', '.join(missing)}")
    frame = frame[list(DECISION_COLUMNS)].fillna("")
    frame = frame.map(lambda v: v[1:] if isinstance(v, str) and v.startswith("'") else v)
    frame = frame[(frame != "").any(axis=1)]  # blank lines of a spreadsheet
    parsed = []
    for offset, row in enumerate(frame.itertuples(index=False), start=2):
        decision = str(row.decision).strip().lower()
        if decision not in DECISIONS:
            raise IpviError(
                f"decisions line {offset}: decision {row.decision!r} is not one of "
                f"{', '.join(sorted(DECISIONS))}"
            )
        if not str(row.reviewer).strip():
            raise IpviError(f"decisions line {offset}: reviewer is empty")
        if not str(row.pair_id).strip():
            raise IpviError(f"decisions line {offset}: pair_id is empty")
        parsed.append(
            {
                "pair_id": str(row.pair_id).strip(),
                "decision": decision,
                "reviewer": str(row.reviewer).strip(),
                "decided_at": _parse_time(str(row.decided_at), offset),
            }
        )
    return pd.DataFrame(parsed, columns=list(DECISION_COLUMNS))


def import_decisions(session: Session, path: str | Path) -> int:
    """Record the decisions of ``path`` on their pairs; unknown pair ids are an error."""
    decisions = read_decisions(path)
    if decisions.empty:
        return 0
    known = set(
        session.execute(
            select(review_pairs.c.pair_id).where(
                review_pairs.c.pair_id.in_(decisions["pair_id"].tolist())
            )
        ).scalars()
    )
    unknown = sorted(set(decisions["pair_id"]) - known)
    if unknown:
        raise IpviError(f"decisions file {path}: unknown pair_id(s): {', '.join(unknown[:5])}")
    for row in decisions.itertuples(index=False):
        session.execute(
            update(review_pairs)
            .where(review_pairs.c.pair_id == row.pair_id)
            .values(
                status="decided",
                decision=row.decision,
                reviewer=row.reviewer,
                decided_at=row.decided_at.to_pydatetime()
                if hasattr(row.decided_at, "to_pydatetime")
                else row.decided_at,
            )
        )
    return len(decisions)


def decided_pairs(session: Session) -> pd.DataFrame:
    """Decided pairs (record_id_a, record_id_b, decision): constraints and training labels."""
    rows = session.execute(
        select(
            review_pairs.c.record_id_a, review_pairs.c.record_id_b, review_pairs.c.decision
        ).where(review_pairs.c.status == "decided")
    ).all()
    return pd.DataFrame(rows, columns=["record_id_a", "record_id_b", "decision"])
