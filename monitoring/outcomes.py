"""Issued scores and their matured outcomes, with what staff decided.

:func:`read_issued` reads the scores one model version issued up to the extract date (a
score issued twice, same person, date and version, counts once). :func:`label_issued`
labels them with the one label definition (:func:`training.labels.label_index`) among the
persons' offences (:func:`offences_of`: the scored persons' own histories in
:func:`matured_outcomes`, the whole registry's in :func:`registry_offences`): the issue date is
the decision date T, and a score's outcome is known once its follow-up window and recording lag
have passed by the extract date. :func:`join_decisions` adds the staff decisions taken while
the window ran: notification, call-in, override and its reason.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session

from ipvi.columns import Columns
from ipvi.config import Config
from ipvi.db import make_engine
from ipvi.errors import IpviError
from ipvi.tables.monitoring import issued_scores
from ipvi.tables.serving import decisions
from training.data import OFFENCE_MENTIONS, person_history, read_history
from training.labels import LABEL_COLUMNS, first_reoffence, label_index
from training.offences import assign_offences, person_events

NO_ISSUED = (
    "no issued scores up to {date}: the service (/v1/score) and `ipvi score --all` write them; "
    "there is nothing to monitor yet"
)
NEVER_SERVED = (
    "model version {version!r} never served: no issued score up to {date} names it "
    "(versions that did: {served})"
)
NOT_REBUILT = (
    "{n} issued score(s) of model version {version} lack the model input(s) {missing}: their "
    "features cannot be rebuilt, so drift cannot be measured (were they issued by another "
    "version's code?)"
)
NO_MATURED = (
    "no issued score of model version {version} has a matured outcome by {date}: the first "
    "window ends on {first} (follow-up {followup} days after the score, plus {recording} days "
    "for records to arrive); run `ipvi monitor` again after that date"
)
CALL_IN = "call_in"
# The issued columns the monitor and the re-audit read (not ids, lethality flags or source).
ISSUED_READ = (
    "person_id",
    "history",
    "as_of",
    "index_event_id",
    "probability",
    "band",
    "band_use",
    "tier",
    "provisional",
    "scorecard_points",
    "features",
    "issued_at",
)


def served_version(
    session: Session, *, until: pd.Timestamp, model_version: str | None = None
) -> str:
    """``model_version``, checked to have issued a score with ``as_of`` up to ``until``; by
    default the version of the latest such score.

    Raises
    ------
    IpviError
        When nothing was issued, or the version never served.
    """
    served = dict(
        session.execute(
            select(issued_scores.c.model_version, func.max(issued_scores.c.as_of))
            .where(issued_scores.c.as_of <= until.to_pydatetime())
            .group_by(issued_scores.c.model_version)
        ).all()
    )
    if not served:
        raise IpviError(NO_ISSUED.format(date=until.date()))
    if model_version is None:
        return max(served, key=lambda v: (served[v], v))
    if str(model_version) not in served:
        raise IpviError(
            NEVER_SERVED.format(
                version=str(model_version), date=until.date(), served=", ".join(sorted(served))
            )
        )
    return str(model_version)


def read_issued(
    session: Session, *, until: pd.Timestamp, model_version: str | None = None
) -> tuple[pd.DataFrame, str]:
    """The scores ``model_version`` (:func:`served_version`) issued with ``as_of`` up to
    ``until``: for each offence (person and index event), the first score issued for it, and
    the number of later scores of the same offence.

    A person is scored again and again while the same offence is their latest (every tier
    list re-scores everyone); counting each offence once, when it was first scored, keeps
    one outcome per offence and compares like with like against training, whose rows are
    offences scored at their decision date.
    """
    model_version = served_version(session, until=until, model_version=model_version)
    return first_scores(session, until=until, model_version=model_version), model_version


def first_scores(session: Session, *, until: pd.Timestamp, model_version: str) -> pd.DataFrame:
    """:func:`read_issued`'s scores of a version :func:`served_version` has checked."""
    until_dt = until.to_pydatetime()
    # The scores of each offence's earliest as-of date are chosen in the database, so only
    # those rows, and their stored inputs, are read: every list re-scores every offence, and
    # a deployment's later scores outnumber them. The offences come from the index on
    # (model version, person, index event, as-of date) alone, in its order, and each first
    # score is then found through it: the version is a join column, not a filter, so the
    # database starts from the offences rather than from every score of the version.
    offence = [
        issued_scores.c.model_version,
        issued_scores.c.person_id,
        issued_scores.c.index_event_id,
    ]
    firsts = (
        select(
            *offence,
            func.min(issued_scores.c.as_of).label("first_as_of"),
            func.count().label("times_scored"),
        )
        .where(issued_scores.c.model_version == str(model_version))
        .where(issued_scores.c.as_of <= until_dt)
        .group_by(*offence)
        .subquery()
    )
    query = select(
        *(issued_scores.c[name] for name in ("issue_id", *ISSUED_READ)),
        firsts.c.times_scored,
    ).join(
        firsts,
        and_(
            *(column == firsts.c[column.name] for column in offence),
            issued_scores.c.as_of == firsts.c.first_as_of,
        ),
    )
    result = session.execute(query)
    frame = pd.DataFrame(result.fetchall(), columns=list(result.keys()))
    frame["as_of"] = pd.to_datetime(frame["as_of"])
    frame["times_scored"] = frame["times_scored"].astype(int)
    # Scored twice on its first date: the earliest issue (then issue id) is the first score.
    frame = frame.sort_values(["as_of", "issued_at", "issue_id"], kind="stable")
    frame = frame.drop_duplicates(["person_id", "index_event_id"]).drop(columns="issue_id")
    frame = frame.sort_values(["as_of", "issued_at", "person_id", "index_event_id"])
    return frame.reset_index(drop=True)


def feature_frame(issued: pd.DataFrame, features: list[str], model_version: str) -> pd.DataFrame:
    """The model inputs of each issued score, one column per feature (NaN: unknown).

    Raises
    ------
    IpviError
        When a score's stored inputs lack one of ``features`` (they cannot be rebuilt).
    """
    wanted = set(features)
    stored = issued["features"].tolist()
    lacking = [row for row in stored if not isinstance(row, dict) or not wanted <= row.keys()]
    if lacking:
        missing = set().union(*(wanted - set(row or {}) for row in lacking))
        raise IpviError(
            NOT_REBUILT.format(
                n=len(lacking), version=model_version, missing=", ".join(sorted(missing))
            )
        )
    table = pd.DataFrame.from_records(stored, index=issued.index, columns=features)
    return table.astype(float)


@dataclass
class Outcomes:
    """Issued scores with their outcome where it has matured.

    ``frame`` holds every issued registry score with ``observed`` (its window has closed),
    ``label`` (1: a new recorded IPV offence, on observed rows), ``window_end``, ``horizon``
    and ``reoffence_at`` (the first new offence recorded so far, inside the window);
    ``counts`` says how many scores were left out and why.
    """

    frame: pd.DataFrame
    counts: dict[str, int]

    @property
    def matured(self) -> pd.DataFrame:
        return self.frame[self.frame["observed"]].reset_index(drop=True)


def offences_of(history: tuple[Columns, Columns, Columns], config: Config) -> pd.DataFrame:
    """Each person's events in ``history`` (events, mentions, crosswalk) with their offence
    (:func:`training.offences.assign_offences`): the columns the label reads, and the event id
    an issued score's index event is found by."""
    by_person = assign_offences(
        person_events(*history), window_days=config.training.offence_window_days
    )
    return pd.DataFrame({name: by_person[name] for name in ("event_id", *LABEL_COLUMNS)})


def registry_offences(url: str, config: Config) -> pd.DataFrame:
    """:func:`offences_of` every person of the registry at ``url``, its tables read whole.

    ``ipvi monitor`` runs it in a second process while it reads the issued scores: the two
    are independent, and each takes about a third of the monitor's time at 100,000 persons.
    """
    engine = make_engine(url)
    try:
        history = read_history(engine, OFFENCE_MENTIONS)
    finally:
        engine.dispose()
    return offences_of(history, config)


def matured_outcomes(
    engine, issued: pd.DataFrame, config: Config, *, extract_date: pd.Timestamp
) -> Outcomes:
    """:func:`label_issued` with the offences of the issued scores' persons."""
    registry = issued[issued["history"] == "registry"]
    persons = sorted(registry["person_id"].unique().tolist())
    with engine.connect() as connection:
        history = person_history(connection, persons, mention_columns=OFFENCE_MENTIONS)
    return label_issued(issued, offences_of(history, config), config, extract_date=extract_date)


def label_issued(
    issued: pd.DataFrame,
    offences: pd.DataFrame,
    config: Config,
    *,
    extract_date: pd.Timestamp,
) -> Outcomes:
    """Label each issued registry score whose window has closed by ``extract_date``.

    The score's index event is found among the person's ``offences`` (:func:`offences_of`:
    the registry as it is now); its label is :func:`training.labels.label_index` with T = the
    score's as-of date. Scores of inline histories (the caller's ids, not the registry's) and
    scores whose person or index event the registry no longer holds (purged, merged, split)
    are counted, not labelled.
    """
    training = config.training
    registry = issued[issued["history"] == "registry"]
    counts = {
        "issued": int(len(issued)),
        "inline_history": int(len(issued) - len(registry)),
    }
    index = registry.merge(  # offences hold one row per person and event
        offences[["person_id", "event_id", "offence_id"]].rename(
            columns={"event_id": "index_event_id"}
        ),
        on=["person_id", "index_event_id"],
        how="inner",
    )
    counts["index_event_not_in_registry"] = int(len(registry) - len(index))
    if index.empty:
        empty = index.assign(
            observed=False, label=0, window_end=pd.NaT, horizon=pd.NaT, reoffence_at=pd.NaT
        )
        return Outcomes(empty, {**counts, "not_matured": 0, "matured": 0})
    labelled = label_index(
        index.reset_index(drop=True),
        offences,
        extract_date=extract_date,
        followup_days=training.followup_days,
        recording_days=training.recording_days,
    )
    labelled["reoffence_at"] = first_reoffence(labelled, offences)
    counts["not_matured"] = int((~labelled["observed"]).sum())
    counts["matured"] = int(labelled["observed"].sum())
    return Outcomes(labelled, counts)


def no_matured_message(outcomes: Outcomes, config: Config, version: str, date) -> str:
    """The clear error when no outcome has matured: when the first one will."""
    horizons = outcomes.frame["horizon"] if "horizon" in outcomes.frame else pd.Series([])
    first = horizons.min().date() if len(horizons) else "an unknown date (no labelled score)"
    return NO_MATURED.format(
        version=version,
        date=pd.Timestamp(date).date(),
        first=first,
        followup=config.training.followup_days,
        recording=config.training.recording_days,
    )


def read_decisions(session: Session, persons: list[str]) -> pd.DataFrame:
    """Staff decisions of ``persons`` (``decisions``, written by the service)."""
    columns = ["person_id", "action", "tier_decision", "tier", "reason", "decided_at"]
    rows = []
    for start in range(0, len(persons), 500):
        rows += session.execute(
            select(*(decisions.c[name] for name in columns)).where(
                decisions.c.person_id.in_(persons[start : start + 500])
            )
        ).all()
    frame = pd.DataFrame(rows, columns=columns)
    frame["decided_at"] = pd.to_datetime(frame["decided_at"])
    return frame


def join_decisions(frame: pd.DataFrame, staff: pd.DataFrame, notifying: set[str]) -> pd.DataFrame:
    """Each score with the decisions taken on it: its person's from its date until the
    person's next score or its window's end, whichever comes first.

    A decision taken at a later score is that score's: counted here too, a notification that
    follows a recorded re-offence would mark the earlier score notified, and re-offended, and
    make notification look harmful.

    Adds ``notified`` (an action that notifies the offender), ``called_in``, ``overridden``
    (the tier was overridden) and ``override_reason`` (the first override's reason) and
    ``decided`` (any decision at all); ``notified_before`` marks a person notified before the
    score's date (neither a first notification nor a not-yet-notified comparison).
    """
    out = frame.assign(
        decided=False,
        notified=False,
        called_in=False,
        overridden=False,
        override_reason=None,
        notified_before=False,
    )
    if staff.empty or out.empty:
        return out
    rows = out[["person_id", "as_of", "window_end"]].assign(row=np.arange(len(out)))
    scored = rows[["person_id", "as_of"]].drop_duplicates().sort_values(["person_id", "as_of"])
    scored["next_as_of"] = scored.groupby("person_id")["as_of"].shift(-1)
    rows = rows.merge(scored, on=["person_id", "as_of"], how="left")
    rows["until"] = rows[["window_end", "next_as_of"]].min(axis=1)
    joined = rows.merge(staff, on="person_id")
    earlier = joined[(joined["decided_at"] < joined["as_of"]) & joined["action"].isin(notifying)]
    out.loc[earlier["row"].unique(), "notified_before"] = True
    inside = joined[
        (joined["decided_at"] >= joined["as_of"]) & (joined["decided_at"] < joined["until"])
    ].sort_values(["row", "decided_at"], kind="stable")
    grouped = inside.groupby("row")
    out.loc[grouped.size().index, "decided"] = True
    out.loc[inside.loc[inside["action"].isin(notifying), "row"].unique(), "notified"] = True
    out.loc[inside.loc[inside["action"] == CALL_IN, "row"].unique(), "called_in"] = True
    overrides = inside[inside["tier_decision"] == "overridden"].drop_duplicates("row")
    out.loc[overrides["row"].to_numpy(), "overridden"] = True
    out.loc[overrides["row"].to_numpy(), "override_reason"] = overrides["reason"].to_numpy()
    return out
