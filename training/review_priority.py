"""Review priority: put first the uncertain record pairs whose decision could change a tier.

Linkage's clerical review queue (``review_pairs``) has a nullable ``priority``. After scoring,
a pending pair touching a record that a tier reason rests on gets a priority: the tier's rank
(A=4 .. D=1), plus 0.5 when that tier is provisional. A pair whose two records lie in different
persons could merge their histories (raising a tier); a pair inside one person could split it
(lowering one). Either way the decision matters more the higher the tier it touches, so
``ipvi review export`` (which sorts by priority) lists those pairs first. This is a screen, not
a recomputation: a pair touching no cited record keeps its priority.
"""

from __future__ import annotations

import pandas as pd
from sqlalchemy import MetaData, Table, bindparam, inspect, select, update

from training.tiers import TIER_ORDINAL


def cited_records(scored: pd.DataFrame) -> pd.DataFrame:
    """``record_id`` -> highest ``priority`` among the tier reasons citing it (sorted by id)."""
    rank = scored["tier"].map(TIER_ORDINAL) + 0.5 * scored["provisional"].astype(float)
    # A dict over the citations: a person's reasons cite a few records each, so a frame
    # exploded to one row per citation would be mostly overhead for a whole registry.
    best: dict[str, float] = {}
    for reasons, priority in zip(scored["tier_reasons"], rank.tolist(), strict=True):
        for reason in reasons:
            for record in reason["record_ids"]:
                if best.get(record, -1.0) < priority:
                    best[record] = priority
    ids = sorted(best)
    return pd.DataFrame({"record_id": ids, "priority": [best[i] for i in ids]})


def prioritise_review_pairs(session, scored: pd.DataFrame) -> int:
    """Set ``priority`` on pending review pairs touching cited records; returns how many."""
    bind = session.get_bind()
    if scored.empty or not inspect(bind).has_table("review_pairs"):
        return 0
    pairs_t = Table("review_pairs", MetaData(), autoload_with=bind)
    pending = pd.DataFrame(
        session.execute(
            select(pairs_t.c.pair_id, pairs_t.c.record_id_a, pairs_t.c.record_id_b).where(
                pairs_t.c.status == "pending"
            )
        ).fetchall(),
        columns=["pair_id", "record_id_a", "record_id_b"],
    )
    if pending.empty:
        return 0
    cited = cited_records(scored).set_index("record_id")["priority"]
    priority = pd.concat(
        [pending["record_id_a"].map(cited), pending["record_id_b"].map(cited)], axis=1
    ).max(axis=1)
    chosen = pending.assign(priority=priority).dropna(subset=["priority"])
    if chosen.empty:
        return 0
    # One statement run for every pair (executemany), not one statement built per pair.
    session.execute(
        update(pairs_t)
        .where(pairs_t.c.pair_id == bindparam("chosen_pair"))
        .values(priority=bindparam("chosen_priority")),
        [
            {"chosen_pair": pair_id, "chosen_priority": float(value)}
            for pair_id, value in zip(chosen["pair_id"], chosen["priority"], strict=True)
        ],
    )
    return len(chosen)
