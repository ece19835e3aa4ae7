"""``ipvi purge``: remove records or a person from every stage and every copy, and check it.

The engine (:class:`ipvi.purge.Purge`: target, tombstone, "never ingest again") is in the core;
each stage owns its steps next to what they change. This module is the one list of those steps
and the order they run in, in two parts:

- :func:`database_steps`, ``step(session, target) -> {table: rows}``, run in ONE transaction
  (either every stage forgets the target or none does), downstream stages first: their rows
  refer to the records and persons purged upstream;
- :data:`AFTER_COMMIT`, ``step(context, result) -> {figure: value}``, for the copies outside
  the database (files, MLflow artefacts, the service's link index, the SQLite file's free
  pages), run once the rows are gone, each from the resolved target the purge returns.

To purge something new, write the stage's step next to its table (a table that names persons,
such as ``issued_scores``: delete or pseudonymise the target's rows) and add it to the list,
before every step whose rows it refers to. A copy outside the database gets an entry in
:data:`AFTER_COMMIT`. :func:`verify` looks everywhere for what is left, whoever wrote it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.engine import Engine

from ingest.lock import registry_lock
from ingest.purge import purge_step as ingest_step
from ipvi.config import Config
from ipvi.db import compact, session_scope
from ipvi.purge import Purge, PurgeResult, PurgeStep, PurgeTarget, Resolver
from ipvi.residue import Search, redact_files, search_files, search_for, search_tables
from ipvi.site_key import SiteKey
from linkage.purge import person_records, record_persons
from linkage.purge import purge_step as linkage_step
from serving.audit_log import purge_step as audit_log_step
from serving.decisions import purge_step as decisions_step
from serving.link_index import prebuild_report
from training.issued import purge_step as issued_step
from training.registry import purge_trained_persons
from training.run import rewrite_tier_lists
from training.store import purge_step as training_step

RESOLVERS: tuple[Resolver, ...] = (person_records, record_persons)


def database_steps(key: SiteKey) -> list[PurgeStep]:
    """The steps inside the transaction, in order (the audit log's needs the key to chain)."""
    return [
        functools.partial(audit_log_step, key=key),  # a chained tombstone; rows are kept
        decisions_step,  # the person's decisions name the tombstone, their reasons go
        issued_step,  # every score issued for the persons the records make up
        training_step,  # scores and evaluation rows of the persons the records make up
        linkage_step,  # crosswalk, review pairs, id changes and the person
        ingest_step,  # mentions and their versions, field issues, quarantine, orphaned events
    ]


@dataclass(frozen=True)
class PurgeContext:
    """What the steps outside the database need."""

    engine: Engine
    config: Config
    key: SiteKey
    config_path: str | None = None
    link_index: bool = True


def _tier_lists(context: PurgeContext, result: PurgeResult) -> dict:
    target = result.target
    lists = rewrite_tier_lists(context.engine, [*target.persons, *target.record_ids])
    return {"tier_lists_rewritten": len(lists)}


def _mlflow(context: PurgeContext, result: PurgeResult) -> dict:
    target = result.target
    if not target.person_id:
        return {"model_versions_to_retrain": []}
    versions = purge_trained_persons(
        context.config.tracking_uri,
        context.config.mlflow.model_name,
        context.key,
        [target.person_id],
        tombstone_id=result.tombstone_id,
    )
    return {"model_versions_to_retrain": versions}


def _reports(context: PurgeContext, result: PurgeResult) -> dict:
    target = result.target
    identifiers = [target.person_id, *target.record_ids] if target.person_id else target.record_ids
    changed = redact_files([Path(context.config.paths.reports_dir)], identifiers)
    return {"reports_redacted": [str(path) for path in changed]}


def _link_index(context: PurgeContext, result: PurgeResult) -> dict:
    if not context.link_index:
        return {}
    folder = Path(context.config.serving.audit_spool_dir)
    return prebuild_report(folder, context.engine, context.config_path)


def _compact(context: PurgeContext, result: PurgeResult) -> dict:
    return {"database_compacted": compact(context.engine)}


AfterCommitStep = Callable[[PurgeContext, PurgeResult], dict]
# In order: the link index is rebuilt from the database before the file is compacted.
AFTER_COMMIT: tuple[AfterCommitStep, ...] = (
    _tier_lists,  # lists rebuilt from the stored scores, without the persons
    _mlflow,  # trained_persons.json of each version, and a retrain tag
    _reports,  # other text reports under paths.reports_dir: ids replaced by [purged]
    _link_index,  # the service's index file without the records (the old file removed)
    _compact,  # SQLite: no deleted row left in free pages or the write-ahead log
)


@dataclass
class PurgeReport:
    """A purge's database result and what each step outside the database did."""

    result: PurgeResult
    after: dict = field(default_factory=dict)


def purge_registry(
    engine: Engine, target: PurgeTarget, *, reason: str, key: SiteKey, lock_timeout: float
) -> PurgeResult:
    """Run every database step for ``target`` and leave a tombstone, or change nothing.

    Under the ingest lock, so that a concurrent ``ipvi ingest`` cannot store a record that is
    being purged.
    """
    purge = Purge(steps=database_steps(key), key=key, resolvers=list(RESOLVERS))
    with registry_lock(engine, timeout=lock_timeout), session_scope(engine) as session:
        return purge.run(session, target, reason=reason)


def purge(context: PurgeContext, target: PurgeTarget, *, reason: str) -> PurgeReport:
    """:func:`purge_registry`, then every step of :data:`AFTER_COMMIT`."""
    result = purge_registry(
        context.engine,
        target,
        reason=reason,
        key=context.key,
        lock_timeout=context.config.ingest.lock_timeout_seconds,
    )
    report = PurgeReport(result=result)
    for step in AFTER_COMMIT:
        report.after.update(step(context, result))
    return report


def stores(config: Config) -> list[Path]:
    """Every folder and file the project writes to, as configured: the home folder (registry,
    MLflow store, key and spool unless moved elsewhere), reports, tier lists, the audit spool,
    MLflow's artefacts, and SQLite databases wherever they are (with their write-ahead logs)."""
    places = [
        config.paths.home,
        config.paths.reports_dir,
        config.training.list_dir,
        config.serving.audit_spool_dir,
        config.mlflow.artifact_location,
    ]
    for url in (config.database_url, config.tracking_uri):
        if url.startswith("sqlite:///"):
            database = url.removeprefix("sqlite:///")
            places += [database, f"{database}-wal", f"{database}-shm"]
    return [Path(place) for place in dict.fromkeys(places)]


def verify(engine: Engine, config: Config, key: SiteKey, identifier: str) -> Search:
    """Where ``identifier`` (a person or record id) still appears: every table of the
    registry and every file under :func:`stores` (:mod:`ipvi.residue`)."""
    search = search_for(engine, key, identifier)
    search_tables(engine, search)
    search_files(stores(config), search)
    return search
