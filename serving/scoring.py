"""Requests to canonical frames and scores back to responses, around :mod:`training.scoring`.

The model, the tier rules and the band cut-points all come from the served model version
(:class:`training.scoring.RiskScorer`); this module only translates. An inline history becomes
canonical ``events``, ``mentions`` and a ``crosswalk`` (the caller vouches for the identity, so
links have probability 1); registry persons are read with :func:`training.data.person_history`.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from itertools import repeat

import numpy as np
import pandas as pd

from ipvi.arrays import object_array
from ipvi.columns import Columns
from ipvi.errors import IpviError
from ipvi.schema import EVENT_COLUMNS, EVENT_FLAGS, MENTION_COLUMNS
from linkage.person_ids import SPLIT, UNKNOWN, resolve_person_ids
from serving.http import ApiError
from serving.schemas import (
    SCORE_NOTE,
    History,
    HistoryEvent,
    NotAssessed,
    ScoreResult,
    TierResult,
)

FUTURE_AS_OF = "as_of {as_of} is in the future: a score can only use what is known now"
NO_OFFENCE = "no IPV offence known as of this date"
DOB_AFTER_AS_OF = "dob is after as_of"
AGE_OUT_OF_RANGE = "dob gives an age outside {low}-{high} years at as_of"
NOT_PSEUDONYMOUS = (
    "person_id must be a pseudonymous id matching serving.inline_person_id_pattern {pattern} "
    "(never a name or a date of birth)"
)


def utc_naive(value: datetime | pd.Timestamp) -> pd.Timestamp:
    """A timestamp in naive UTC, the registry's convention."""
    stamp = pd.Timestamp(value)
    if stamp.tzinfo is not None:
        stamp = stamp.tz_convert("UTC").tz_localize(None)
    return stamp


def resolve_as_of(as_of: datetime | None, now: datetime | None = None) -> pd.Timestamp:
    """The decision date: ``as_of`` or now; a future date is a 422 naming ``as_of``."""
    current = utc_naive(now or datetime.now(UTC))
    if as_of is None:
        return current
    stamp = utc_naive(as_of)
    if stamp > current:
        raise ApiError(422, FUTURE_AS_OF.format(as_of=stamp.isoformat()), field="as_of")
    return stamp


def check_histories(
    histories: Sequence[History],
    as_of: pd.Timestamp,
    *,
    id_pattern: str,
    min_age: int,
    max_age: int,
) -> None:
    """Refuse (422 naming the field) an inline person id that does not look pseudonymous, and
    a date of birth after ``as_of`` or giving an age outside ``min_age``-``max_age`` there
    (the bounds ``ipvi ingest`` holds registry dates of birth to). Messages never repeat the
    values."""
    pattern = re.compile(id_pattern)
    # Dates of birth as given (aware, or naive UTC) against the as-of date, without a
    # pandas timestamp per person.
    as_of_utc = as_of.to_pydatetime().replace(tzinfo=UTC)
    for position, history in enumerate(histories):
        if not pattern.fullmatch(history.person_id):
            raise ApiError(
                422,
                NOT_PSEUDONYMOUS.format(pattern=id_pattern),
                field=f"histories.{position}.person_id",
            )
        dob = history.dob
        if dob is None:
            continue
        age = (as_of_utc - (dob if dob.tzinfo else dob.replace(tzinfo=UTC))).days / 365.25
        if age < 0:
            raise ApiError(422, DOB_AFTER_AS_OF, field=f"histories.{position}.dob")
        if not min_age <= age <= max_age:
            raise ApiError(
                422,
                AGE_OUT_OF_RANGE.format(low=min_age, high=max_age),
                field=f"histories.{position}.dob",
            )


def check_batch(size: int, limit: int, field: str) -> None:
    """Refuse more than ``serving.max_batch`` people in one request."""
    if size > limit:
        raise ApiError(422, f"{size} people in one request; at most {limit}", field=field)


def utc_naive_array(values: Sequence[datetime | None]) -> np.ndarray:
    """Datetimes (aware, or naive in UTC) as naive UTC ``datetime64[ns]``, None as NaT."""
    naive = [
        value
        if value is None or value.tzinfo is None
        else value.astimezone(UTC).replace(tzinfo=None)
        for value in values
    ]
    return np.array(naive, dtype="datetime64[us]").astype("datetime64[ns]")


def history_frames(histories: Sequence[History]) -> tuple[Columns, Columns, Columns]:
    """Canonical ``events``, ``mentions`` and ``crosswalk`` of inline histories.

    The caller's event ids are the subject's record ids, so tier reasons and reason codes cite
    them. A ``victim_id`` becomes a victim mention linked to that id: the same id is the same
    victim, and a victim id that is also a history's person id is that person (dual arrests).
    """
    _check_unique([h.person_id for h in histories], "histories.{}.person_id", "person_id")
    sizes = [len(history.events) for history in histories]
    owner = np.repeat(np.arange(len(histories)), sizes)
    first = np.cumsum(sizes) - sizes  # each history's first event in the flat list
    flat: list[HistoryEvent] = [event for history in histories for event in history.events]
    event_ids = [event.event_id for event in flat]
    _check_unique(
        event_ids,
        "histories.{}.events.{}.event_id",
        "event_id",
        lambda k: (int(owner[k]), k - int(first[owner[k]])),
    )
    names = [name for name in EVENT_COLUMNS if name != "victim_record_id"]
    typed = {
        name: object_array([getattr(event, name) for event in flat])
        for name in [*names, "role", "victim_id"]
    }
    for flag in EVENT_FLAGS:
        typed[flag] = typed[flag].astype(bool)
    typed["offense_date"] = utc_naive_array(typed["offense_date"])
    typed["recorded_at"] = utc_naive_array(typed["recorded_at"])
    victims = typed.pop("victim_id")
    named = np.array([k for k, victim in enumerate(victims.tolist()) if victim is not None], int)
    victim_records = np.array([f"{event_ids[k]}#victim" for k in named], dtype=object)
    typed["victim_record_id"] = np.full(len(flat), None, dtype=object)
    typed["victim_record_id"][named] = victim_records
    events = Columns({name: typed[name] for name in EVENT_COLUMNS})

    ids = np.array(event_ids, dtype=object)
    # A date of birth is a day: the UTC date of the given time.
    dobs = utc_naive_array([h.dob for h in histories]).astype("datetime64[D]")
    subject = {
        "record_id": ids,
        "agency": typed["agency"],
        "dob": dobs[owner].astype("datetime64[ns]"),
        "event_id": ids,
        "role": typed["role"],
    }
    victim = {
        "record_id": victim_records,
        "agency": typed["agency"][named],
        "dob": np.full(len(named), np.datetime64("NaT"), dtype="datetime64[ns]"),
        "event_id": ids[named],
        "role": np.full(len(named), "victim", dtype=object),
    }
    n_mentions = len(flat) + len(named)
    # Identifiers a history does not carry: one array of None read by every such column.
    absent = np.full(n_mentions, None, dtype=object)
    mentions_frame = Columns(
        {
            name: np.concatenate([subject[name], victim[name]]) if name in subject else absent
            for name in MENTION_COLUMNS
        }
    )
    persons = np.array([histories[i].person_id for i in owner], dtype=object)
    crosswalk = Columns(
        {
            "record_id": mentions_frame["record_id"],
            "person_id": np.concatenate([persons, victims[named]]),
            "link_probability": np.ones(n_mentions),
            "linkage_run_id": np.full(n_mentions, None, dtype=object),
        }
    )
    return events, mentions_frame, crosswalk


def _check_unique(values: list[str], field: str, what: str, position=None) -> None:
    """A 422 naming the first repeated value's field (``field`` formatted with its position,
    ``position(k)`` of the k-th value when given, else ``(k,)``)."""
    if len(set(values)) == len(values):
        return
    seen: set[str] = set()
    for k, value in enumerate(values):
        if value in seen:
            where = position(k) if position is not None else (k,)
            raise ApiError(422, f"{what} repeated in this request", field=field.format(*where))
        seen.add(value)


def score_id(person_id: str, as_of: datetime, model_version: str) -> str:
    """An id that is the same whenever (person, as-of date, model version) is."""
    key = f"{person_id}|{as_of.isoformat()}|{model_version}"
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]


def not_assessed(requested: Sequence[str], assessed: set[str]) -> list[NotAssessed]:
    """Requested people with no result (no IPV offence known as of the date)."""
    return [NotAssessed(person_id=p, reason=NO_OFFENCE) for p in requested if p not in assessed]


def score_results(
    scored: Columns,
    *,
    requested: dict[str, tuple[str, str]],
    audit: dict[str, str | None],
) -> list[dict]:
    """One :class:`~serving.schemas.ScoreResult` per scored row, as a JSON-ready dict.

    ``requested`` maps each scored person id to (the id the caller sent, its id status).
    """
    values = scored.lists()
    # Ids from the registry's naive UTC as-of, as ever.
    ids = list(map(score_id, values["person_id"], values["as_of"], values["model_version"]))
    return _results(values, ScoreResult, requested, score_id=ids, note=SCORE_NOTE, **audit)


def tier_results(
    tiered: Columns, *, requested: dict[str, tuple[str, str]], model_version: str
) -> list[dict]:
    """One :class:`~serving.schemas.TierResult` per tiered row, as a JSON-ready dict."""
    return _results(tiered.lists(), TierResult, requested, model_version=model_version)


def _results(values: dict[str, list], schema, requested, **given) -> list[dict]:
    """Rows with the fields of ``schema`` in its order, from ``values`` (a table's columns as
    lists; others dropped) and ``given`` (a list per row, or one value for every row).

    Plain dicts, not validated models: the rows already hold the schema's types (tests
    validate answers against the schema), and a batch would otherwise build a model per
    row. A field in neither takes its schema default. Built a column at a time: the
    rows share most values.
    """
    sent = [requested[person] for person in values["person_id"]]
    columns = {
        **values,
        **given,
        "requested_id": [requested_id for requested_id, _ in sent],
        "id_status": [status for _, status in sent],
        # Answers carry explicit UTC offsets (RFC 3339); the registry's dates are naive UTC.
        "as_of": _with_utc(values["as_of"]),
    }
    fields = list(schema.model_fields)
    ordered = [
        columns[name]
        if isinstance(columns.get(name), list)
        else repeat(columns[name] if name in columns else schema.model_fields[name].default)
        for name in fields
    ]
    # zip stops at the per-row lists (person ids, at least), not at the repeated constants.
    return [dict(zip(fields, row, strict=True)) for row in zip(*ordered, strict=False)]


def _with_utc(times: list[datetime]) -> list[datetime]:
    """Naive UTC datetimes as aware ones, each distinct time converted once."""
    aware = {when: when.replace(tzinfo=UTC) for when in set(times)}
    return [aware[when] for when in times]


def resolve_persons(session, person_ids: Sequence[str]) -> dict[str, tuple[str, str]]:
    """Map each requested id to (the current person id, ``current`` or ``merged``), by
    :func:`linkage.person_ids.resolve_person_ids`: a merged id answers for its survivor; a
    split id is a 409 listing the new ids; an id the registry never had is a 404."""
    resolutions = resolve_person_ids(session, person_ids)
    resolved: dict[str, tuple[str, str]] = {}
    for position, requested in enumerate(person_ids):
        found = resolutions[requested]
        if found.status == UNKNOWN:
            raise ApiError(404, "unknown person id", field=f"person_ids.{position}")
        if found.status == SPLIT:
            raise ApiError(
                409,
                "this person id was split; ask again with one of the new ids",
                field=f"person_ids.{position}",
                extra={"successor_ids": list(found.successor_ids)},
            )
        resolved[requested] = (found.person_id, found.status)
    return resolved


def registry_histories(session, person_ids: Sequence[str]):
    """The requested ids resolved (:func:`resolve_persons`) and the current persons' histories
    (:func:`training.data.person_history`), in one transaction."""
    from training.data import person_history

    resolved = resolve_persons(session, person_ids)
    current = list(dict.fromkeys(person for person, _ in resolved.values()))
    return resolved, person_history(session.connection(), current)


async def assess(runtime, request, *, with_model: bool):
    """Tier (and, ``with_model``, score) the people of a request.

    Inline histories need no database; person ids are resolved (merged ids answer for their
    survivor, split ids are a 409) and read from the registry through the runtime's guard, so
    an unreachable database is a quick 503.

    Returns
    -------
    (list of results, list of NotAssessed, list of person ids)
        The person ids are those the audit log records.
    """
    as_of = resolve_as_of(request.as_of)
    if (request.histories is None) == (request.person_ids is None):
        raise ApiError(422, "send either histories or person_ids (exactly one)", field="histories")
    limit = runtime.settings.max_batch
    if request.histories is not None:
        check_batch(len(request.histories), limit, "histories")
        check_histories(
            request.histories,
            as_of,
            id_pattern=runtime.settings.inline_person_id_pattern,
            min_age=runtime.config.ingest.min_age_years,
            max_age=runtime.config.ingest.max_age_years,
        )
        frames = history_frames(request.histories)
        requested = {h.person_id: (h.person_id, "inline") for h in request.histories}
        asked = list(requested)
    else:
        check_batch(len(request.person_ids), limit, "person_ids")
        try:
            resolved, frames = await runtime.guard.transaction(
                registry_histories, request.person_ids
            )
        except IpviError as error:
            raise ApiError(404, str(error), field="person_ids") from None
        requested = {current: (asked, status) for asked, (current, status) in resolved.items()}
        asked = list(request.person_ids)
    scorer = runtime.scorer
    if with_model:
        scored = scorer.score_many(*frames, as_of=as_of, person_ids=list(requested))
        results = (
            score_results(scored, requested=requested, audit=runtime.audit) if len(scored) else []
        )
    else:
        tiered = scorer.tier_many(*frames, as_of=as_of, person_ids=list(requested))
        results = (
            tier_results(tiered, requested=requested, model_version=scorer.model_version)
            if len(tiered)
            else []
        )
    done = {requested[result["person_id"]][0] for result in results}
    return results, not_assessed(asked, done), sorted(requested)
