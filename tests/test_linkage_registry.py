"""`ipvi link` on the registry: stable ids, one-transaction switch, lock, review queue, purge."""

from __future__ import annotations

import datetime as dt
import threading

import pandas as pd
import pytest
from sqlalchemy import delete, insert, select, update

from ipvi.config import load_config
from ipvi.db import open_registry, session_scope
from ipvi.errors import IpviError
from ipvi.purge import PurgeTarget
from ipvi.tables.ingest import mentions
from ipvi.tables.linkage import (
    crosswalk,
    linkage_models,
    person_id_changes,
    persons,
    review_pairs,
)
from linkage.linker import Linker
from linkage.person_ids import CURRENT, MERGED, SPLIT, UNKNOWN, Resolution, resolve_person_ids
from linkage.purge import person_records, purge_step
from linkage.review import export_pending, import_decisions, pair_id
from linkage.run import (
    acquire_lock,
    link_registry,
    load_link_index,
    read_crosswalk,
    registry_keys,
    registry_record_keys,
    release_lock,
)
from synth.mentions import generate_mentions

CONFIG = load_config().linkage


def insert_mentions(engine, frame: pd.DataFrame, confidential=()) -> None:
    rows = []
    for i, row in enumerate(frame.to_dict("records")):
        dob = pd.to_datetime(row["dob"], errors="coerce", format="%Y-%m-%d")
        rows.append(
            {
                "record_id": row["record_id"],
                "agency": "police",
                "first_name": row["first_name"],
                "middle_name": row["middle_name"],
                "last_name": row["last_name"],
                "dob": None if pd.isna(dob) else dob.date(),
                "dob_raw": row["dob"],
                "sex": row["sex"],
                "race": row["race"],
                "ethnicity": row["ethnicity"],
                "street": row["street"],
                "city": row["city"],
                "zip": row["zip"],
                "phone": row["phone"],
                "ssn_last4": row["ssn_last4"],
                "address_confidential": row["record_id"] in confidential,
                "event_id": f"E-{i}",
                "role": "victim" if i % 7 == 0 else "suspect",
                "version": 1,
                "ingest_run_id": 1,
                "content_hash": "x",
            }
        )
    with engine.begin() as connection:
        connection.execute(insert(mentions), rows)


@pytest.fixture
def registry(db_url):
    engine = open_registry(db_url)
    frame, truth = generate_mentions(1500, seed=11)
    insert_mentions(engine, frame, confidential=set(frame["record_id"][:300]))
    yield engine, frame, truth
    engine.dispose()


def test_link_writes_crosswalk_persons_and_run(registry, tmp_path):
    engine, frame, truth = registry
    truth_dir = tmp_path / "truth"
    truth_dir.mkdir()
    truth.rename_axis("record_id").reset_index().to_csv(truth_dir / "persons.csv", index=False)
    summary = link_registry(engine, CONFIG, truth_dir=truth_dir)
    walk = read_crosswalk(engine)
    assert len(walk) == len(frame) and walk["person_id"].str.startswith("P").all()
    assert summary["persons"] == walk["person_id"].nunique() == summary["minted"]
    assert summary["metrics"]["pairwise_f1"] > 0.95
    by_group = summary["metrics"]["by_group"]
    # Every race and ethnicity of the mentions has its own figures, and together they cover
    # every true person once per attribute.
    for attribute in ("race", "ethnicity"):
        groups = by_group[attribute]
        assert set(groups) == set(frame[attribute].fillna("unknown").astype(str))
        assert all(0.9 < figures["pairwise_f1"] <= 1 for figures in groups.values()), groups
        assert sum(figures["persons"] for figures in groups.values()) >= truth.nunique()
    # a second run over the same mentions changes no id
    again = link_registry(engine, CONFIG)
    assert again["minted"] == again["merged"] == again["split"] == 0
    assert read_crosswalk(engine)["person_id"].tolist() == walk["person_id"].tolist()


def test_link_chooses_its_rules_and_its_index_follows_them(registry):
    # `ipvi link` chooses its rules from the data (blocking_rules: auto); the service's index
    # then blocks and thresholds as the run did (both stored with the run's model). Listed
    # rules still work, and the index then uses them.
    engine, frame, _ = registry
    summary = link_registry(engine, CONFIG)
    chosen = [rule["rule"] for rule in summary["blocking_rules"]]
    assert chosen and all(rule["pairs"] > 0 for rule in summary["blocking_rules"])
    assert 0 < summary["estimated_pair_completeness"] <= 1
    index = load_link_index(engine, CONFIG)
    assert ["+".join(rule) for rule in index.rules_] == chosen
    assert index.link_threshold_ == pytest.approx(summary["link_threshold"], abs=1e-4)
    walk = read_crosswalk(engine).set_index("record_id")["person_id"]
    row = frame.iloc[10]
    mention = {k: row[k] for k in ("first_name", "last_name", "dob", "sex", "zip", "ssn_last4")}
    assert index.link(mention).person_id == walk[row["record_id"]]
    listed = CONFIG.model_copy(update={"blocking_rules": [["dob"], ["name_key", "sex"]]})
    assert [r["rule"] for r in link_registry(engine, listed)["blocking_rules"]] == [
        "dob",
        "name_key+sex",
    ]
    assert load_link_index(engine, listed).rules_ == [["dob"], ["name_key", "sex"]]


def _two_persons(engine):
    walk = read_crosswalk(engine)
    sizes = walk.groupby("person_id").size()
    big = sizes[sizes >= 2].index[:2]
    return walk, big


def test_merge_keeps_the_oldest_id_and_split_mints_new_ones(registry):
    engine, _, _ = registry
    link_registry(engine, CONFIG)
    walk, (first, second) = _two_persons(engine)
    a = walk.loc[walk.person_id == first, "record_id"].iloc[0]
    b = walk.loc[walk.person_id == second, "record_id"].iloc[0]
    # a reviewer says the two are one person: the next run merges them, keeping the older id
    with session_scope(engine) as session:
        session.execute(
            insert(review_pairs).values(
                pair_id=pair_id(a, b),
                record_id_a=a,
                record_id_b=b,
                match_probability=0.5,
                match_weight=0.0,
                evidence={},
                status="decided",
                decision="match",
                reviewer="t",
                decided_at=dt.datetime(2026, 1, 1),
                linkage_run_id="x",
            )
        )
    summary = link_registry(engine, CONFIG)
    older, newer = sorted([first, second])
    after = read_crosswalk(engine).set_index("record_id")["person_id"]
    assert after[a] == after[b] == older
    assert summary["merged"] >= 1
    with engine.connect() as connection:
        retired = (
            connection.execute(select(persons).where(persons.c.person_id == newer)).mappings().one()
        )
        change = (
            connection.execute(
                select(person_id_changes).where(person_id_changes.c.retired_id == newer)
            )
            .mappings()
            .one()
        )
    assert retired["status"] == "retired" and retired["successor_ids"] == [older]
    assert change["kind"] == "merge" and change["successor_id"] == older
    with session_scope(engine) as session:
        assert resolve_person_ids(session, [newer, older]) == {
            newer: Resolution(MERGED, person_id=older),
            older: Resolution(CURRENT, person_id=older),
        }

    # now a reviewer says they are not the same: the merged person splits into new ids
    with session_scope(engine) as session:
        session.execute(
            update(review_pairs)
            .where(review_pairs.c.pair_id == pair_id(a, b))
            .values(decision="non-match")
        )
    summary = link_registry(engine, CONFIG)
    final = read_crosswalk(engine).set_index("record_id")["person_id"]
    assert final[a] != final[b]
    assert older not in set(final)  # split: the old id retires, each part gets a fresh id
    assert summary["split"] == 1
    with session_scope(engine) as session:
        resolved = resolve_person_ids(session, [older, newer, "P-never"])
    parts = tuple(sorted({final[a], final[b]}))
    assert resolved[older] == Resolution(SPLIT, successor_ids=parts)
    assert resolved[newer] == Resolution(SPLIT, successor_ids=parts)  # merged, then split
    assert resolved["P-never"] == Resolution(UNKNOWN)


def test_concurrent_run_is_refused_and_ids_never_collide(registry):
    engine, _, _ = registry
    acquire_lock(engine, "LR-other")
    with pytest.raises(IpviError, match="LR-other is in progress"):
        link_registry(engine, CONFIG)
    release_lock(engine, "LR-other")
    errors, results = [], []

    def run():
        try:
            results.append(link_registry(engine, CONFIG))
        except IpviError as error:
            errors.append(str(error))

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) >= 1 and len(results) + len(errors) == 2
    assert all("in progress" in e for e in errors)
    with engine.connect() as connection:
        ids = connection.execute(select(persons.c.person_id, persons.c.seq)).all()
    assert len({p for p, _ in ids}) == len(ids) == len({s for _, s in ids})


def test_review_export_order_escaping_and_no_confidential_evidence(registry, tmp_path):
    engine, frame, _ = registry
    link_registry(engine, CONFIG)
    with session_scope(engine) as session:
        pending = (
            session.execute(
                select(review_pairs.c.pair_id).where(
                    review_pairs.c.status == "pending", review_pairs.c.queue == "priority"
                )
            )
            .scalars()
            .all()
        )
        assert pending, "the sample should leave some uncertain pairs"
        session.execute(
            update(review_pairs).where(review_pairs.c.pair_id == pending[-1]).values(priority=5.0)
        )
        rows = session.execute(select(review_pairs)).mappings().all()
    confidential = set(frame["record_id"][:300])
    for row in rows:
        if row["record_id_a"] in confidential or row["record_id_b"] in confidential:
            assert row["evidence"]["street"]["weight"] is None
    out = tmp_path / "review.csv"
    with session_scope(engine) as session:
        count = export_pending(session, out, limit=5)
    exported = pd.read_csv(out, dtype=str)
    assert count == len(exported) <= 5
    assert exported["pair_id"].iloc[0] == pending[-1]  # priority first
    for value in frame.loc[frame.record_id.isin(confidential), "street"].dropna():
        assert value not in out.read_text()
    uncertainty = (exported["match_probability"].astype(float).iloc[1:] - 0.5).abs()
    assert uncertainty.is_monotonic_increasing


def test_review_import_validates_and_binds_the_next_run(registry, tmp_path):
    engine, _, _ = registry
    link_registry(engine, CONFIG)
    out = tmp_path / "review.csv"
    with session_scope(engine) as session:
        export_pending(session, out, limit=2)
    sheet = pd.read_csv(out, dtype=str)
    bad = sheet.assign(decision="maybe", reviewer="ann", decided_at="2026-11-26T10:00:00")
    bad.to_csv(tmp_path / "bad.csv", index=False)
    with (
        session_scope(engine) as session,
        pytest.raises(IpviError, match="line 2: decision 'maybe'"),
    ):
        import_decisions(session, tmp_path / "bad.csv")
    sheet.assign(decision="match", reviewer="", decided_at="2026-11-26").to_csv(
        tmp_path / "r.csv", index=False
    )
    with session_scope(engine) as session, pytest.raises(IpviError, match="reviewer is empty"):
        import_decisions(session, tmp_path / "r.csv")
    sheet.assign(decision="match", reviewer="ann", decided_at="yesterday").to_csv(
        tmp_path / "t.csv", index=False
    )
    with session_scope(engine) as session, pytest.raises(IpviError, match="not ISO 8601"):
        import_decisions(session, tmp_path / "t.csv")
    pd.DataFrame(
        {
            "pair_id": ["RP-nope"],
            "decision": ["match"],
            "reviewer": ["a"],
            "decided_at": ["2026-01-01"],
        }
    ).to_csv(tmp_path / "u.csv", index=False)
    with session_scope(engine) as session, pytest.raises(IpviError, match="unknown pair_id"):
        import_decisions(session, tmp_path / "u.csv")
    good = sheet.assign(decision="match", reviewer="ann", decided_at="2026-11-26T10:00:00+01:00")
    good.to_csv(tmp_path / "good.csv", index=False)
    with session_scope(engine) as session:
        assert import_decisions(session, tmp_path / "good.csv") == len(sheet)
    link_registry(engine, CONFIG)
    after = read_crosswalk(engine).set_index("record_id")["person_id"]
    for a, b in zip(sheet["record_id_a"], sheet["record_id_b"], strict=True):
        assert after[a] == after[b]


def test_purge_step_removes_a_persons_links_and_reviews(registry):
    engine, _, _ = registry
    link_registry(engine, CONFIG)
    walk, (person, _) = _two_persons(engine)
    with session_scope(engine) as session:
        target = person_records(session, PurgeTarget(person_id=person))
        assert set(target.record_ids) == set(walk.loc[walk.person_id == person, "record_id"])
        counts = purge_step(session, target)
    assert counts["crosswalk"] == len(target.record_ids) and counts["persons"] == 1
    with engine.connect() as connection:
        left = connection.execute(select(crosswalk).where(crosswalk.c.person_id == person)).all()
    assert left == []
    with session_scope(engine) as session, pytest.raises(IpviError, match="unknown person id"):
        person_records(session, PurgeTarget(person_id="P-none"))


def test_link_index_links_one_new_record(registry):
    engine, frame, _ = registry
    link_registry(engine, CONFIG)
    index = load_link_index(engine, CONFIG)
    walk = read_crosswalk(engine).set_index("record_id")["person_id"]
    row = frame.iloc[10]
    mention = {k: row[k] for k in ("first_name", "last_name", "dob", "sex", "zip", "ssn_last4")}
    match = index.link(mention)
    assert match.person_id == walk[row["record_id"]]
    assert match.probability >= index.link_threshold_
    assert (
        index.link({"first_name": "zzyzx", "last_name": "qwerty", "dob": "1901-01-01"}).person_id
        is None
    )


def test_link_index_uses_the_stored_model_without_refitting(registry, monkeypatch):
    engine, frame, _ = registry
    summary = link_registry(engine, CONFIG)
    with engine.connect() as connection:
        stored = connection.execute(select(linkage_models)).mappings().one()
    assert stored["run_id"] == summary["run_id"]

    def no_refit(*args, **kwargs):
        raise AssertionError("load_link_index must not run the linker")

    monkeypatch.setattr(Linker, "run", no_refit)
    index = load_link_index(engine, CONFIG)
    assert index.run_id_ == summary["run_id"]
    assert index.model_.prior_ == pytest.approx(stored["model"]["prior"])
    assert {"first_name", "last_name", "zip"} <= set(index.model_.tf_)
    changed = CONFIG.model_copy(update={"comparisons": CONFIG.comparisons[:-1]})
    with pytest.raises(IpviError, match="linkage.comparisons"):
        load_link_index(engine, changed)
    with engine.begin() as connection:
        connection.execute(delete(linkage_models))
    with pytest.raises(IpviError, match="stored no model"):
        load_link_index(engine, CONFIG)


def test_review_queue_asks_one_pair_per_cluster_decision(registry):
    engine, _, _ = registry
    summary = link_registry(engine, CONFIG)
    walk = read_crosswalk(engine).set_index("record_id")["person_id"]
    with engine.connect() as connection:
        pending = pd.read_sql(
            select(review_pairs).where(
                review_pairs.c.status == "pending", review_pairs.c.queue == "priority"
            ),
            connection,
        )
    assert summary["review_pairs"] == len(pending) > 0
    a = walk.reindex(pending["record_id_a"]).to_numpy()
    b = walk.reindex(pending["record_id_b"]).to_numpy()
    questions = pd.Series([tuple(sorted(pair)) for pair in zip(a, b, strict=True)])
    assert not questions.duplicated().any()
    # queueing every uncertain pair asks the same questions several times over
    every = CONFIG.model_copy(update={"review_per_decision": False})
    assert link_registry(engine, every)["review_pairs"] > len(pending)


def test_registry_keys_vectorised_agree_with_one_record():
    frame = pd.DataFrame(
        {
            "agency": ["court", "jail", None, "police"],
            "agency_person_id": ["77", None, "5", " 9 "],
            "case_ref": ["19CR0045", "19-004512", "12", None],
            "role": ["defendant", "victim", "suspect", None],
        }
    )
    vectorised = registry_keys(frame)
    for i, row in enumerate(frame.to_dict("records")):
        one = registry_record_keys(row)
        assert vectorised.loc[i, ["agency_pid", "case_key"]].tolist() == [
            one["agency_pid"],
            one["case_key"],
        ]


def test_link_without_mentions_is_a_clear_error(sqlite_url):
    engine = open_registry(sqlite_url)
    with pytest.raises(IpviError, match="no mentions in the registry"):
        link_registry(engine, CONFIG)
    with engine.begin() as connection:
        assert connection.execute(delete(crosswalk)).rowcount == 0
    engine.dispose()


def test_supervised_option_trains_on_decisions(registry):
    engine, _, _ = registry
    link_registry(engine, CONFIG)
    with session_scope(engine) as session:
        pending = (
            session.execute(
                select(review_pairs.c.pair_id).where(review_pairs.c.status == "pending").limit(6)
            )
            .scalars()
            .all()
        )
        for k, key in enumerate(pending):
            session.execute(
                update(review_pairs)
                .where(review_pairs.c.pair_id == key)
                .values(
                    status="decided",
                    decision="match" if k % 2 else "non-match",
                    reviewer="t",
                    decided_at=dt.datetime(2026, 1, 1),
                )
            )
    config = CONFIG.model_copy(
        update={
            "supervised": CONFIG.supervised.model_copy(
                update={"enabled": True, "min_labels_per_class": 3}
            )
        }
    )
    assert link_registry(engine, config)["persons"] > 0
    too_strict = config.model_copy(
        update={"supervised": config.supervised.model_copy(update={"min_labels_per_class": 50})}
    )
    with pytest.raises(IpviError, match="at least 50 of each"):
        link_registry(engine, too_strict)
