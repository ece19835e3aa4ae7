"""Writing the training stage's tables, and its purge step.

Functions take a SQLAlchemy session (the caller owns the transaction). Rows carry pseudonymous
person ids and record ids only; no names, dates of birth, addresses or protected attributes.
"""

from __future__ import annotations

from datetime import datetime

import pandas as pd
from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session

from ipvi.bulk import bulk_insert
from ipvi.purge import PurgeTarget
from ipvi.site_key import legacy_hash
from ipvi.tables.training import (
    evaluation_predictions,
    evaluation_truth,
    model_training_persons,
    scores,
    training_runs,
)

PREDICTION_COLUMNS: tuple[str, ...] = tuple(
    c.name for c in evaluation_predictions.columns if c.name not in ("run_id", "model_version")
)
TRUTH_COLUMNS: tuple[str, ...] = tuple(
    c.name for c in evaluation_truth.columns if c.name != "run_id"
)
SCORE_COLUMNS: tuple[str, ...] = tuple(
    c.name for c in scores.columns if c.name not in ("score_id", "list_id", "scored_at")
)


def write_run(
    session: Session,
    *,
    run: dict,
    summary: dict,
    data_fingerprint: str,
    predictions: pd.DataFrame,
    truth: pd.DataFrame | None,
    trained_persons: list[str],
    feature_reference: dict | None = None,
) -> None:
    """Store one run: its summary, the training distribution of its model inputs
    (:mod:`training.reference`), test predictions, truth rows and the keyed pseudonyms of the
    persons it trained on."""
    run_id, version = run["run_id"], run["model_version"]
    session.execute(
        insert(training_runs).values(
            run_id=run_id,
            model_name=run["model_name"],
            model_version=version,
            created_at=datetime.now(),
            data_fingerprint=data_fingerprint,
            n_train=int(summary["n_train"]),
            n_test=int(summary["n_test"]),
            summary=summary,
            feature_reference=feature_reference,
        )
    )
    bulk_insert(
        session.connection(),
        evaluation_predictions,
        predictions[list(PREDICTION_COLUMNS)].assign(run_id=run_id, model_version=version),
    )
    if truth is not None:
        bulk_insert(
            session.connection(),
            evaluation_truth,
            truth[list(TRUTH_COLUMNS)].assign(run_id=run_id),
        )
    if trained_persons:
        session.execute(
            insert(model_training_persons),
            [
                {
                    "run_id": run_id,
                    "person_hash": person_hash,
                    "model_name": run["model_name"],
                    "model_version": version,
                }
                for person_hash in trained_persons
            ],
        )


def read_predictions(session: Session, run_id: str) -> pd.DataFrame:
    """The evaluation predictions of one run."""
    result = session.execute(
        select(evaluation_predictions).where(evaluation_predictions.c.run_id == run_id)
    )
    return pd.DataFrame(result.fetchall(), columns=list(result.keys()))


def write_scores(session: Session, scored: pd.DataFrame, *, list_id: int | None) -> int:
    """Store scores (one row per person) through the driver; returns how many.

    ``ipvi score --all`` writes a row per scored person, too many for SQLAlchemy's per-row
    handling of JSON and date columns (:func:`ipvi.bulk.bulk_insert` converts each column
    once).
    """
    rows = scored[list(SCORE_COLUMNS)].assign(list_id=list_id, scored_at=datetime.now())
    bulk_insert(session.connection(), scores, rows)
    return len(rows)


def affected_model_versions(session: Session, pseudonyms: list[str]) -> list[tuple[str, str]]:
    """``(model_name, model_version)`` of every version trained on a person with one of these
    keyed pseudonyms (or the unkeyed hashes older versions stored)."""
    rows = session.execute(
        select(model_training_persons.c.model_name, model_training_persons.c.model_version)
        .where(model_training_persons.c.person_hash.in_(pseudonyms))
        .distinct()
    ).fetchall()
    return sorted((name, version) for name, version in rows)


def purge_step(session: Session, target: PurgeTarget) -> dict[str, int]:
    """Remove the scores and evaluation rows of the persons the target touches (the
    ``ipvi purge`` step).

    A record purge removes the derived rows of the person(s) the records link to, since their
    scores rest on them. The model versions trained on a purged person are counted under
    ``model_versions_trained_on_person``; for a person purge, the person's pseudonym leaves
    ``model_training_persons`` (the MLflow copy is handled after the transaction:
    :func:`training.registry.purge_trained_persons`).
    """
    counts = {"scores": 0, "evaluation_predictions": 0, "evaluation_truth": 0}
    persons = list(target.persons)
    if not persons:
        return {**counts, "model_versions_trained_on_person": 0, "model_training_persons": 0}
    for table in (scores, evaluation_predictions, evaluation_truth):
        result = session.execute(delete(table).where(table.c.person_id.in_(persons)))
        counts[table.name] = int(result.rowcount or 0)
    forms = [target.pseudonyms[p] for p in persons] + [legacy_hash(p) for p in persons]
    counts["model_versions_trained_on_person"] = len(affected_model_versions(session, forms))
    counts["model_training_persons"] = 0
    if target.person_id:
        purged = [target.pseudonyms[target.person_id], legacy_hash(target.person_id)]
        counts["model_training_persons"] = session.execute(
            delete(model_training_persons).where(model_training_persons.c.person_hash.in_(purged))
        ).rowcount
    return counts
