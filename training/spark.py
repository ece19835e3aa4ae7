"""Batch scoring on Spark (``ipvi score --all --engine spark``): the local scoring code, run by
group of persons in Spark executors.

Each person's history is what the service reads for one person
(:func:`training.data.person_history`): the events any of their mentions names, every mention of
those events (victims and partners, for dual arrests), their own mentions, and the crosswalk
rows of those records and of the events' victim records. Spark gathers the histories with
joins on the registry's tables (exported as Parquet, :mod:`linkage.spark.parquet`) and hands
them, grouped by person, to ``applyInPandas``, where :meth:`training.scoring.RiskScorer.score_many`
scores them: the same features, tiers, model and reasons as the local engine, which scores the
whole registry at once. A person's score reads nothing outside their history, so the answers
are the local engine's; rows keep the registry's order inside a group, so ties (the mention
kept when a person is named twice on an event) break as they do locally.

Persons go to the executors in groups of about :data:`PERSONS_PER_GROUP` whole histories (one
call per person would cost a Python call and a model prediction each). The champion bundle is
written once to the session's working folder and loaded once per executor process
(:func:`_bundle`). Each group's scores come back as one pickled :class:`~ipvi.columns.Columns`
in Parquet, so every column keeps its exact values and types; the driver sorts them by person,
as the local engine orders them, and :func:`training.run.score_all` writes them in one
transaction, as it writes the local engine's.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from ipvi.columns import Columns
from training.bundle import ModelBundle
from training.data import CROSSWALK_READ, SCORING_MENTIONS
from training.scoring import RiskScorer

PERSONS_PER_GROUP = 1000
# The executor's bundles by folder: each Python worker loads a version once.
_BUNDLES: dict[str, ModelBundle] = {}


def score_on_spark(
    session,
    work_dir: Path,
    scorer: RiskScorer,
    events: Columns,
    mentions: Columns,
    crosswalk: Columns,
    *,
    as_of: pd.Timestamp,
    report: Callable[[str], None],
) -> Columns:
    """:meth:`RiskScorer.score_many` of every person, by group of persons in ``session``.

    Parameters
    ----------
    session : pyspark.sql.SparkSession
        The session (:func:`linkage.spark.session.spark_session`).
    work_dir : Path
        A folder the driver and every executor share: the Parquet files and the bundle.
    scorer : RiskScorer
        The version to score with.
    events, mentions, crosswalk : Columns
        The registry's tables, as :func:`training.data.read_history` reads them (mentions
        with :data:`training.data.SCORING_MENTIONS`).
    as_of : Timestamp
        The decision date.
    report : callable
        Receives each stage's name and elapsed time.

    Returns
    -------
    Columns
        The scores :meth:`RiskScorer.score_many` gives on the whole registry, in its order.
    """
    from linkage.spark.parquet import from_spark
    from linkage.spark.session import stage

    with stage("export", report):
        bundle_dir = scorer.bundle.save(work_dir / "bundle")
        histories = _histories(session, work_dir, events, mentions, crosswalk)
    stamp = {
        "model_name": scorer.model_name,
        "model_version": scorer.model_version,
        "mlflow_run_id": scorer.mlflow_run_id,
    }
    names = {
        "events": events.columns,
        "dates": [
            n for table in (events, mentions) for n in table.columns if table[n].dtype.kind == "M"
        ],
    }

    def score_group(key, group_events: pd.DataFrame, group_links: pd.DataFrame) -> pd.DataFrame:
        scored = _score_group(
            key[0], group_events, group_links, str(bundle_dir), stamp, names, as_of
        )
        payload = [pickle.dumps(scored)] if len(scored) else []
        return pd.DataFrame({"payload": pd.Series(payload, dtype=object)})

    with stage("score", report):
        scored = from_spark(
            histories.applyInPandas(score_group, "payload binary"), work_dir / "scores"
        )
        out = _concat([pickle.loads(payload) for payload in scored.get("payload", [])])
    if not len(out):
        return out
    return out.take(np.argsort(np.asarray(out["person_id"], dtype=str), kind="stable"))


def _histories(session, work_dir: Path, events: Columns, mentions: Columns, crosswalk: Columns):
    """Every person's history in Spark, cogrouped by group of persons: events on one side;
    mentions (with their links) and the crosswalk rows of victim records on the other.
    ``person_group`` is the group of a linked row's own person; ``_pos`` and ``_link`` keep
    the mentions' and the crosswalk's registry order; dates travel as int64 nanoseconds
    (Spark would read naive timestamps in the session's time zone)."""
    from pyspark.sql import functions as F

    from linkage.spark.parquet import write_parquet

    codes, persons = pd.factorize(np.asarray(crosswalk["person_id"], dtype=object))
    groups = max(1, -(-len(persons) // PERSONS_PER_GROUP))

    def load(columns: Columns, name: str, **extra) -> str:
        frame = pd.DataFrame(
            {
                "_pos": np.arange(len(columns), dtype=np.int64),
                **{
                    n: columns[n].view(np.int64) if columns[n].dtype.kind == "M" else columns[n]
                    for n in columns.columns
                },
                **extra,
            }
        )
        return str(write_parquet(frame, work_dir / name))

    folders = {
        "events": load(events, "events"),
        "mentions": load(mentions, "mentions"),
        "crosswalk": load(crosswalk, "crosswalk", person_group=(codes % groups).astype(np.int64)),
    }

    def tables():
        """The tables read afresh: the two sides of the cogroup share no plan, which Spark's
        check of self-joins would take for ambiguous columns."""
        links = session.read.parquet(folders["crosswalk"]).withColumnRenamed("_pos", "_link")
        linked = session.read.parquet(folders["mentions"]).join(links, "record_id", "left")
        own = linked.where(F.col("person_group").isNotNull()).withColumn(
            "group", F.col("person_group")
        )
        own_events = own.where(F.col("event_id").isNotNull()).select("group", "event_id")
        own_events = own_events.distinct()
        group_events = own_events.join(session.read.parquet(folders["events"]), "event_id")
        return links, linked, own, own_events, group_events

    group_events = tables()[-1]
    links, linked, own, own_events, their_events = tables()
    group_mentions = (
        own_events.join(linked, "event_id").unionByName(own).dropDuplicates(["group", "_pos"])
    )
    victims = (
        their_events.where(F.col("victim_record_id").isNotNull())
        .select("group", F.col("victim_record_id").alias("record_id"))
        .distinct()
        .join(links, "record_id")
        .join(group_mentions.select("group", "record_id"), ["group", "record_id"], "left_anti")
    )
    # A victim's crosswalk row has no mention: its dates are NaT, so the column stays int64
    # (a null would make pandas read the whole column as float).
    for name in (n for n in mentions.columns if mentions[n].dtype.kind == "M"):
        victims = victims.withColumn(name, F.lit(np.iinfo(np.int64).min))
    group_links = group_mentions.unionByName(victims, allowMissingColumns=True)
    return group_events.groupBy("group").cogroup(group_links.groupBy("group"))


def _score_group(
    group: int,
    events: pd.DataFrame,
    links: pd.DataFrame,
    bundle_dir: str,
    stamp: dict,
    names: dict[str, list[str]],
    as_of: pd.Timestamp,
) -> Columns:
    """The scores of one group's persons (those whose crosswalk rows name ``group``), by
    :meth:`RiskScorer.score_many` on their histories in registry order."""
    scorer = RiskScorer(_bundle(bundle_dir), **stamp)
    events = events.sort_values("_pos", kind="stable")
    mentions = links[links["_pos"].notna()].sort_values("_pos", kind="stable")
    linked = links[links["_link"].notna()].sort_values("_link", kind="stable")
    persons = pd.unique(linked.loc[linked["person_group"] == group, "person_id"])
    return scorer.score_many(
        _columns(events, names["events"], names["dates"]),
        _columns(mentions, list(SCORING_MENTIONS), names["dates"]),
        _columns(linked, list(CROSSWALK_READ), names["dates"]),
        as_of=as_of,
        person_ids=list(persons),
    )


def _columns(frame: pd.DataFrame, names: list[str], dates: list[str]) -> Columns:
    """``names`` of ``frame`` as the registry reader gives them: dates back from int64."""
    return Columns(
        {
            name: frame[name].to_numpy(np.int64).view("datetime64[ns]")
            if name in dates
            else frame[name].to_numpy()
            for name in names
        }
    )


def _bundle(folder: str) -> ModelBundle:
    """The bundle in ``folder``, loaded once per process."""
    if folder not in _BUNDLES:
        _BUNDLES[folder] = ModelBundle.load(folder)
    return _BUNDLES[folder]


def _concat(parts: list[Columns]) -> Columns:
    if not parts:
        return Columns()
    return Columns({name: np.concatenate([part[name] for part in parts]) for name in parts[0]})
