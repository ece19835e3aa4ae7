"""Clerical review one pair at a time: queues, leases, decisions, what a reviewer sees."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest
from sqlalchemy import select, update

from ipvi.config import load_config
from ipvi.db import open_registry, session_scope
from ipvi.tables.ingest import mentions
from ipvi.tables.linkage import review_leases, review_pairs, review_sample
from linkage.review import decided_pairs, import_decisions
from linkage.review_queue import (
    ALREADY_DECIDED,
    NO_LEASE,
    REMOVED,
    WITHHELD,
    ReviewConflict,
    decide,
    lease_of,
    next_pair,
    pair_view,
    progress,
)
from linkage.run import link_registry, read_crosswalk
from synth.mentions import generate_mentions
from tests.test_linkage_registry import insert_mentions

CONFIG = load_config().linkage
LEASE = 600


@pytest.fixture
def linked(db_url):
    engine = open_registry(db_url)
    frame, _ = generate_mentions(1500, seed=11)
    insert_mentions(engine, frame, confidential=set(frame["record_id"][:300]))
    link_registry(engine, CONFIG)
    yield engine
    engine.dispose()


def _row(engine, pair):
    with engine.connect() as connection:
        return (
            connection.execute(select(review_pairs).where(review_pairs.c.pair_id == pair))
            .mappings()
            .one()
        )


def test_two_reviewers_never_hold_the_same_pair_and_a_held_pair_comes_back(linked):
    with session_scope(linked) as session:
        first = next_pair(session, holder="alice", queue="priority", lease_seconds=LEASE)
        second = next_pair(session, holder="bob", queue="priority", lease_seconds=LEASE)
        again = next_pair(session, holder="alice", queue="priority", lease_seconds=LEASE)
    assert first.pair_id != second.pair_id
    assert again.pair_id == first.pair_id  # reloading shows the pair still held
    with session_scope(linked) as session:
        # alice's lease expires: bob may take it; alice's late decision is then refused
        session.execute(
            update(review_leases)
            .where(review_leases.c.pair_id == first.pair_id)
            .values(expires_at=dt.datetime(2000, 1, 1))
        )
        decide(session, pair_id=second.pair_id, holder="bob", action="skip")
        taken = next_pair(session, holder="bob", queue="priority", lease_seconds=LEASE)
    assert taken.pair_id == first.pair_id
    with session_scope(linked) as session, pytest.raises(ReviewConflict, match="another reviewer"):
        decide(session, pair_id=first.pair_id, holder="alice", action="match")
    assert _row(linked, first.pair_id)["status"] == "pending"  # nothing recorded


def test_skip_records_nothing_and_keeps_the_pair_from_the_skipper_only(linked):
    with session_scope(linked) as session:
        lease = next_pair(session, holder="alice", queue="priority", lease_seconds=LEASE)
        outcome = decide(session, pair_id=lease.pair_id, holder="alice", action="skip")
        following = next_pair(session, holder="alice", queue="priority", lease_seconds=LEASE)
        other = next_pair(session, holder="bob", queue="priority", lease_seconds=LEASE)
    assert outcome["recorded"] is False
    assert _row(linked, lease.pair_id)["status"] == "pending"
    assert following.pair_id != lease.pair_id
    assert other.pair_id == lease.pair_id  # the first pair in the queue, free for bob


def test_a_decision_is_stored_as_review_import_stores_it_and_binds_the_next_run(linked, tmp_path):
    walk = read_crosswalk(linked).set_index("record_id")["person_id"]
    with session_scope(linked) as session:
        leases = [
            next_pair(session, holder="alice", queue="priority", lease_seconds=LEASE)
            for _ in range(2)
        ]
        # one more pair, decided through the CSV import, for comparison
        imported = next_pair(session, holder="carol", queue="priority", lease_seconds=LEASE)
    assert len({lease.pair_id for lease in leases}) == 1  # the held pair comes back
    pair = leases[0].pair_id
    a, b = _row(linked, pair)["record_id_a"], _row(linked, pair)["record_id_b"]
    verdict = "non-match" if walk[a] == walk[b] else "match"
    with session_scope(linked) as session:
        result = decide(
            session, pair_id=pair, holder="alice", action=verdict, note="same tattoo noted"
        )
    assert result["recorded"] is True
    csv = tmp_path / "decisions.csv"
    pd.DataFrame(
        [
            {
                "pair_id": imported.pair_id,
                "decision": "unsure",
                "reviewer": "carol",
                "decided_at": "2026-11-26T14:30:00",
            }
        ]
    ).to_csv(csv, index=False)
    with session_scope(linked) as session:
        import_decisions(session, csv)
    web, via_csv = _row(linked, pair), _row(linked, imported.pair_id)
    assert (web["status"], web["decision"], web["reviewer"]) == ("decided", verdict, "alice")
    assert via_csv["status"] == "decided"
    assert type(web["decided_at"]) is type(via_csv["decided_at"]) is dt.datetime
    assert web["note"] == "same tattoo noted"
    with session_scope(linked) as session:
        assert pair in {pair_id_of(r) for r in decided_pairs(session).itertuples(index=False)}
        # twice: refused with who decided it, and nothing recorded twice
        with pytest.raises(ReviewConflict) as refused:
            decide(session, pair_id=pair, holder="alice", action=verdict)
    assert str(refused.value) == ALREADY_DECIDED.format(
        pair_id=pair,
        decision=verdict,
        reviewer="alice",
        when=f"{web['decided_at']:%Y-%m-%d %H:%M} UTC",
    )
    link_registry(linked, CONFIG)
    after = read_crosswalk(linked).set_index("record_id")["person_id"]
    assert (after[a] == after[b]) == (verdict == "match")


def pair_id_of(row) -> str:
    from linkage.review import pair_id

    return pair_id(row.record_id_a, row.record_id_b)


def test_a_pair_a_new_run_removed_and_a_pair_never_leased_are_clear_refusals(linked):
    with session_scope(linked) as session:
        lease = next_pair(session, holder="alice", queue="priority", lease_seconds=LEASE)
        unleased = next_pair(session, holder="bob", queue="priority", lease_seconds=LEASE)
        session.execute(
            update(review_leases)
            .where(review_leases.c.pair_id == unleased.pair_id)
            .values(holder="nobody")
        )
        with pytest.raises(ReviewConflict, match="another reviewer"):
            decide(session, pair_id=unleased.pair_id, holder="alice", action="match")
        session.execute(
            update(review_pairs)  # what the next run does to a pair it does not queue again
            .where(review_pairs.c.pair_id == lease.pair_id)
            .values(status="superseded")
        )
        with pytest.raises(ReviewConflict) as removed:
            decide(session, pair_id=lease.pair_id, holder="alice", action="match")
        assert "no longer in the review queue" in str(removed.value)
        with pytest.raises(ReviewConflict, match="unknown pair"):
            decide(session, pair_id="RP-nothing", holder="alice", action="match")
    assert REMOVED.split("{")[0] in str(removed.value)
    assert NO_LEASE  # the message a script gets when it decides a pair it never opened


def test_the_sample_queue_follows_the_draw_and_progress_counts(linked):
    with session_scope(linked) as session:
        drawn = (
            session.execute(select(review_sample.c.pair_id).order_by(review_sample.c.draw))
            .scalars()
            .all()
        )
        before = progress(session, "sample")
        lease = next_pair(session, holder="alice", queue="sample", lease_seconds=LEASE)
        decide(session, pair_id=lease.pair_id, holder="alice", action="non-match")
        after = progress(session, "sample")
    assert before == {"pending": len(drawn), "decided": 0}
    assert lease.pair_id == drawn[0]
    assert after == {"pending": len(drawn) - 1, "decided": 1}


def test_a_reviewer_never_sees_a_victims_identifiers_or_a_confidential_address(linked):
    with linked.connect() as connection:
        victims = set(
            connection.execute(
                select(mentions.c.record_id).where(mentions.c.role == "victim")
            ).scalars()
        )
        confidential = set(
            connection.execute(
                select(mentions.c.record_id).where(mentions.c.address_confidential)
            ).scalars()
        )
    seen_victim = seen_confidential = False
    with session_scope(linked) as session:
        pairs = session.execute(select(review_pairs.c.pair_id).limit(300)).scalars().all()
        for pair in pairs:
            view = pair_view(session, pair)
            shown = [r for r in view["records"] if r] + [
                r for person in view["persons"] for r in person["others"]
            ]
            for record in shown:
                values = record["values"]
                if record["record_id"] in victims:
                    seen_victim = True
                    assert set(values.values()) == {WITHHELD}
                elif record["record_id"] in confidential:
                    seen_confidential = True
                    assert values["city"] == values["zip"] == WITHHELD
                    assert values["last_name"] != WITHHELD
    assert seen_victim and seen_confidential


def test_lease_of_a_named_pair_refuses_one_held_by_another(linked):
    with session_scope(linked) as session:
        lease = next_pair(session, holder="alice", queue="priority", lease_seconds=LEASE)
        with pytest.raises(ReviewConflict, match="held by another reviewer"):
            lease_of(session, lease.pair_id, holder="bob", lease_seconds=LEASE)
        assert lease_of(session, lease.pair_id, holder="alice", lease_seconds=LEASE).pair_id == (
            lease.pair_id
        )


def test_the_report_and_the_label_estimate_read_both_engines(linked):
    from linkage.report import accuracy_from_labels, registry_report

    with session_scope(linked) as session:
        lease = next_pair(session, holder="alice", queue="priority", lease_seconds=LEASE)
        decide(session, pair_id=lease.pair_id, holder="alice", action="unsure")
    report = registry_report(linked, CONFIG)
    assert report["review_backlog"]["decided"]["unsure"] == 1
    assert report["accuracy_from_labels"] is None  # one decision is not enough
    assert report["changes"]["new"]["count"] == report["run"]["persons"]
    estimate = accuracy_from_labels(linked, CONFIG)
    assert estimate["enough"] is False and estimate["sample_pairs"] == CONFIG.accuracy.sample_size
