"""What a clerical decision would do to the rule tiers of the persons it touches.

The review page asks, for a pair across two persons, "if these records are one person, what is
the merged person's tier?" and, for a pair inside one person, "if record B is not this person,
what are the tiers of the rest and of B's side?". Both are answered by re-tiering the persons'
own registry histories (:func:`training.data.person_history`) with the crosswalk changed as the
decision would change it, under the tier rules of the served model version. A split is shown
as record B leaving the person: the next ``ipvi link`` may divide the other records
differently, so this is what the decision at least does, not a forecast of the whole run.
"""

from __future__ import annotations

import numpy as np

from ipvi.errors import IpviError
from training.data import person_history

SPLIT_PART = "(record B's side)"


def _tiers(scorer, frames, crosswalk_ids, as_of, persons) -> dict[str, str | None]:
    events, mentions, crosswalk = frames
    tiered = scorer.tier_many(
        events,
        mentions,
        crosswalk.assign(person_id=crosswalk_ids),
        as_of=as_of,
        person_ids=persons,
    )
    found = dict(zip(list(tiered["person_id"]), list(tiered["tier"]), strict=True))
    return {person: found.get(person) for person in persons}


def tier_impact(connection, scorer, change: dict, record_b: str, as_of) -> dict:
    """Current tiers of the persons a pair touches and their tiers after the decision.

    Parameters
    ----------
    connection : SQLAlchemy connection
    scorer : training.scoring.RiskScorer
        Its bundle's tier rules are applied.
    change : dict
        ``linkage.review_queue.pair_view(...)["change"]``: kind ``merge`` (two persons) or
        ``split`` (one person).
    record_b : str
        The pair's second record (the one that leaves on a split).

    Returns
    -------
    dict
        ``now`` (person -> tier, None without an IPV offence as of ``as_of``), ``after``
        (person -> tier after the decision) and ``changes`` (bool).
    """
    persons = list(change.get("persons") or [])
    if change.get("kind") not in ("merge", "split") or not persons:
        return {"now": {}, "after": {}, "changes": False}
    try:
        frames = person_history(connection, persons)
    except IpviError:
        return {"now": {}, "after": {}, "changes": False}
    ids = np.asarray(frames[2]["person_id"], dtype=object)
    now = _tiers(scorer, frames, ids, as_of, persons)
    if change["kind"] == "merge":
        merged = np.where(ids == persons[1], persons[0], ids)
        after = _tiers(scorer, frames, merged, as_of, [persons[0]])
    else:
        records = np.asarray(frames[2]["record_id"], dtype=object)
        parted = np.where(records == record_b, SPLIT_PART, ids)
        after = _tiers(scorer, frames, parted, as_of, [persons[0], SPLIT_PART])
    before = {tier for tier in now.values() if tier}
    return {
        "now": now,
        "after": after,
        "changes": {tier for tier in after.values() if tier} != before,
    }
