"""Programme outcomes and the zip-sliced count alarm on small constructed data with known
answers: Kaplan-Meier against a hand computation, censoring at the extract date, the matched
notification effect recovering a known effect, the feedback-loop arithmetic, the clear reasons
when there is nothing to compare, and the count alarm firing on an injected recording change
in a few zips while staying quiet on a city-wide trend."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ipvi.config import (
    CountAlarmConfig,
    ProgrammeConfig,
    config_from_dict,
    default_config_dict,
)
from ipvi.errors import ConfigError
from monitoring.counts import count_alarms, monthly_counts, overdispersion, span_scan, windows_of
from monitoring.programme import (
    NO_MATURED_OUTCOMES,
    feedback_loop,
    follow_up,
    notification_effect,
    reoffence_curves,
)

EXTRACT = pd.Timestamp("2025-01-01")
PROGRAMME = ProgrammeConfig(score_bands=5, min_notified=30, min_controls=30)


def _scores(days_to_event: list[float | None], followed_days: list[float]) -> pd.DataFrame:
    """Scores issued on 2023-01-01 with a re-offence after ``days_to_event`` (None: none) and
    windows closing after ``followed_days``."""
    as_of = pd.Timestamp("2023-01-01")
    return pd.DataFrame(
        {
            "person_id": [f"P{k}" for k in range(len(followed_days))],
            "as_of": as_of,
            "window_end": [as_of + pd.Timedelta(days=d) for d in followed_days],
            "reoffence_at": [
                pd.NaT if d is None else as_of + pd.Timedelta(days=d) for d in days_to_event
            ],
            "notified": True,
            "tier": "2",
        }
    )


def test_kaplan_meier_matches_the_hand_computation():
    # Events at 100, 200 and 300 days; censored at 200 and 500 (windows closed first).
    frame = _scores([100, None, 200, 300, None], [400, 200, 400, 400, 500])
    curve = reoffence_curves(frame, extract=EXTRACT, recording_days=0, horizon=365)
    group = curve["groups"]["notified, tier 2"]
    # S(100) = 4/5; at 200 four at risk (the censored one leaves after) -> 4/5 * 3/4 = 0.6;
    # at 300 two at risk -> 0.6 * 1/2 = 0.3.
    at = {d: r for d, r in zip(group["days"], group["reoffended"], strict=True)}
    assert at[0.0] == 0.0
    grid = np.array(group["days"])
    assert group["reoffended"][np.searchsorted(grid, 150)] == pytest.approx(0.2)
    assert group["reoffended"][np.searchsorted(grid, 250)] == pytest.approx(0.4)
    assert group["rate"] == pytest.approx(0.7)
    low, high = group["rate_ci"]
    assert low < 0.7 < high
    assert group["days_to_share"]["0.5"] == 300.0
    assert group["days_to_share"]["0.25"] == 200.0


def test_follow_up_is_censored_at_the_extract_date_less_the_recording_allowance():
    # A window still open at the extract date: followed to 2025-01-01 - 90 days.
    frame = _scores([None, 700], [365 * 3, 365 * 3])
    followed = follow_up(frame, extract=EXTRACT, recording_days=90)
    limit = (EXTRACT - pd.Timedelta(days=90) - pd.Timestamp("2023-01-01")).days
    assert followed["days"].tolist() == [limit, limit]
    # The re-offence after the censoring date is not counted.
    assert followed["event"].tolist() == [0, 0]


def _constructed(effect: float, seed: int, n: int = 6000) -> pd.DataFrame:
    """People in three tiers; higher tiers re-offend more and are notified more often, so a
    naive comparison is confounded; notification changes the rate by ``effect``."""
    rng = np.random.default_rng(seed)
    tier = rng.integers(1, 4, n)
    probability = np.clip(0.1 * tier + rng.normal(0, 0.03, n), 0.01, 0.9)
    notified = rng.random(n) < 0.2 * tier
    rate = probability + effect * notified
    return pd.DataFrame(
        {
            "person_id": [f"P{k}" for k in range(n)],
            "tier": tier.astype(str),
            "probability": probability,
            "notified": notified,
            "label": (rng.random(n) < rate).astype(int),
        }
    )


@pytest.mark.parametrize("effect", [-0.08, 0.0])
def test_the_matched_comparison_recovers_a_known_effect(effect):
    covered = 0
    for seed in range(3):
        frame = _constructed(effect, seed)
        result = notification_effect(frame, PROGRAMME, n_resamples=200, seed=seed)
        covered += result["ci_low"] <= effect <= result["ci_high"]
        assert result["estimate"] == pytest.approx(effect, abs=0.04)
        # The naive difference is confounded by tier (notified are riskier).
        naive = (
            frame.loc[frame["notified"], "label"].mean()
            - frame.loc[~frame["notified"], "label"].mean()
        )
        assert naive > effect + 0.03
    assert covered >= 2


def test_too_few_or_no_outcomes_give_a_reason_not_a_number():
    empty = notification_effect(
        _constructed(0.0, 0).iloc[:0],
        PROGRAMME,
        n_resamples=50,
        seed=0,
    )
    assert empty["estimate"] is None and empty["reason"] == NO_MATURED_OUTCOMES
    few = notification_effect(
        _constructed(0.0, 0, n=60),
        PROGRAMME,
        n_resamples=50,
        seed=0,
    )
    assert few["estimate"] is None and "too few to compare" in few["reason"]
    assert feedback_loop(few, [1.0, 1.3], positives=0)["uplifts"] == []


def test_the_feedback_loop_finds_the_uplift_that_explains_the_difference():
    effect = {"estimate": 0.05, "notified_rate": 0.3, "matched_rate": 0.25, "reason": None}
    loop = feedback_loop(effect, [1.0, 1.3], positives=10)
    assert loop["uplifts"][0]["offending_difference"] == pytest.approx(0.05)
    # The explaining uplift brings the notified's offending rate down to the comparison's.
    explaining = loop["explaining_uplift"]
    again = feedback_loop(effect, [explaining], positives=10)["uplifts"][0]
    assert again["offending_difference"] == pytest.approx(0.0, abs=1e-12)
    assert 0 < loop["uplifts"][1]["share_of_notified_labels"] < 0.3


def test_the_scan_names_the_zips_whose_share_rose_and_ignores_a_city_wide_trend():
    rng = np.random.default_rng(3)
    means = rng.uniform(40, 80, 20)
    reference = rng.poisson(means[:, None], size=(20, 8))

    def scan(window):
        blocks = np.column_stack([reference, window])
        return span_scan(blocks, reference_blocks=8, spans=1, n_simulations=999, seed=1)

    assert scan(rng.poisson(means * 1.4)).p_value > 0.01
    shifted = means.copy()
    shifted[[2, 5, 11, 17]] *= 1.6
    found = scan(rng.poisson(shifted))
    assert found.p_value <= 0.002
    assert {2, 5, 11, 17} <= set(found.zips)


def _persistent_rise(seed: int, rise: float) -> np.ndarray:
    """24 zips x 12 window-long blocks, 8 of reference and 4 after a rise of ``rise`` in the
    first 5 zips' rate."""
    rng = np.random.default_rng(seed)
    means = rng.uniform(40, 80, 24)
    lam = np.repeat(means[:, None], 12, axis=1)
    lam[:5, 8:] *= 1.0 + rise
    return rng.poisson(lam)


def test_a_persistent_rise_too_small_for_one_window_adds_up_over_the_span():
    blocks = _persistent_rise(seed=1, rise=0.3)
    one = span_scan(blocks, reference_blocks=8, spans=1, n_simulations=999, seed=0)
    four = span_scan(blocks, reference_blocks=8, spans=4, n_simulations=999, seed=0)
    assert one.p_value > 0.05
    assert four.p_value <= 0.002
    assert four.span == 4
    assert set(four.zips) & set(range(5))


def test_the_span_scan_p_value_without_change_is_not_small():
    p_values = [
        span_scan(
            _persistent_rise(seed, rise=0.0),
            reference_blocks=8,
            spans=4,
            n_simulations=199,
            seed=seed,
        ).p_value
        for seed in range(20)
    ]
    # Uniform on (0, 1]: 20 draws, none under 0.01 and about half under 0.5, by chance.
    assert min(p_values) > 0.01
    assert 4 <= sum(p < 0.5 for p in p_values) <= 16


def test_the_scan_stops_drawing_once_its_p_value_is_sure_to_be_large_and_no_sooner():
    def scan(rise, stop_above):
        return span_scan(
            _persistent_rise(seed=2, rise=rise),
            reference_blocks=8,
            spans=4,
            n_simulations=4999,
            seed=0,
            stop_above=stop_above,
        )

    # A p-value at or under the level is the one every draw gives, bit for bit.
    changed, changed_all = scan(0.3, 0.01), scan(0.3, None)
    assert changed.draws == changed_all.draws == 4999
    assert changed.p_value == changed_all.p_value <= 0.01
    # One above it stops early, still above the level.
    quiet, quiet_all = scan(0.0, 0.01), scan(0.0, None)
    assert quiet.draws < 4999 == quiet_all.draws
    assert quiet.p_value > 0.01 and quiet_all.p_value > 0.01
    assert quiet.p_value == pytest.approx(quiet_all.p_value, abs=0.1)


def test_overdispersion_is_one_for_poisson_blocks_and_grows_with_bursts():
    rng = np.random.default_rng(0)
    poisson = rng.poisson(50, size=(30, 8))
    assert overdispersion(poisson) == pytest.approx(1.0, abs=0.25)
    bursty = rng.poisson(rng.gamma(2.0, 25.0, size=(30, 8)))
    assert overdispersion(bursty) > 5


def _tables(shift_from: str | None, seed: int) -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    months = pd.period_range("2021-01", "2024-12", freq="M")
    means = rng.uniform(15, 30, 24)
    growth = np.linspace(1.0, 1.3, len(months))  # a city-wide rise
    lam = means[:, None] * growth[None, :]
    if shift_from is not None:
        later = months >= pd.Period(shift_from, "M")
        lam[:5, later] *= 1.5
    counts = rng.poisson(lam)
    return {
        "incidents": pd.DataFrame(counts, index=[f"272{z:02d}" for z in range(24)], columns=months)
    }


def test_count_alarm_fires_in_the_first_window_after_a_change_and_is_quiet_without():
    settings = CountAlarmConfig(n_simulations=999, max_span_windows=2)  # spans of 2: lean
    windows = windows_of(pd.Period("2023-01", "M"), pd.Period("2024-12", "M"), 3)
    quiet = count_alarms(_tables(None, 0), windows, settings, seed=0)
    assert all(w["level"] == "ok" for w in quiet["windows"])
    shifted = count_alarms(_tables("2023-07", 0), windows, settings, seed=0)
    first = next(w for w in shifted["windows"] if w["start"] == "2023-07")
    assert first["level"] == "alarm"
    assert {"27200", "27201", "27202", "27203", "27204"} & set(first["zips"])
    # The next window's alarm names the span from the change on.
    second = next(w for w in shifted["windows"] if w["start"] == "2023-10")
    assert second["span_start"] == "2023-07" and second["level"] == "alarm"
    before = [w for w in shifted["windows"] if w["start"] < "2023-07"]
    assert all(w["level"] == "ok" for w in before)


@pytest.mark.parametrize(
    "change, wording",
    [
        ({"alpha_alarm": 0.7}, "alpha_alarm = 0.7 is out of range"),
        ({"alpha_alarm": 0.05, "alpha_warn": 0.01}, "must not exceed alpha_warn"),
        ({"window_months": 0}, "window_months"),
        ({"max_span_windows": 13}, "max_span_windows"),
        ({"max_span_windows": 0}, "max_span_windows"),
    ],
)
def test_a_count_alarm_threshold_out_of_range_is_a_clear_error(change, wording):
    data = default_config_dict()
    data["monitoring"]["counts"].update(change)
    with pytest.raises(ConfigError, match=wording):
        config_from_dict(data)


def test_a_window_without_history_is_not_judged_and_not_counted_as_a_test():
    tables = _tables(None, 1)
    # Known from 2022-10 only: the first window has three reference months, under two windows.
    late = tables["incidents"].columns >= pd.Period("2022-10", "M")
    tables = {"incidents": tables["incidents"].loc[:, late]}
    windows = windows_of(pd.Period("2023-01", "M"), pd.Period("2024-12", "M"), 3)
    result = count_alarms(
        tables, windows, CountAlarmConfig(n_simulations=999, max_span_windows=2), seed=0
    )
    unjudged = [w for w in result["windows"] if not w["judged"]]
    assert [w["start"] for w in unjudged] == ["2023-01"]
    assert all("too little history" in w["reason"] for w in unjudged)
    assert result["n_tests"] == len(windows) - 1


def test_a_window_whose_zips_all_pool_into_one_is_not_judged():
    # Every zip under min_zip_events reference events: one pooled row, nothing to compare.
    windows = windows_of(pd.Period("2023-01", "M"), pd.Period("2023-03", "M"), 3)
    settings = CountAlarmConfig(n_simulations=999, min_zip_events=10_000)
    result = count_alarms(_tables(None, 2), windows, settings, seed=0)
    assert result["windows"][0]["judged"] is False
    assert "too few events to compare zips" in result["windows"][0]["reason"]


def test_the_examples_in_the_count_alarm_docstrings_run():
    import doctest

    import monitoring.counts

    result = doctest.testmod(monitoring.counts)
    assert result.attempted and not result.failed


def test_a_kind_never_recorded_counts_zero_every_month():
    """A registry without calls for service: that kind's table is zeros, not a crash."""
    months = pd.period_range("2024-01", "2024-03", freq="M")
    dates = pd.Series(pd.to_datetime(["2024-01-05", "2024-02-03", "2024-02-20"]))
    zips = pd.Series(["27260", "27262", "27260"])
    kinds = pd.DataFrame({"incidents": [True, True, True], "calls_for_service": False})
    tables = monthly_counts(dates, zips, kinds, months)
    assert tables["incidents"].loc["27260"].tolist() == [1, 1, 0]
    assert tables["calls_for_service"].sum(axis=0).tolist() == [0, 0, 0]
