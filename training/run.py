"""What ``ipvi train`` and ``ipvi score --all`` do, as library functions the CLI wires up.

:func:`train_from_registry` reads events, mentions and the crosswalk from the registry, trains
(:func:`training.pipeline.train`), logs and registers the model in MLflow, and writes the run's
``evaluation_predictions`` (and, with the truth, ``evaluation_truth``). :func:`score_all` scores
every person with an IPV offence as of a date with a registered version, stores the scores
(and keeps them as issued: :mod:`training.issued`) and writes the coordinators' list with the
changes since the last one; :func:`rewrite_tier_lists` rebuilds the lists a purge touched.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pandas as pd
from sqlalchemy import insert, select, update

from ipvi.config import Config
from ipvi.db import session_scope
from ipvi.errors import IpviError
from ipvi.purge import whole_identifiers
from ipvi.site_key import SiteKey
from ipvi.tables.training import scores, tier_lists
from linkage.engine import chosen_engine
from training.data import SCORING_MENTIONS, load_history, load_truth, read_history
from training.issued import write_issued
from training.pipeline import train
from training.registry import log_training_run, registered_version, require_package_version
from training.result import summary as summarise
from training.review_priority import prioritise_review_pairs
from training.scoring import RiskScorer
from training.store import write_run, write_scores
from training.tier_list import LIST_SOURCE_COLUMNS, build_list, write_list

logger = logging.getLogger(__name__)


def run_params(config: Config) -> dict:
    """The settings logged as MLflow parameters (never row values or identifiers)."""
    training = config.training
    return {
        **{f"model_{k}": v for k, v in training.model.model_dump().items()},
        **{f"split_{k}": v for k, v in training.split.model_dump().items()},
        "decision_lag_days": training.decision_lag_days,
        "offence_window_days": training.offence_window_days,
        "followup_days": training.followup_days,
        "recording_days": training.recording_days,
        "count_charges": training.tiers.count_charges,
        "excluded_features": ",".join(training.excluded_features),
        "training_config_sha256": config.section_hash("training"),
    }


def train_from_registry(
    engine, config: Config, *, key: SiteKey, truth_dir: str | Path | None = None
) -> dict:
    """Train on the registry's linked persons; returns the ``ipvi train --json`` figures.

    The persons trained on are stored as keyed pseudonyms (``key``), in MLflow and in
    ``model_training_persons``.
    """
    events, mentions, crosswalk = load_history(engine)
    truth = load_truth(truth_dir) if truth_dir else None
    result = train(events, mentions, crosswalk, config.training, truth=truth)
    figures = summarise(result)
    run = log_training_run(
        result,
        tracking_uri=config.tracking_uri,
        model_name=config.mlflow.model_name,
        alias=config.training.registry_alias,
        artifact_location=config.mlflow.artifact_location,
        summary=figures,
        params=run_params(config),
        key=key,
    )
    with session_scope(engine) as session:
        write_run(
            session,
            run=run,
            summary=figures,
            data_fingerprint=result.data_fingerprint,
            predictions=result.predictions,
            truth=result.truth,
            trained_persons=sorted({key.pseudonym(p) for p in result.trained_persons}),
            feature_reference=result.feature_reference,
        )
    return {**run, **figures}


def score_all(
    engine,
    config: Config,
    *,
    as_of: str,
    alias_or_version: str = "champion",
    engine_name: str | None = None,
    report: Callable[[str], None] = logger.info,
) -> dict:
    """Score every person with an IPV offence known at ``as_of`` and write the tier list,
    with a model version trained by this package version (as the service refuses others).

    ``engine_name`` (``local`` or ``spark``; default ``linkage.engine``) says where the
    features and scores are computed: here, or by the same code in Spark executors
    (:mod:`training.spark`, in the session of ``config.spark``; ``report`` receives its
    progress). Both give the same scores, and what is written is the same.
    """
    engine_name = chosen_engine(engine_name, config.linkage.engine)
    version = registered_version(config.tracking_uri, config.mlflow.model_name, alias_or_version)
    require_package_version(version)
    scorer = RiskScorer.from_registry(
        config.tracking_uri, config.mlflow.model_name, str(version.version)
    )
    events, mentions, crosswalk = read_history(engine, mention_columns=SCORING_MENTIONS)
    if engine_name == "spark":
        from linkage.spark.session import spark_session
        from training.spark import score_on_spark

        with spark_session(config.spark, report) as (session, work_dir):
            scored = score_on_spark(
                session,
                work_dir,
                scorer,
                events,
                mentions,
                crosswalk,
                as_of=pd.Timestamp(as_of),
                report=report,
            )
    else:
        scored = scorer.score_many(events, mentions, crosswalk, as_of=pd.Timestamp(as_of))
    if not len(scored):
        raise IpviError(f"no linked person has an IPV offence known as of {as_of}")
    scored = scored.to_frame()
    with session_scope(engine) as session:
        last = session.execute(
            select(tier_lists.c.list_id).order_by(tier_lists.c.list_id.desc()).limit(1)
        ).scalar()
        previous = None if last is None else list_scores(session, last, PREVIOUS_COLUMNS)
        list_id = session.execute(
            insert(tier_lists)
            .values(
                as_of=pd.Timestamp(as_of).to_pydatetime(),
                created_at=datetime.now(),
                model_name=scorer.model_name,
                model_version=scorer.model_version,
                n_persons=len(scored),
                csv_path="",
                html_path="",
            )
            .returning(tier_lists.c.list_id)
        ).scalar_one()
        n = write_scores(session, scored, list_id=list_id)
        write_issued(session, scored, features=scorer.bundle.features)
        prioritised = prioritise_review_pairs(session, scored)
        rows = build_list(scored, previous)
        csv_path, html_path = write_tier_list(
            session, rows, list_id=list_id, as_of=as_of, folder=config.training.list_dir
        )
    changes = rows["change"].value_counts().to_dict()
    return {
        "list_id": list_id,
        "n_scored": n,
        "model_version": scorer.model_version,
        "csv": str(csv_path),
        "html": str(html_path),
        "tier_counts": scored["tier"].value_counts().to_dict(),
        "changes": changes,
        "review_pairs_prioritised": prioritised,
        "engine": engine_name,
    }


PREVIOUS_COLUMNS = ("person_id", "tier", "band")  # what a list is compared with


def list_scores(session, list_id: int, columns=LIST_SOURCE_COLUMNS) -> pd.DataFrame:
    """The stored scores of tier list ``list_id``: the ``columns`` :func:`build_list` reads
    (all of them for the list itself, :data:`PREVIOUS_COLUMNS` of the list before it)."""
    result = session.execute(
        select(*(scores.c[name] for name in columns)).where(scores.c.list_id == list_id)
    )
    return pd.DataFrame(result.fetchall(), columns=list(columns))


def write_tier_list(
    session, rows: pd.DataFrame, *, list_id: int, as_of, folder: str | Path
) -> tuple[Path, Path]:
    """Write list ``list_id``'s CSV and HTML into ``folder`` and record where (the one way a
    tier list reaches disk: ``ipvi score --all`` and ``ipvi purge`` alike)."""
    day = pd.Timestamp(as_of).date()
    csv_path, html_path = write_list(
        rows, folder, stem=f"tier_list_{day}_{list_id}", title=f"IPVI tier list as of {day}"
    )
    session.execute(
        update(tier_lists)
        .where(tier_lists.c.list_id == list_id)
        .values(
            csv_path=str(csv_path),
            html_path=str(html_path),
            n_persons=int((rows["change"] != "left the list").sum()),
        )
    )
    return csv_path, html_path


def rewrite_tier_lists(engine, identifiers: list[str]) -> list[int]:
    """Rebuild, from the stored scores, every tier list whose files name one of
    ``identifiers`` (after ``ipvi purge`` removed their scores); returns the lists rewritten.

    Each list is built as :func:`score_all` built it (:func:`build_list` against the list
    before it), so the other persons' rows and changes stay as they were.
    """
    pattern = whole_identifiers(identifiers)
    if pattern is None:
        return []
    rewritten = []
    with session_scope(engine) as session:
        stored = session.execute(select(tier_lists).order_by(tier_lists.c.list_id)).fetchall()
        previous_id = None
        for listed in stored:
            paths = [Path(listed.csv_path), Path(listed.html_path)]
            names = any(
                path.is_file() and pattern.search(path.read_text(encoding="utf-8"))
                for path in paths
            )
            if names:
                previous = (
                    None
                    if previous_id is None
                    else list_scores(session, previous_id, PREVIOUS_COLUMNS)
                )
                rows = build_list(list_scores(session, listed.list_id), previous)
                write_tier_list(
                    session,
                    rows,
                    list_id=listed.list_id,
                    as_of=listed.as_of,
                    folder=paths[0].parent,
                )
                rewritten.append(listed.list_id)
            previous_id = listed.list_id
    return rewritten
