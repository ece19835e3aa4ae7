"""Monitoring's parts on small hand-made inputs: drift measures against scipy and hand
arithmetic, the training reference, issued rows and their spool store, the decisions join,
the thresholds' validation, and the clear errors of ``ipvi monitor``."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd
import pytest
from scipy.stats import ks_2samp
from sqlalchemy import func, insert, select

from ipvi.columns import Columns
from ipvi.config import config_from_dict, default_config_dict
from ipvi.db import open_registry, session_scope
from ipvi.errors import ConfigError, IpviError
from ipvi.tables.ingest import events as events_table
from ipvi.tables.ingest import mentions as mentions_table
from ipvi.tables.linkage import crosswalk, persons
from ipvi.tables.monitoring import issued_scores
from monitoring import drift
from monitoring.outcomes import (
    NEVER_SERVED,
    NO_ISSUED,
    feature_frame,
    join_decisions,
    label_issued,
    matured_outcomes,
    read_issued,
    registry_offences,
)
from monitoring.run import Verdict, _period_drift, override_summary
from training.issued import issued_rows, purge_step, score_id, store_issued, write_issued
from training.reference import describe


def test_psi_matches_hand_arithmetic_and_is_zero_for_the_same_shares():
    expected, actual = np.array([0.5, 0.3, 0.2]), np.array([0.4, 0.3, 0.3])
    by_hand = (0.4 - 0.5) * np.log(0.4 / 0.5) + (0.3 - 0.2) * np.log(0.3 / 0.2)
    assert drift.psi(expected, actual) == pytest.approx(by_hand)
    assert drift.psi(expected, expected) == 0.0


def test_ks_distance_from_percentiles_is_scipys_two_sample_statistic():
    rng = np.random.default_rng(0)
    training, live = rng.normal(40, 10, 20_000), rng.normal(43, 11, 5_000)
    reference = describe(training)
    assert reference["kind"] == "continuous"
    distance = drift.ks_distance(reference["percentiles"], live)
    assert distance == pytest.approx(ks_2samp(training, live).statistic, abs=0.01)


def test_feature_drift_bins_discrete_values_and_counts_unseen_ones():
    training = np.array([0.0] * 60 + [1.0] * 40)
    reference = {"flag": describe(training)}
    assert reference["flag"]["kind"] == "discrete"
    assert reference["flag"]["shares"] == [0.6, 0.4]
    live = pd.DataFrame({"flag": [0.0] * 30 + [1.0] * 50 + [2.0] * 20})
    result = drift.feature_drift(reference, live)["flag"]
    # Shares 0.3 / 0.5 / 0.2 (unseen) against 0.6 / 0.4 / 0 (floored).
    by_hand = drift.psi(np.array([0.6, 0.4, 0.0]), np.array([0.3, 0.5, 0.2]))
    assert result["psi"] == pytest.approx(by_hand) and result["ks"] is None
    assert result["psi"] > 0.25  # an unseen value is a large shift


def test_mix_shift_is_the_largest_change_of_a_share():
    training = drift.mix(pd.Series(list("AABBBCCCCD")), ["A", "B", "C", "D"])
    live = drift.mix(pd.Series(list("ABCCCCCCCD")), ["A", "B", "C", "D"])
    assert drift.mix_shift(training, live) == pytest.approx(0.3)


def _mix_frame(tiers: dict[str, int]) -> pd.DataFrame:
    """Scores with these many of each tier (band = tier), all with the same probability."""
    tier = [t for t, n in tiers.items() for _ in range(n)]
    return pd.DataFrame({"tier": tier, "band": tier, "probability": 0.2, "provisional": False})


@pytest.mark.parametrize(
    ("live", "level"),
    [
        # A quarter of 230 scores: B's share 0.40 against 0.30 (a change of 0.04 to 0.16):
        # no evidence of a change of 0.05, not even a warning.
        ({"B": 92, "C": 138}, "ok"),
        # The same move on 6,000 scores leaves no less than about 0.08: a warning, not an alarm.
        ({"B": 2400, "C": 3600}, "warn"),
        # 0.30 to 0.50 on 6,000 scores: a change of at least 0.18, an alarm.
        ({"B": 3000, "C": 3000}, "alarm"),
    ],
)
def test_a_mix_shift_is_judged_by_the_lower_end_of_its_interval(live, level):
    verdict = Verdict(config_from_dict(default_config_dict()).monitoring.thresholds)
    test = _mix_frame({"B": 1500, "C": 3500})
    out = _period_drift(_mix_frame(live), None, None, test, verdict, "period P", min_scores=200)
    # The estimate is reported as it is; the judged bound sits below it.
    assert out["tier_mix_shift"] == pytest.approx(live["B"] / sum(live.values()) - 0.3)
    assert 0.0 <= out["tier_mix_shift_low"] < out["tier_mix_shift"]
    assert verdict.status == level
    assert all("lower 95 % bound" in reason for reason in verdict.reasons)


def test_a_mix_without_test_period_predictions_is_shown_not_judged():
    verdict = Verdict(config_from_dict(default_config_dict()).monitoring.thresholds)
    test = pd.DataFrame(columns=["probability", "tier", "band"])
    out = _period_drift(_mix_frame({"B": 300}), None, None, test, verdict, "P", min_scores=200)
    assert out["tier_mix_shift"] is None and out["tier_mix_shift_low"] is None
    assert verdict.status == "ok"


@pytest.mark.parametrize(
    ("change", "wording"),
    [
        ({"psi": {"warn": 0.1, "alarm": 20}}, "psi.alarm = 20 is out of range"),
        ({"ks": {"warn": -0.1, "alarm": 0.2}}, "ks.warn = -0.1 is out of range"),
        ({"ece": {"warn": 0.2, "alarm": 0.1}}, "ece: warn (0.2) must not exceed alarm (0.1)"),
        ({"speed": {"warn": 1, "alarm": 2}}, "unknown measure 'speed'"),
    ],
)
def test_a_threshold_out_of_range_is_a_config_error_naming_it(change, wording):
    data = default_config_dict()
    data["monitoring"]["thresholds"].update(change)
    with pytest.raises(ConfigError) as error:
        config_from_dict(data)
    assert "monitoring.thresholds" in str(error.value) and wording in str(error.value)


def _scored(n: int = 2) -> Columns:
    as_of = np.full(n, np.datetime64("2025-01-02T00:00:00", "ns"))
    return Columns(
        {
            "index_event_id": [f"E{k}" for k in range(n)],
            "person_id": [f"P{k}" for k in range(n)],
            "as_of": as_of,
            "probability": np.linspace(0.1, 0.6, n),
            "band": ["lower likelihood"] * n,
            "band_use": ["none"] * n,
            "tier": ["C"] * n,
            "provisional": np.zeros(n, bool),
            "lethality_flags": [["strangulation"]] * n,
            "scorecard_points": np.arange(n),
            "model_inputs": [np.array([float(k), np.nan]) for k in range(n)],
            "model_name": ["ipvi-risk"] * n,
            "model_version": ["3"] * n,
            "linkage_run_id": [None] * n,
        }
    )


def _issued(n: int = 2, history: str = "registry") -> list[dict]:
    return issued_rows(
        _scored(n),
        features=["prior_ipv_offences", "age"],
        source="api",
        history=history,
        issued_at=datetime(2025, 1, 2, 9),
    )


def test_issued_rows_keep_the_model_inputs_by_name_and_the_services_score_id():
    rows = _issued()
    assert rows[1]["features"] == {"prior_ipv_offences": 1.0, "age": None}
    assert rows[1]["score_id"] == score_id("P1", datetime(2025, 1, 2), "3")
    assert rows[0]["issue_id"] != rows[1]["issue_id"]
    assert {row["source"] for row in rows} == {"api"}
    with pytest.raises(ValueError):
        issued_rows(_scored(), features=["a", "b"], source="web", history="x", issued_at=None)
    # Nobody scored (no IPV offence known at the date): nothing issued.
    assert (
        issued_rows(Columns(), features=["a"], source="api", history="inline", issued_at=None) == []
    )


def _registry(url: str, people: list[str]):
    engine = open_registry(url)
    with session_scope(engine) as session:
        session.execute(
            insert(persons),
            [
                {"person_id": p, "seq": k, "status": "active", "created_run_id": "r1"}
                for k, p in enumerate(people)
            ],
        )
    return engine


def _spooled(rows: list[dict]) -> list[dict]:
    """Rows as the spool hands them back (JSON: dates as text)."""
    return [{**r, "as_of": str(r["as_of"]), "issued_at": str(r["issued_at"])} for r in rows]


def test_store_issued_adds_each_row_once_and_never_a_purged_person(db_url):
    engine = _registry(db_url, ["P0"])  # P1 is not (or no longer) in the registry
    rows, inline = _issued(), _issued(1, history="inline")
    with session_scope(engine) as session:
        assert store_issued(session, _spooled(rows + inline)) == 2
        assert store_issued(session, _spooled(rows + inline)) == 0  # a spool flushed twice
        stored = session.execute(select(issued_scores.c.person_id, issued_scores.c.history)).all()
    assert sorted(stored) == [("P0", "inline"), ("P0", "registry")]
    engine.dispose()


def test_a_batch_is_written_through_the_driver_as_the_spool_writes_it(db_url):
    engine = _registry(db_url, ["P0", "P1"])
    with session_scope(engine) as session:
        assert write_issued(session, _scored().to_frame(), features=["a", "b"]) == 2
    with session_scope(engine) as session:
        stored = (
            session.execute(select(issued_scores).order_by(issued_scores.c.person_id))
            .mappings()
            .all()
        )
    assert [row["features"] for row in stored] == [{"a": 0.0, "b": None}, {"a": 1.0, "b": None}]
    assert {row["source"] for row in stored} == {"batch"}
    assert stored[1]["as_of"] == datetime(2025, 1, 2)
    assert stored[1]["lethality_flags"] == ["strangulation"]
    assert stored[1]["score_id"] == score_id("P1", datetime(2025, 1, 2), "3")
    engine.dispose()


def test_purge_step_removes_the_persons_issued_scores(db_url):
    from ipvi.purge import PurgeTarget

    engine = _registry(db_url, ["P0", "P1"])
    rows = issued_rows(
        _scored(), features=["a", "b"], source="batch", history="registry", issued_at=datetime.now()
    )
    with session_scope(engine) as session:
        store_issued(session, _spooled(rows))
        counts = purge_step(session, PurgeTarget(person_id="P1", persons=("P1",)))
        left = session.scalars(select(issued_scores.c.person_id)).all()
    assert counts == {"issued_scores": 1} and left == ["P0"]
    engine.dispose()


def test_monitor_errors_name_what_is_missing(db_url):
    engine = _registry(db_url, ["P0", "P1"])
    until = pd.Timestamp("2025-06-01")
    with session_scope(engine) as session:
        with pytest.raises(IpviError, match="no issued scores up to 2025-06-01"):
            read_issued(session, until=until)
        rows = issued_rows(
            _scored(), features=["a", "b"], source="api", history="registry", issued_at=until
        )
        store_issued(session, _spooled(rows))
    with session_scope(engine) as session:
        with pytest.raises(IpviError) as never:
            read_issued(session, until=until, model_version="7")
        issued, version = read_issued(session, until=until)
        assert session.scalar(select(func.count()).select_from(issued_scores)) == 2
    assert str(never.value) == NEVER_SERVED.format(version="7", date=until.date(), served="3")
    assert NO_ISSUED.startswith("no issued scores")
    assert version == "3" and len(issued) == 2
    frame = feature_frame(issued, ["a", "b"], version)
    assert frame["a"].tolist() == [0.0, 1.0] and frame["b"].isna().all()
    with pytest.raises(IpviError, match=r"2 issued score\(s\) of model version 3 lack"):
        feature_frame(issued, ["a", "b", "prior_ipv_offences"], version)
    engine.dispose()


def _event(event_id: str, event_type: str, day: str, ipv: bool = True) -> dict:
    when = datetime.fromisoformat(day)
    return {
        "event_id": event_id,
        "agency": "police",
        "event_type": event_type,
        "offense_date": when,
        "recorded_at": when,
        "ipv": ipv,
        "version": 1,
        "ingest_run_id": 1,
        "content_hash": event_id,
    }


def _mention(record_id: str, event_id: str, role: str) -> dict:
    return {
        "record_id": record_id,
        "agency": "police",
        "address_confidential": False,
        "event_id": event_id,
        "role": role,
        "version": 1,
        "ingest_run_id": 1,
        "content_hash": record_id,
    }


def test_the_helpers_offences_label_as_the_persons_own_histories_do(db_url):
    """``ipvi monitor`` derives the offences of the whole registry in a second process, from
    the database URL alone (:func:`registry_offences`), and labels with them: the same labels
    and first re-offence dates as the scored persons' own histories give."""
    engine = _registry(db_url, ["P0", "P1", "P2"])
    events = [
        _event("E1", "incident", "2024-01-10"),  # P0's index offence
        _event("E2", "custody_start", "2024-02-01", ipv=False),  # 30 days in custody
        _event("E3", "custody_end", "2024-03-02", ipv=False),
        _event("E4", "incident", "2025-01-20"),  # after 365 days, inside the extended window
        _event("E5", "incident", "2024-03-01"),  # P1's index offence, nothing after it
        _event("E6", "incident", "2024-04-01"),  # P2: not scored
    ]
    mentions = [
        _mention("R1", "E1", "suspect"),
        _mention("R2", "E2", "arrestee"),
        _mention("R3", "E3", "arrestee"),
        _mention("R4", "E4", "suspect"),
        _mention("V1", "E1", "victim"),
        _mention("R5", "E5", "suspect"),
        _mention("R6", "E6", "suspect"),
    ]
    person_of = {"R1": "P0", "R2": "P0", "R3": "P0", "R4": "P0", "V1": "V", "R5": "P1"}
    with session_scope(engine) as session:
        session.execute(insert(events_table), events)
        session.execute(insert(mentions_table), mentions)
        session.execute(
            insert(crosswalk),
            [
                {"record_id": r, "person_id": p, "link_probability": 1.0, "linkage_run_id": "r1"}
                for r, p in {**person_of, "R6": "P2"}.items()
            ],
        )
    issued = pd.DataFrame(
        {
            "person_id": ["P0", "P1"],
            "history": "registry",
            "as_of": pd.to_datetime(["2024-01-13", "2024-03-04"]),
            "index_event_id": ["E1", "E5"],
            "probability": [0.3, 0.2],
        }
    )
    config = config_from_dict(default_config_dict())
    extract = pd.Timestamp("2026-01-01")
    helper = label_issued(issued, registry_offences(db_url, config), config, extract_date=extract)
    own = matured_outcomes(engine, issued, config, extract_date=extract)
    pd.testing.assert_frame_equal(helper.frame, own.frame)
    assert helper.counts == own.counts
    assert helper.frame["label"].tolist() == [1, 0]
    assert helper.frame["reoffence_at"].tolist()[0] == pd.Timestamp("2025-01-20")
    engine.dispose()


def test_a_decision_at_a_later_score_belongs_to_that_score_only():
    # P1 re-offends within the first score's window, is scored again and notified then: the
    # notification is the second score's, not the first's (which would look re-offended and
    # notified).
    frame = pd.DataFrame(
        {
            "person_id": ["P1", "P1"],
            "as_of": pd.to_datetime(["2024-01-01", "2024-06-01"]),
            "window_end": pd.to_datetime(["2025-01-01", "2025-06-01"]),
        }
    )
    staff = pd.DataFrame(
        {
            "person_id": ["P1", "P1"],
            "action": ["no_action", "letter"],
            "tier_decision": ["followed", "followed"],
            "tier": ["C", "B"],
            "reason": [None, None],
            "decided_at": pd.to_datetime(["2024-01-01 09:00", "2024-06-01 10:00"]),
        }
    )
    out = join_decisions(frame, staff, notifying={"letter"})
    assert out["decided"].tolist() == [True, True]
    assert out["notified"].tolist() == [False, True]
    assert out["notified_before"].tolist() == [False, False]


def test_decisions_in_the_window_mark_notification_call_in_and_override():
    frame = pd.DataFrame(
        {
            "person_id": ["P1", "P2", "P3"],
            "as_of": pd.to_datetime(["2024-01-01"] * 3),
            "window_end": pd.to_datetime(["2025-01-01"] * 3),
        }
    )
    staff = pd.DataFrame(
        {
            "person_id": ["P1", "P1", "P2", "P3"],
            "action": ["letter", "call_in", "no_action", "call_in"],
            "tier_decision": ["followed", "overridden", "overridden", "followed"],
            "tier": ["C", "C", "B", "A"],
            "reason": [None, "victim asked", "in custody", None],
            # P3's decision came before the score: not part of its window.
            "decided_at": pd.to_datetime(["2024-01-05", "2024-02-01", "2024-03-01", "2023-12-01"]),
        }
    )
    out = join_decisions(frame, staff, notifying={"letter", "call_in"})
    assert out["decided"].tolist() == [True, True, False]
    assert out["notified"].tolist() == [True, False, False]
    assert out["called_in"].tolist() == [True, False, False]
    assert out["overridden"].tolist() == [True, True, False]
    assert out["override_reason"].tolist() == ["victim asked", "in custody", None]
    # P3 was called in (notified) before the score: neither a first notification nor a
    # not-yet-notified comparison for the programme's effect.
    assert out["notified_before"].tolist() == [False, False, True]
    summary = override_summary(
        out.assign(
            observed=[True, False, False],
            label=[1, 0, 0],
            probability=[0.2, 0.3, 0.4],
            tier=["C", "B", "A"],
            band=["x", "y", "z"],
            race=["black", "black", "white"],
        ),
        attributes=["race"],
        n_resamples=50,
        seed=0,
    )
    assert summary["by_group"]["race"]["black"] == {
        "n": 2,
        "overridden": 2,
        "rate": 1.0,
        "ci": [1.0, 1.0],
    }
    assert "white" not in summary["by_group"]["race"]  # no decision: not in the rates
    assert (summary["n_decided"], summary["n_notified"], summary["n_called_in"]) == (2, 1, 1)
    assert summary["by_tier"]["C"] == {"n": 1, "overridden": 1, "rate": 1.0, "ci": [1.0, 1.0]}
    assert summary["top_reasons"] == [
        {"reason": "in custody", "n": 1},
        {"reason": "victim asked", "n": 1},
    ]
    assert summary["outcomes"] == {"n": 1, "observed": 1.0, "predicted": 0.2}


def test_the_status_is_the_worst_level_reached_with_one_reason_per_level_of_many_inputs():
    thresholds = config_from_dict(default_config_dict()).monitoring.thresholds
    verdict = Verdict(thresholds)
    assert verdict.status == "ok" and verdict.reasons == []
    assert verdict.check("ece", 0.06, "period 2025Q1") == "warn"
    verdict.check_many("psi", {"a": 0.3, "b": 0.12, "c": 0.05, "d": None, "e": 0.4}, "period P")
    assert verdict.status == "alarm"
    assert verdict.reasons == [
        "period P: 2 input(s) with psi >= 0.25 (alarm): e 0.4, a 0.3",
        "period 2025Q1: ece 0.06 >= 0.05 (warn)",
        "period P: 1 input(s) with psi >= 0.1 (warn): b 0.12",
    ]


def test_the_service_spool_keeps_issued_rows_until_the_database_takes_them(tmp_path, sqlite_url):
    from serving.spool import IssuedScoreSpool

    engine = _registry(sqlite_url, ["P0", "P1"])
    target = {"engine": None}

    def unreachable():
        raise OSError("database down")

    spool = IssuedScoreSpool(
        tmp_path / "issued", lambda: target["engine"] or unreachable(), flush_seconds=60
    )
    spool.append(_issued())
    with pytest.raises(OSError):
        spool.flush()
    assert spool.pending_rows() == 2  # nothing lost while the database is down
    target["engine"] = engine
    assert spool.flush() == 2 and spool.pending_rows() == 0
    with session_scope(engine) as session:
        stored = session.execute(select(issued_scores.c.person_id, issued_scores.c.as_of)).all()
    assert sorted(stored) == [("P0", datetime(2025, 1, 2)), ("P1", datetime(2025, 1, 2))]
    engine.dispose()
