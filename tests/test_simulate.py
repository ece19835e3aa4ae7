"""``ipvi simulate`` and ``ipvi generate --deployment``: the contract end to end on a small
deployment with a drift, the drift's size and the exactness of the truth in the generator, and
bad input as one clear line with exit code 2."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3

import numpy as np
import pandas as pd
import pytest

from ipvi.cli import main
from ipvi.config import load_config
from synth import DriftParams, SynthParams, simulate, simulate_offending
from synth.deployment import DEPLOYMENT_HAZARD, DEPLOYMENT_YEARS, notification_truth
from synth.metrics import calibration_by_decile
from tests.cli_support import run_ipvi

KEYS = ("status", "reasons", "periods", "reaudit", "overrides", "notification_effect")
PERSONS = 2000
OVERRIDE_RATE = 0.1
DRIFT_START = dt.date(2023, 1, 1)  # the monitored period's start (extract date 2026-01-01)


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    """One small simulated deployment with the recording shift: its JSON and work folder."""
    folder = tmp_path_factory.mktemp("simulate") / "work"
    out = run_ipvi(
        ["simulate", "--persons", str(PERSONS), "--seed", "4", "--drift", "recording_shift"]
        + ["--workdir", str(folder), "--json"],
        {},
    )
    return json.loads(out.strip().splitlines()[-1]), folder


def _query(folder, sql: str) -> pd.DataFrame:
    with sqlite3.connect(folder / "registry.sqlite") as connection:
        return pd.read_sql_query(sql, connection)


@pytest.mark.slow
def test_the_last_line_is_the_monitors_json_with_the_truth(simulated):
    payload, folder = simulated
    assert set(KEYS) <= set(payload)
    assert payload["status"] in ("ok", "warn", "alarm")
    assert isinstance(payload["reasons"], list)
    assert (payload["status"] == "ok") == (payload["reasons"] == [])
    assert payload["periods"] and all(p["drift"]["n_issued"] > 0 for p in payload["periods"])
    assert payload["counts"]["matured"] > 0
    assert payload["reaudit"] is not None or payload["reaudit_reason"]
    if payload["reaudit"] is not None:
        assert payload["reaudit"]["gate"]["status"] in ("pass", "fail", "insufficient_evidence")
    overrides = payload["overrides"]
    assert overrides["n_decided"] > 0 and overrides["n_overridden"] > 0
    assert overrides["top_reasons"] and overrides["n_notified"] > 0
    effect = payload["notification_effect"]
    assert {"estimate", "ci_low", "ci_high", "truth"} <= set(effect)
    # The generator's notification lowers offending and raises recording: the parts have
    # those signs on every notified offence, and they add up to the whole.
    assert -1 < effect["truth"] < 1 and effect["truth_n"] > 20
    assert effect["truth_offending"] < 0 < effect["truth_recording"]
    assert effect["truth"] == pytest.approx(
        effect["truth_offending"] + effect["truth_recording"], abs=1e-12
    )
    # The same JSON is kept in the work folder, next to the report.
    assert json.loads((folder / "monitor.json").read_text())["status"] == payload["status"]
    assert (folder / "monitor.html").stat().st_size > 0


@pytest.mark.slow
def test_scores_are_issued_by_the_api_at_decision_dates_of_the_monitored_years(simulated):
    payload, folder = simulated
    issued = _query(folder, "SELECT source, as_of, model_version FROM issued_scores")
    simulation = payload["simulation"]
    assert len(issued) == simulation["issued"] > 0
    assert set(issued["source"]) == {"api"}
    assert set(issued["model_version"]) == {payload["model_version"]}
    as_of = pd.to_datetime(issued["as_of"])
    assert as_of.min() >= pd.Timestamp(simulation["deployment_start"])
    assert as_of.max() < pd.Timestamp(simulation["extract_date"])
    assert as_of.dt.to_period("M").nunique() >= 30  # every month of the three years, about
    # The champion was trained before the deployment: on matured outcomes up to its start.
    assert simulation["promotion"]["gate"] in ("pass", "fail", "insufficient_evidence")


@pytest.mark.slow
def test_decisions_follow_the_generators_notifications_with_overrides_at_the_rate(simulated):
    payload, folder = simulated
    decisions = _query(folder, "SELECT * FROM decisions")
    simulation = payload["simulation"]
    assert len(decisions) == simulation["decisions"]
    overridden = decisions["tier_decision"] == "overridden"
    n = len(decisions)
    assert abs(overridden.mean() - OVERRIDE_RATE) <= 4 * np.sqrt(0.09 / n)
    assert decisions.loc[overridden, "reason"].str.len().gt(0).all()
    notifying = {
        name
        for name, action in load_config().serving.decision_actions.items()
        if action.notifies_offender
    }
    notified = decisions["action"].isin(notifying)
    assert notified.sum() == simulation["notified"] > 0
    assert (decisions["action"] == "call_in").sum() > 0
    # Each decision is dated on its score's decision date (the notification's date).
    issued = _query(folder, "SELECT person_id, as_of FROM issued_scores")
    first = pd.to_datetime(issued["as_of"]).groupby(issued["person_id"]).min()
    decided = pd.to_datetime(decisions["decided_at"])
    assert (decided.to_numpy() >= first.reindex(decisions["person_id"]).to_numpy()).all()


@pytest.mark.slow
def test_the_recording_shift_is_in_the_truth_and_raises_the_recorded_incidents(simulated):
    payload, folder = simulated
    drift = json.loads((folder / "data" / "truth" / "drift.json").read_text())
    assert drift["name"] == "recording_shift"
    assert drift["start"] == payload["simulation"]["deployment_start"] == DRIFT_START.isoformat()
    truth = pd.read_csv(folder / "data" / "truth" / "index_offences.csv", dtype={"zip": str})
    truth = truth[truth["index_kind"] == "offender"]
    moved = truth["zip"].isin(drift["zips"])
    ratio = truth["recording_probability_after_drift"] / truth["recording_probability"]
    expected = (
        np.minimum(truth["recording_probability"] * 1.3, 0.99) / truth["recording_probability"]
    )
    assert np.allclose(ratio[moved], expected[moved], atol=1e-4)
    assert np.allclose(ratio[~moved], 1.0, atol=1e-9)
    share = truth.drop_duplicates("person_id")["zip"].isin(drift["zips"]).mean()
    assert 0.1 <= share <= 0.3  # about a fifth of the offenders
    # The monitor can slice by zip: every incident's suspect mention carries one.
    zips = _query(
        folder,
        "SELECT m.zip FROM events e JOIN mentions m ON m.event_id = e.event_id "
        "WHERE e.event_type = 'incident' AND m.role = 'suspect'",
    )
    assert zips["zip"].notna().mean() > 0.9


def _reoffences_by_area(drift: DriftParams | None, persons: int, seed: int) -> pd.Series:
    """Recorded re-offences in the year after the drift day, by whether the neighbourhood that
    set their recording (the previous offence's) is one the drift shifts."""
    params = SynthParams(persons=persons, seed=seed, drift=drift)
    cohort = simulate_offending(params)
    shifted = simulate_offending(
        SynthParams(persons=persons, seed=seed, drift=DriftParams("recording_shift", DRIFT_START))
    ).shifted
    off = cohort.careers.offences.sort_values(["offender", "seq"])
    setting = off.groupby("offender")["neighbourhood"].shift(1)
    day = (pd.Timestamp(DRIFT_START) - pd.Timestamp("1970-01-01")).days - cohort.epoch0
    year = (off["time"] >= day) & (off["time"] < day + 365) & setting.notna()
    area = shifted[setting[year].astype(int).to_numpy()]
    return pd.Series(area).value_counts()


def test_recording_shift_raises_recorded_reoffences_only_where_it_acts():
    base = _reoffences_by_area(None, 20_000, 5)
    drifted = _reoffences_by_area(DriftParams("recording_shift", DRIFT_START), 20_000, 5)
    assert drifted[True] / base[True] >= 1.15
    assert drifted[False] / base[False] == pytest.approx(1.0, abs=0.06)


def test_p_recorded_stays_exact_across_the_drift_day():
    """Windows that straddle the recording change, in a deployment's world (careers that end):
    the piecewise closed form is calibrated."""
    drift = DriftParams("recording_shift", DRIFT_START)
    params = SynthParams(
        persons=40_000, seed=8, years=DEPLOYMENT_YEARS, hazard=DEPLOYMENT_HAZARD, drift=drift
    )
    cohort = simulate_offending(params)
    off = cohort.careers.offences
    day = (pd.Timestamp(DRIFT_START) - pd.Timestamp("1970-01-01")).days - cohort.epoch0
    straddle = (off["decision_time"] > day - 365) & (off["decision_time"] < day)
    rows = off[straddle & cohort.shifted[off["neighbourhood"].to_numpy()]]
    assert (rows["r_after_drift"] > rows["r"]).all()
    p, y = rows["p_recorded"].to_numpy(), rows["label"].to_numpy()
    assert p.mean() == pytest.approx(y.mean(), abs=3 * np.sqrt((p * (1 - p)).sum()) / len(p))
    assert calibration_by_decile(p, y, z=2.8)["inside"].all()


def test_the_truth_leaves_out_people_notified_at_an_earlier_score_as_the_estimate_does():
    day = pd.Timestamp("2024-01-01")
    matched = pd.DataFrame(
        {
            "person_id": ["a", "a", "b", "c"],
            "as_of": [day, day + pd.Timedelta(days=40), day, day],
            "notified": [True, True, True, False],
            "window_observed": True,
            "p_recorded": [0.3, 0.9, 0.5, 0.4],
            "p_recorded_if_flipped": [0.4, 0.1, 0.7, 0.4],
            "p_recorded_if_flipped_hazard": [0.35, 0.2, 0.6, 0.4],
            "p_true": 0.5,
            "p_true_if_flipped": 0.6,
        }
    )
    truth = notification_truth(matched)
    # a's second score follows a notification (left out); c was not notified.
    assert truth["truth_n"] == 2
    assert truth["truth"] == pytest.approx(((0.3 - 0.4) + (0.5 - 0.7)) / 2)


def test_offence_mix_and_new_feed_change_what_they_name():
    """From the drift day: more strangulation and weapons; the new police feed's blanks."""
    start = dt.date(2023, 1, 1)
    base = simulate_offending(SynthParams(persons=5000, seed=3)).careers.offences
    mixed = simulate_offending(
        SynthParams(persons=5000, seed=3, drift=DriftParams("offence_mix", start))
    )
    off = mixed.careers.offences
    day = (pd.Timestamp(start) - pd.Timestamp("1970-01-01")).days - mixed.epoch0
    after, before = off[off["time"] >= day], base[base["time"] >= day]
    assert after["strang"].mean() > 1.6 * before["strang"].mean()
    assert after["weapon"].mean() > 1.4 * before["weapon"].mean()
    world = simulate(SynthParams(persons=2000, seed=3, drift=DriftParams("new_feed", start)))
    rows = world.rows
    day = (pd.Timestamp(start) - pd.Timestamp("1970-01-01")).days - world.epoch0
    new = (rows["agency"] == "police") & (rows["rec"] >= day)
    old = (rows["agency"] == "police") & (rows["rec"] < day)
    assert (rows.loc[new, "ssn4"] == -1).all() and (rows.loc[old, "ssn4"] >= 0).any()
    assert (rows.loc[new, "dob"] == -1).mean() > 0.4 > (rows.loc[old, "dob"] == -1).mean()
    assert (rows.loc[new, "injury"] == -1).mean() > 0.4
    assert (rows.loc[~new, "agency"] != "police").any()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--drift", "earthquake"], "unknown drift 'earthquake'"),
        (["--persons", "10"], "--persons 10 is too few"),
        (["--override-rate", "1.5"], "--override-rate must be between 0 and 1"),
        (["--seed", "-3"], "--seed must be 0 or more"),
    ],
)
def test_bad_input_is_one_clear_line_and_exit_2(args, message, tmp_path, capsys):
    options = {"--persons": "2000", "--seed": "1", "--workdir": str(tmp_path / "w")}
    for name, value in zip(args[::2], args[1::2], strict=True):
        options[name] = value
    code = main(["simulate", *[x for pair in options.items() for x in pair], "--json"])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


def test_a_workdir_that_cannot_be_written_or_was_used_is_refused(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    code = main(["simulate", "--persons", "2000", "--seed", "1", "--workdir", str(blocker / "w")])
    _, err = capsys.readouterr()
    assert code == 2 and "is not a writable folder" in err and err.count("\n") == 1
    used = tmp_path / "used"
    used.mkdir()
    (used / "registry.sqlite").write_text("")
    code = main(["simulate", "--persons", "2000", "--seed", "1", "--workdir", str(used)])
    _, err = capsys.readouterr()
    assert code == 2 and "already holds a deployment" in err


def test_generate_refuses_a_drift_without_a_deployment(tmp_path, capsys):
    code = main(["generate", "--out", str(tmp_path), "--drift", "new_feed"])
    _, err = capsys.readouterr()
    assert code == 2 and "--drift needs --deployment" in err
