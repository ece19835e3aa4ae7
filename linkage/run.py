"""Link the registry: mentions in, persons / crosswalk / review queue / run log out.

A run holds the linkage lock (a second concurrent run fails at once, naming the holder; a lock
left by a killed run is taken over, one whose lease ran out with ``--break-stale-lock``), links
every current mention (offenders and victims alike), gives clusters stable person ids, and
switches the crosswalk, persons, id changes, review queue and the learned model (m / u, prior,
term frequencies, settings hash: ``linkage_models``) in ONE transaction: a reader sees the old
crosswalk or the new one, never a mixture, and the model that made it.

Readers (training, serving) use :func:`read_crosswalk` and :func:`load_link_index`.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
from sqlalchemy import (
    Engine,
    String,
    bindparam,
    cast,
    delete,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from ipvi.arrays import in_sorted
from ipvi.config import LinkageConfig, SparkConfig
from ipvi.db import session_scope
from ipvi.errors import IpviError
from ipvi.locks import LockHolder
from ipvi.tables.ingest import events, mentions
from ipvi.tables.linkage import (
    crosswalk,
    linkage_lock,
    linkage_models,
    linkage_runs,
    person_id_changes,
    persons,
    review_pairs,
    review_sample,
)
from linkage.accuracy import draw_sample
from linkage.engine import open_linker
from linkage.evaluate import blocking_metrics, cluster_metrics, metrics_by_group
from linkage.fellegi_sunter import FellegiSunter
from linkage.incremental import LinkIndex, assign_person_ids
from linkage.linker import Linker, LinkResult
from linkage.report import run_report_data
from linkage.review import ADDRESS_FIELDS, decided_pairs, evidence_for, pair_id
from linkage.settings import LinkageSettings
from linkage.standardize import MENTION_LINK_FIELDS, on_distinct

logger = logging.getLogger(__name__)

LOCK_NAME = "linkage"
# Registry-only evidence built from the mention's agency, event and role (see registry_keys).
REGISTRY_KEYS: tuple[str, ...] = ("agency_pid", "case_key")
INSERT_CHUNK = 20_000


def new_run_id() -> str:
    return f"LR-{datetime.now():%Y%m%d%H%M%S}-{uuid.uuid4().hex[:6]}"


def registry_record_keys(mention: dict) -> dict:
    """Add ``agency_pid`` and ``case_key`` to one mention: evidence only the registry has.

    ``agency_pid`` is the agency's own person id, qualified by the agency (ids of two agencies
    never agree by chance). ``case_key`` is the cross-agency case number (digits only, so
    ``19CR004512``, ``19cr004512`` and ``19-004512`` agree) plus the side, offender or victim:
    the offender mentions of one case are very likely one person, its victim another.

    >>> registry_record_keys({"agency": "court", "agency_person_id": "77", "case_ref": "19CR0045",
    ...                       "role": "defendant"})["case_key"]
    '190045o'
    """

    def text(key: str) -> str:
        value = mention.get(key)
        return "" if value is None or value != value else str(value).strip()

    agency, person, case = text("agency"), text("agency_person_id"), text("case_ref")
    digits = "".join(ch for ch in case if ch.isdigit())
    side = "v" if text("role") == "victim" else "o"
    return {
        **mention,
        "agency_pid": f"{agency}:{person}" if agency and person else "",
        "case_key": digits + side if len(digits) >= 4 else "",
    }


def registry_keys(frame: pd.DataFrame) -> pd.DataFrame:
    """:func:`registry_record_keys` for every row of ``frame``, vectorised (same values)."""

    def text(column: str, function=str.strip) -> pd.Series:
        if column not in frame:
            return pd.Series("", index=frame.index, dtype=object)
        return on_distinct(frame[column], function)

    agency, person = text("agency"), text("agency_person_id")
    digits = text("case_ref", lambda value: "".join(ch for ch in value if ch.isdigit()))
    side = np.where(text("role") == "victim", "v", "o")
    out = frame.copy()
    out["agency_pid"] = (agency + ":" + person).where((agency != "") & (person != ""), "")
    out["case_key"] = (digits + side).where(digits.str.len() >= 4, "")
    return out


def _mention_columns(extra: tuple[str, ...] = ()) -> list:
    """The mention columns the linker reads, and the case number of the mention's event.

    ``dob`` is read as its ISO text (what the standardiser parses): converting a million
    values to ``date`` objects and back would only cost time.
    """
    names = MENTION_LINK_FIELDS + ("agency", "agency_person_id", "role") + extra
    return [
        mentions.c.record_id,
        *(cast(mentions.c[c], String).label(c) if c == "dob" else mentions.c[c] for c in names),
        events.c.case_ref,
    ]


def read_mentions(engine: Engine, extra: tuple[str, ...] = ()) -> pd.DataFrame:
    """Current mentions with the fields the linker reads and the registry keys, by record id."""
    columns = _mention_columns(extra)
    query = (
        select(*columns)
        .select_from(mentions.outerjoin(events, events.c.event_id == mentions.c.event_id))
        .order_by(mentions.c.record_id)
    )
    with engine.connect() as connection:
        frame = pd.read_sql(query, connection)
    return registry_keys(frame)


STALE_LOCK = (
    "the linkage lock of run {run} is stale ({why}): if that run is really gone, take the lock "
    "over with `ipvi link --break-stale-lock`"
)


def _holder_row(connection):
    return connection.execute(select(linkage_lock)).mappings().first()


def _staleness(row, now: datetime) -> tuple[str | None, bool]:
    """Why the lock ``row`` is stale (None: it is live), and whether that is certain (its
    process on this host is gone) rather than a lease that ran out (its holder may be on
    another host, or may only be slow)."""
    holder = LockHolder(row["host"], row["pid"], row["process_started"])
    if holder.is_gone():
        return f"{holder.describe()} is gone", True
    expires = row["lease_expires_at"]
    if expires is not None and expires < now:
        return f"its lease expired at {expires:%Y-%m-%d %H:%M:%S}", False
    return None, False


def acquire_lock(
    engine: Engine,
    run_id: str,
    timeout: float = 0.0,
    *,
    lease_seconds: float = 300.0,
    break_stale: bool = False,
) -> str | None:
    """Take the linkage lock, naming this process and a lease of ``lease_seconds``.

    A lock whose holder is certainly dead (its process on this host is gone: a killed
    ``ipvi link``) is taken over; one whose lease ran out only with ``break_stale`` (its holder
    may be alive on another host), else the error says how. A live holder is waited for up to
    ``timeout`` seconds, then named in the error.

    Returns
    -------
    str or None
        Why a stale lock was taken over, if one was.
    """
    me = LockHolder.me()
    deadline = time.monotonic() + timeout
    taken_over = None
    while True:
        now = datetime.now()
        try:
            with engine.begin() as connection:
                connection.execute(
                    insert(linkage_lock).values(
                        name=LOCK_NAME,
                        run_id=run_id,
                        acquired_at=now,
                        host=me.host,
                        pid=me.pid,
                        process_started=me.process_started,
                        lease_expires_at=now + timedelta(seconds=lease_seconds),
                    )
                )
            return taken_over
        except IntegrityError:
            with engine.begin() as connection:
                holder = _holder_row(connection)
                if holder is None:
                    continue  # released meanwhile
                why, certain = _staleness(holder, now)
                if why is not None and (certain or break_stale):
                    connection.execute(
                        delete(linkage_lock).where(linkage_lock.c.run_id == holder["run_id"])
                    )
                    taken_over = f"took over the lock of run {holder['run_id']}: {why}"
                    continue
            if why is not None:
                raise IpviError(STALE_LOCK.format(run=holder["run_id"], why=why)) from None
            if time.monotonic() >= deadline:
                who = LockHolder(holder["host"], holder["pid"], holder["process_started"])
                by = f" by {who.describe()}" if who.pid is not None else ""
                raise IpviError(
                    f"linkage run {holder['run_id']} is in progress since "
                    f"{holder['acquired_at']:%Y-%m-%d %H:%M:%S}{by}; wait for it to finish"
                ) from None
            time.sleep(0.2)


def release_lock(engine: Engine, run_id: str) -> None:
    with engine.begin() as connection:
        connection.execute(delete(linkage_lock).where(linkage_lock.c.run_id == run_id))


@contextmanager
def renewed_lease(engine: Engine, run_id: str, lease_seconds: float) -> Iterator[None]:
    """Renew the lock's lease every third of ``lease_seconds`` while the block runs, so that
    only a run that stopped renewing (killed, or wedged) lets its lease run out."""
    stop = threading.Event()

    def renew() -> None:
        while not stop.wait(lease_seconds / 3):
            try:
                with engine.begin() as connection:
                    connection.execute(
                        update(linkage_lock)
                        .where(linkage_lock.c.run_id == run_id)
                        .values(lease_expires_at=datetime.now() + timedelta(seconds=lease_seconds))
                    )
            except Exception as error:  # a busy database: try again at the next beat
                logger.warning("linkage lock lease not renewed: %s", type(error).__name__)

    thread = threading.Thread(target=renew, name="ipvi-link-lease", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def _constraints(session, record_ids: pd.Index) -> tuple[list, list, pd.DataFrame]:
    decided = decided_pairs(session)
    must, cannot = [], []
    if decided.empty:
        return must, cannot, decided
    a = record_ids.get_indexer(decided["record_id_a"])
    b = record_ids.get_indexer(decided["record_id_b"])
    for i, j, decision in zip(a, b, decided["decision"], strict=True):
        if i < 0 or j < 0:
            continue
        if decision == "match":
            must.append((int(min(i, j)), int(max(i, j))))
        elif decision == "non-match":
            cannot.append((int(min(i, j)), int(max(i, j))))
    return must, cannot, decided


def _supervised_rescorer(settings: LinkageSettings, must: list, cannot: list):
    """A rescoring hook training :class:`SupervisedScorer` on the decided candidate pairs."""
    from linkage.supervised import SupervisedScorer

    config = settings.config.supervised
    labels = {pair: 1 for pair in must} | {pair: 0 for pair in cannot}

    def rescore(levels, weight, left, right):
        keys = pd.MultiIndex.from_arrays([np.minimum(left, right), np.maximum(left, right)])
        labelled = pd.Series(labels, dtype=float)
        y = labelled.reindex(keys).to_numpy()
        known = ~np.isnan(y)
        scorer = SupervisedScorer(
            n_levels=[c.n_levels for c in settings.comparisons],
            C=config.C,
            min_labels_per_class=config.min_labels_per_class,
        )
        scorer.fit(levels[known], weight[known], y[known].astype(int))
        return scorer.predict_proba(levels, weight)

    return rescore


def _review_rows(
    result: LinkResult, frame: pd.DataFrame, config: LinkageConfig, decided_ids: set, run_id
) -> list[dict]:
    """Pairs between the review thresholds, and links refused for conflicts, not yet decided."""
    p = result.probability
    band = (p >= config.review_lower) & (p < config.review_upper)
    rows = np.flatnonzero(band)
    if result.clusters.refused:
        # Pairs as one integer each (an index over every candidate pair costs gigabytes).
        width = len(result.records)
        a, b = np.asarray(result.clusters.refused, dtype=np.int64).T
        codes = result.pairs.left * width + result.pairs.right
        rows = np.union1d(rows, np.flatnonzero(in_sorted(codes, np.sort(a * width + b))))
    if config.review_per_decision:
        rows = _one_pair_per_decision(rows, result)
    return _queue_rows(result, frame, rows, decided_ids, run_id, queue="priority")


def _queue_rows(
    result: LinkResult, frame: pd.DataFrame, rows: np.ndarray, decided_ids: set, run_id, queue
) -> list[dict]:
    """``review_pairs`` rows of the candidate pairs ``rows`` not decided yet, with evidence."""
    if len(rows) == 0:
        return []
    p = result.probability
    ids = frame["record_id"].to_numpy(dtype=object)
    left, right = result.pairs.left[rows], result.pairs.right[rows]
    tf_columns = [c.column for c in result.model.comparisons if c.tf_level() is not None]
    tf_left = {c: result.records[c].to_numpy(dtype=object)[left] for c in tf_columns}
    contributions = result.model.contributions(result.levels[rows], tf_left)
    confidential = frame["address_confidential"].fillna(False).astype(bool).to_numpy()
    evidence = evidence_for(contributions, pd.Series(confidential[left] | confidential[right]))
    out = []
    for k, (i, j) in enumerate(zip(left, right, strict=True)):
        key = pair_id(ids[i], ids[j])
        if key in decided_ids:
            continue
        out.append(
            {
                "pair_id": key,
                "record_id_a": ids[i],
                "record_id_b": ids[j],
                "match_probability": float(p[rows[k]]),
                "match_weight": float(result.weight[rows[k]]),
                "evidence": evidence[k],
                "priority": None,
                "status": "pending",
                "decision": None,
                "reviewer": None,
                "decided_at": None,
                "linkage_run_id": run_id,
                "queue": queue,
            }
        )
    return out


def _accuracy_sample(
    result: LinkResult, frame: pd.DataFrame, config: LinkageConfig, run_id: str
) -> tuple[pd.DataFrame, dict]:
    """The run's random sample for the accuracy estimate: (sample rows, design)."""
    sample, design = draw_sample(
        result.pairs.left,
        result.pairs.right,
        result.probability,
        result.labels,
        sample_size=config.accuracy.sample_size,
        seed=config.seed,
    )
    ids = frame["record_id"].to_numpy(dtype=object)
    rows = sample["row"].to_numpy()
    sample["pair_id"] = [
        pair_id(a, b)
        for a, b in zip(ids[result.pairs.left[rows]], ids[result.pairs.right[rows]], strict=True)
    ]
    sample["run_id"] = run_id
    return sample, design


def _one_pair_per_decision(rows: np.ndarray, result: LinkResult) -> np.ndarray:
    """Of the uncertain pairs ``rows``, one per decision a clerk could change.

    A cluster decision is either "are persons X and Y one?" (uncertain pairs across two
    clusters: the most probable one is asked, and a "match" merges the clusters) or "is
    cluster X one person?" (uncertain pairs inside a cluster: the least probable one is asked,
    and a "non-match" splits it). The other pairs of the same question add no decision, so
    they would only multiply the clerks' work (about nine pairs per question on the sample).
    """
    labels = result.labels
    a, b = labels[result.pairs.left[rows]], labels[result.pairs.right[rows]]
    frame = pd.DataFrame(
        {
            "row": rows,
            "low": np.minimum(a, b),
            "high": np.maximum(a, b),
            # across: highest probability first; inside: lowest first
            "rank": np.where(a == b, 1.0, -1.0) * result.probability[rows],
        }
    )
    chosen = frame.sort_values("rank", kind="stable").drop_duplicates(["low", "high"])
    return np.sort(chosen["row"].to_numpy())


def _chunks(rows: list[dict]):
    for start in range(0, len(rows), INSERT_CHUNK):
        yield rows[start : start + INSERT_CHUNK]


def _insert_many(session, table, rows: list[dict]) -> None:
    """Insert ``rows`` (dicts with the same keys) through the driver's executemany.

    SQLAlchemy's per-row parameter handling dominates a crosswalk of a million rows; the
    columns written this way need no conversion (text, numbers), and columns left out take
    their defaults (null).
    """
    if not rows:
        return
    columns = list(rows[0])
    connection = session.connection()
    compiled = insert(table).compile(dialect=connection.dialect, column_keys=columns)
    sql = str(compiled)
    for chunk in _chunks(rows):
        if compiled.positional:
            chunk = [tuple(row[c] for c in compiled.positiontup) for row in chunk]
        connection.exec_driver_sql(sql, chunk)


def link_registry(
    engine: Engine,
    config: LinkageConfig,
    truth_dir: Path | None = None,
    *,
    break_stale_lock: bool = False,
    engine_name: str | None = None,
    spark: SparkConfig | None = None,
    report=logger.info,
) -> dict:
    """Run linkage over the registry's current mentions and record the run.

    ``break_stale_lock`` takes over a linkage lock whose lease ran out (:func:`acquire_lock`).
    ``engine_name`` (``local`` or ``spark``; default ``config.engine``) says where the pairs
    are made, compared and clustered; ``spark`` is the session's configuration and ``report``
    receives the Spark engine's progress lines. The registry is written only once the linker
    finished, in one transaction.

    Returns
    -------
    dict
        ``run_id``, counts, timings, id changes, and with ``truth_dir`` the metrics.
    """
    settings = LinkageSettings.from_config(config)
    run_id = new_run_id()
    taken_over = acquire_lock(
        engine,
        run_id,
        config.lock_timeout_seconds,
        lease_seconds=config.lock_lease_seconds,
        break_stale=break_stale_lock,
    )
    started = datetime.now()
    try:
        with engine.begin() as connection:
            connection.execute(
                insert(linkage_runs).values(run_id=run_id, started_at=started, status="running")
            )
        with renewed_lease(engine, run_id, config.lock_lease_seconds):
            summary = _link(
                engine,
                settings,
                run_id,
                truth_dir,
                engine_name=engine_name,
                spark=spark,
                report=report,
            )
    except BaseException:
        with engine.begin() as connection:
            connection.execute(
                update(linkage_runs)
                .where(linkage_runs.c.run_id == run_id)
                .values(status="failed", finished_at=datetime.now())
            )
        raise
    finally:
        release_lock(engine, run_id)
    if taken_over:
        summary["lock_taken_over"] = taken_over
    return summary


def _link(
    engine: Engine,
    settings: LinkageSettings,
    run_id: str,
    truth_dir,
    *,
    engine_name: str | None,
    spark: SparkConfig | None,
    report,
) -> dict:
    config = settings.config
    start = time.perf_counter()
    frame = read_mentions(engine, extra=("address_confidential",))
    read_seconds = time.perf_counter() - start
    if frame.empty:
        raise IpviError("no mentions in the registry: run `ipvi ingest` first")
    record_ids = pd.Index(frame["record_id"])
    with session_scope(engine) as session:
        must, cannot, decided = _constraints(session, record_ids)
    rescore = _supervised_rescorer(settings, must, cannot) if config.supervised.enabled else None
    with open_linker(settings, engine_name, spark, report) as linker:
        result = linker.run(
            frame[list(MENTION_LINK_FIELDS + REGISTRY_KEYS)],
            must_link=must,
            cannot_link=cannot,
            rescore=rescore,
        )
    confidence = result.link_confidence()
    start = time.perf_counter()
    with session_scope(engine) as session:
        # Through pandas on the session's connection, not rows of a Result, at this size.
        walk = pd.read_sql(
            select(crosswalk.c.record_id, crosswalk.c.person_id), session.connection()
        )
        previous = pd.Series(
            walk["person_id"].to_numpy(dtype=object), index=walk["record_id"].to_numpy(dtype=object)
        )
        active = session.execute(
            select(persons.c.person_id, persons.c.seq).where(persons.c.status == "active")
        ).all()
        seq_of = pd.Series({person: seq for person, seq in active}, dtype="int64")
        next_seq = (session.execute(select(func.max(persons.c.seq))).scalar() or 0) + 1
        ids = assign_person_ids(
            frame["record_id"].to_numpy(dtype=object),
            result.labels,
            previous,
            seq_of,
            next_seq,
            config.person_id_prefix,
        )
        decided_ids = {
            pair_id(a, b)
            for a, b in zip(decided["record_id_a"], decided["record_id_b"], strict=True)
        }
        review = _review_rows(result, frame, config, decided_ids, run_id)
        sample, design = _accuracy_sample(result, frame, config, run_id)
        queued = {row["pair_id"] for row in review}
        fresh_sample = sample["row"].to_numpy()[~sample["pair_id"].isin(queued).to_numpy()]
        review += _queue_rows(result, frame, fresh_sample, decided_ids, run_id, queue="sample")
        # --- the switch: one transaction (this session) for everything below
        _insert_many(
            session,
            persons,
            [
                {
                    "person_id": person,
                    "seq": seq,
                    "status": "active",
                    "created_run_id": run_id,
                }
                for person, seq in ids.minted
            ],
        )
        for retired, successors in ids.retired.items():
            session.execute(
                update(persons)
                .where(persons.c.person_id == retired)
                .values(status="retired", successor_ids=successors, retired_run_id=run_id)
            )
        if ids.changes:
            session.execute(
                insert(person_id_changes),
                [
                    {"run_id": run_id, "retired_id": r, "successor_id": s, "kind": k}
                    for r, s, k in ids.changes
                ],
            )
        session.execute(delete(crosswalk))
        rows = [
            {
                "record_id": record,
                "person_id": person,
                "link_probability": float(p),
                "linkage_run_id": run_id,
            }
            for record, person, p in zip(
                frame["record_id"], ids.person_ids, confidence, strict=True
            )
        ]
        _insert_many(session, crosswalk, rows)
        session.execute(
            update(review_pairs)
            .where(review_pairs.c.status == "pending")
            .values(status="superseded")
        )
        if review:
            keep = {row["pair_id"] for row in review}
            existing = set()
            for chunk_ids in _chunks([{"id": k} for k in keep]):
                existing |= set(
                    session.execute(
                        select(review_pairs.c.pair_id, review_pairs.c.priority).where(
                            review_pairs.c.pair_id.in_([c["id"] for c in chunk_ids])
                        )
                    ).all()
                )
            priority = dict(existing)
            fresh = [row for row in review if row["pair_id"] not in priority]
            # Pairs queued before keep their priority (set by training); one executemany.
            again = [
                {"key": row["pair_id"]}
                | {k: v for k, v in row.items() if k not in ("pair_id", "priority")}
                for row in review
                if row["pair_id"] in priority
            ]
            statement = update(review_pairs).where(review_pairs.c.pair_id == bindparam("key"))
            for chunk in _chunks(again):
                session.execute(statement, chunk)
            for chunk in _chunks(fresh):
                session.execute(insert(review_pairs), chunk)
        _insert_many(
            session,
            review_sample,
            sample[["run_id", "pair_id", "stratum", "linked", "match_probability", "draw"]]
            .astype({"linked": bool, "draw": int, "match_probability": float})
            .to_dict("records"),
        )
        n_persons = len(pd.unique(ids.person_ids))
        n_priority = sum(row["queue"] == "priority" for row in review)
        timings = {k: round(v, 3) for k, v in result.timings.items()}
        timings["read"] = round(read_seconds, 3)
        timings["write"] = round(time.perf_counter() - start, 3)
        metrics = None
        if truth_dir is not None:
            truth = read_truth(truth_dir)
            metrics = evaluate_result(frame, result, ids.person_ids, truth, engine)
        parameters = {
            "settings": config.model_dump(mode="json"),
            "engine": engine_name or config.engine,
            "model": result.model.parameters(),
            "blocking": result.blocking,
            "accuracy_design": design,
            "report": run_report_data(result, ids.person_ids, config),
            "learned": result.summary(),
            "skipped_blocks": dict(
                zip(
                    ["+".join(r) for r in result.rules],
                    result.pairs.skipped_blocks,
                    strict=True,
                )
            ),
        }
        session.execute(
            insert(linkage_models).values(
                run_id=run_id, settings_hash=settings.model_hash, model=result.model.to_dict()
            )
        )
        session.execute(
            update(linkage_runs)
            .where(linkage_runs.c.run_id == run_id)
            .values(
                status="succeeded",
                finished_at=datetime.now(),
                parameters=parameters,
                timings=timings,
                metrics=metrics,
                n_mentions=len(frame),
                n_persons=n_persons,
                n_review=n_priority,
            )
        )
    summary = {
        **result.summary(),
        "run_id": run_id,
        "mentions": len(frame),
        "persons": n_persons,
        "candidate_pairs": len(result.pairs),
        "review_pairs": n_priority,
        "accuracy_sample_pairs": int(len(sample)),
        "minted": len(ids.minted),
        "merged": sum(1 for c in ids.changes if c[2] == "merge"),
        "split": len({c[0] for c in ids.changes if c[2] == "split"}),
        "timings": timings,
        "engine": engine_name or config.engine,
    }
    if metrics is not None:
        summary["metrics"] = metrics
    return summary


# ------------------------------------------------------------------ truth and evaluation


def read_truth(truth_dir: str | Path) -> pd.Series:
    """record_id -> true person id from the truth folder (any CSV holding both columns)."""
    folder = Path(truth_dir)
    if not folder.is_dir():
        raise IpviError(f"truth folder not found: {folder}")
    # records.csv is the generator's record -> person file; any other CSV with both columns too.
    files = sorted(folder.glob("*.csv"), key=lambda f: (f.name != "records.csv", f.name))
    for file in files:
        header = pd.read_csv(file, nrows=0).columns
        if "record_id" in header and "person_id" in header:
            table = pd.read_csv(file, usecols=["record_id", "person_id"], dtype=str)
            return table.drop_duplicates("record_id").set_index("record_id")["person_id"]
    raise IpviError(f"truth folder {folder}: no CSV with record_id and person_id columns")


def evaluate_result(frame, result: LinkResult, person_ids, truth: pd.Series, engine) -> dict:
    """Metrics of a fresh run against the truth, overall and by race and ethnicity."""
    true_ids = truth.reindex(frame["record_id"]).to_numpy(dtype=object)
    known = pd.notna(true_ids)
    metrics = cluster_metrics(np.asarray(person_ids)[known], true_ids[known])
    n = len(frame)
    metrics.update(
        blocking_metrics(result.pairs.left, result.pairs.right, _codes(true_ids), n * (n - 1) / 2)
    )
    metrics["records_without_truth"] = int((~known).sum())
    groups = _groups(engine, frame["record_id"])
    metrics["by_group"] = metrics_by_group(
        np.asarray(person_ids)[known], true_ids[known], groups[known].reset_index(drop=True), 200
    )
    return metrics


def _codes(true_ids: np.ndarray) -> np.ndarray:
    """Truth labels with unknown records made singletons (they then count no true pair)."""
    codes = pd.factorize(pd.Series(true_ids))[0]
    unknown = codes < 0
    codes[unknown] = codes.max() + 1 + np.arange(unknown.sum())
    return codes


def _groups(engine: Engine, record_ids: pd.Series) -> pd.DataFrame:
    """Race and ethnicity of each record, read for the audit only (never for linking)."""
    with engine.connect() as connection:
        table = pd.read_sql(
            select(mentions.c.record_id, mentions.c.race, mentions.c.ethnicity), connection
        )
    return (
        table.set_index("record_id")
        .reindex(record_ids)[["race", "ethnicity"]]
        .reset_index(drop=True)
    )


def evaluate_crosswalk(engine: Engine, truth_dir: str | Path) -> dict:
    """Metrics of the current crosswalk against the truth (``ipvi link-eval``)."""
    walk = read_crosswalk(engine)
    if walk.empty:
        raise IpviError("the crosswalk is empty: run `ipvi link` first")
    truth = read_truth(truth_dir)
    true_ids = truth.reindex(walk["record_id"]).to_numpy(dtype=object)
    known = pd.notna(true_ids)
    predicted = walk["person_id"].to_numpy(dtype=object)
    metrics = cluster_metrics(predicted[known], true_ids[known])
    groups = _groups(engine, walk["record_id"])[known].reset_index(drop=True)
    metrics["by_group"] = metrics_by_group(predicted[known], true_ids[known], groups, 200)
    return metrics


# ------------------------------------------------------------------ readers for later stages


def read_crosswalk(engine: Engine) -> pd.DataFrame:
    """The current crosswalk: record_id, person_id, link_probability, linkage_run_id."""
    with engine.connect() as connection:
        return pd.read_sql(select(crosswalk).order_by(crosswalk.c.record_id), connection)


def load_link_index(engine: Engine, config: LinkageConfig) -> LinkIndex:
    """A :class:`LinkIndex` over the linked mentions, scored by the model their run stored.

    Nothing is refitted: the crosswalk names its linkage run, whose m / u, prior and term
    frequencies were stored with it (``linkage_models``); the mentions are read in one query
    and standardised column-wise. Mentions ingested after the run are not indexed until the
    next run links them. ``index.run_id_`` is the run the index reflects. A confidential
    address is indexed as missing, so the service's answer for it (its agreement levels and its
    weight alike) is the answer for an unknown address.
    """
    settings = LinkageSettings.from_config(config)
    columns = [
        *_mention_columns(extra=("address_confidential",)),
        crosswalk.c.person_id,
        crosswalk.c.linkage_run_id,
    ]
    query = (
        select(*columns)
        .select_from(
            crosswalk.join(mentions, mentions.c.record_id == crosswalk.c.record_id).outerjoin(
                events, events.c.event_id == mentions.c.event_id
            )
        )
        .order_by(crosswalk.c.record_id)
    )
    with engine.connect() as connection:
        frame = pd.read_sql(query, connection)
        if frame.empty:
            raise IpviError("no linked mentions in the registry: run `ipvi ingest` and `ipvi link`")
        # A run replaces the whole crosswalk, so all rows name one run; the newest wins if not.
        run_id = str(frame["linkage_run_id"].max())
        stored = (
            connection.execute(select(linkage_models).where(linkage_models.c.run_id == run_id))
            .mappings()
            .first()
        )
    if stored is None:
        raise IpviError(f"linkage run {run_id} stored no model: run `ipvi link` again")
    if stored["settings_hash"] != settings.model_hash:
        raise IpviError(
            f"the linkage comparisons changed since run {run_id} (config key "
            "'linkage.comparisons'): run `ipvi link` again"
        )
    model = FellegiSunter.from_dict(settings.comparisons, stored["model"])
    # A confidential address is indexed as missing: no answer can tell it from an unknown one.
    confidential = frame["address_confidential"].fillna(False).astype(bool).to_numpy()
    address = [name for name in ADDRESS_FIELDS if name in frame]
    frame.loc[confidential, address] = None
    frame = registry_keys(frame)
    standardized = Linker(settings).standardize(frame[list(MENTION_LINK_FIELDS + REGISTRY_KEYS)])
    index = LinkIndex(settings, prepare=registry_record_keys)
    return index.fit(standardized, frame["person_id"], model, run_id=run_id)
