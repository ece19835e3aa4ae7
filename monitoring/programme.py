"""The programme's own results: does notifying offenders change recorded re-offence?

- :func:`reoffence_curves`: Kaplan-Meier curves (``lifelines``) of the time from a score to the
  first recorded re-offence, by tier among the notified and for those not notified, with 95 %
  bands, the 12-month rate and the times by which a tenth, a quarter and half re-offended.
  Every issued score counts, matured or not: one still inside its window is censored at the
  extract date less the recording allowance (records of later offences may not have arrived).
- :func:`notification_effect`: notified against eligible people not (yet) notified at matched
  risk (strata of tier x score band, weighted to the notified), on the label itself, with a
  person-bootstrap interval.
- :func:`feedback_loop`: how much of that difference a rise in *recording* among the notified
  could explain, and what it does to the labels the next model learns from.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from lifelines import KaplanMeierFitter
from lifelines.utils import qth_survival_times

from ipvi.config import ProgrammeConfig
from monitoring.performance import bootstrap

NOTIFIED, NOT_NOTIFIED = "notified", "not notified"
# Time by which this share had a recorded re-offence (1 - survival).
QUANTILES = (0.1, 0.25, 0.5)
_GRID_POINTS = 53  # curve points kept for the JSON and the chart (about weekly over a year)

NO_FOLLOW_UP = "no issued registry score has any follow-up before the extract date yet"
NO_MATURED_OUTCOMES = (
    "no matured outcome yet: the comparison needs scores whose follow-up window has closed"
)
TOO_FEW = (
    "too few to compare: {n_notified} notified and {n_controls} not notified with a matured "
    "outcome (monitoring.programme needs at least {min_notified} and {min_controls})"
)
NO_OVERLAP = (
    "no notified person has a not-notified counterpart at the same tier and score band, so "
    "there is no matched comparison"
)
ASSUMPTIONS = [
    "Within a tier and score band, whether someone was notified had nothing to do with how "
    "likely they were to re-offend beyond what the tier and score already say (no hidden "
    "reason, such as an officer's judgement, that both picked them and changes their risk).",
    "The comparison is of recorded re-offence: if notified people are watched more closely, "
    "more of their offences are recorded, and the difference mixes offending with recording "
    "(see the feedback-loop check).",
    "The not-notified people are eligible people who were not (yet) notified in their window; "
    "a person notified late counts as notified, so a notification that came after a new "
    "offence can blur the difference. People notified before the score are left out of both "
    "sides.",
    "Only notified people with a not-notified counterpart at the same tier and band count; "
    "the share left out is shown. Repeated scores of one person are resampled together.",
]


def follow_up(frame: pd.DataFrame, *, extract: pd.Timestamp, recording_days: int) -> pd.DataFrame:
    """Per issued score: ``days`` from the score to its first recorded re-offence (``event``
    1) or to the end of its follow-up (``event`` 0), the end being its window's close or the
    extract date less the recording allowance, whichever is first. Scores with no follow-up
    yet are left out."""
    end = np.minimum(
        frame["window_end"].to_numpy(dtype="datetime64[ns]"),
        np.datetime64(extract - pd.Timedelta(days=recording_days), "ns"),
    )
    reoffence = frame["reoffence_at"].to_numpy(dtype="datetime64[ns]")
    event = ~np.isnat(reoffence) & (reoffence <= end)
    stop = np.where(event, reoffence, end)
    start = frame["as_of"].to_numpy(dtype="datetime64[ns]")
    out = frame.assign(days=(stop - start) / np.timedelta64(1, "D"), event=event.astype(int))
    return out[end > start].reset_index(drop=True)


def _curve(days: np.ndarray, event: np.ndarray, horizon: int) -> dict:
    """One Kaplan-Meier curve over ``horizon`` days: its points, the rate by the horizon with
    its interval (None when no one was followed that long), and the quantile times."""
    fitter = KaplanMeierFitter().fit(days, event)
    grid = np.linspace(0.0, horizon, _GRID_POINTS)
    survival = fitter.survival_function_at_times(grid).to_numpy()
    bands = fitter.confidence_interval_survival_function_
    at = np.searchsorted(bands.index.to_numpy(), grid, side="right") - 1
    lower = bands.iloc[:, 0].to_numpy()[at]
    upper = bands.iloc[:, 1].to_numpy()[at]
    followed = float(days.max()) >= horizon
    times = {}
    for share in QUANTILES:
        value = float(qth_survival_times(1.0 - share, fitter.survival_function_))
        times[f"{share:g}"] = value if np.isfinite(value) and value <= horizon else None
    return {
        "n": int(days.size),
        "events": int(event.sum()),
        "days": grid.round(1).tolist(),
        "reoffended": (1.0 - survival).tolist(),
        "low": (1.0 - upper).tolist(),
        "high": (1.0 - lower).tolist(),
        "rate": float(1.0 - survival[-1]) if followed else None,
        "rate_ci": [float(1.0 - upper[-1]), float(1.0 - lower[-1])] if followed else None,
        "days_to_share": times,
    }


def reoffence_curves(
    frame: pd.DataFrame, *, extract: pd.Timestamp, recording_days: int, horizon: int
) -> dict:
    """Kaplan-Meier curves of the time to a recorded re-offence: one per tier among the
    notified, and one for everyone not notified (``groups``); ``reason`` when there is no
    follow-up at all."""
    followed = follow_up(frame, extract=extract, recording_days=recording_days)
    out = {"horizon_days": horizon, "groups": {}, "reason": None}
    if followed.empty:
        out["reason"] = NO_FOLLOW_UP
        return out
    notified = followed["notified"].to_numpy(dtype=bool)
    for tier in sorted(followed.loc[notified, "tier"].astype(str).unique()):
        rows = notified & (followed["tier"].astype(str) == tier).to_numpy()
        out["groups"][f"{NOTIFIED}, tier {tier}"] = _curve(
            followed["days"].to_numpy()[rows], followed["event"].to_numpy()[rows], horizon
        )
    if (~notified).any():
        out["groups"][NOT_NOTIFIED] = _curve(
            followed["days"].to_numpy()[~notified], followed["event"].to_numpy()[~notified], horizon
        )
    return out


def _strata(matured: pd.DataFrame, bands: int) -> np.ndarray:
    """Risk stratum of each row: its tier and its score band, the bands being quantiles of the
    notified's probabilities (so every band holds notified people)."""
    notified = matured["notified"].to_numpy(dtype=bool)
    probability = matured["probability"].to_numpy(dtype=float)
    edges = np.unique(np.quantile(probability[notified], np.linspace(0, 1, bands + 1)[1:-1]))
    band = np.searchsorted(edges, probability, side="right")
    tier = pd.factorize(matured["tier"].astype(str), sort=True)[0]
    return tier * (edges.size + 1) + band


def _att(totals: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """From (..., strata, 2 arms, [positives, n]) totals: the notified's rate, the matched
    comparison rate (strata weighted by their notified) and the share of notified in strata
    with both arms."""
    positives, n = totals[..., 0], totals[..., 1]
    both = (n[..., 0] > 0) & (n[..., 1] > 0)
    weight = np.where(both, n[..., 1], 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        control = np.where(both, positives[..., 0] / np.where(n[..., 0] > 0, n[..., 0], 1), 0.0)
        treated = np.sum(np.where(both, positives[..., 1], 0.0), axis=-1) / weight.sum(-1)
        matched = np.sum(weight * control, axis=-1) / weight.sum(-1)
        covered = weight.sum(-1) / n[..., 1].sum(-1)
    return treated, matched, covered


def notification_effect(
    matured: pd.DataFrame, settings: ProgrammeConfig, *, n_resamples: int, seed: int
) -> dict:
    """The effect of notification on recorded re-offence within the label window, as a
    difference of rates (notified minus matched not-notified), with a person-bootstrap 95 %
    interval, in strata of tier x ``settings.score_bands``. ``estimate`` is None, with
    ``reason``, when there is nothing to compare (fewer than ``settings.min_notified`` notified
    or ``settings.min_controls`` not notified).

    Scores of people notified before the score's date (``notified_before``, when given) are
    left out of both sides: their notification already acts, so they are neither a first
    notification nor a not-yet-notified comparison.
    """
    before = matured["notified_before"].to_numpy(bool) if "notified_before" in matured else None
    n_before = int(before.sum()) if before is not None else 0
    if n_before:
        matured = matured[~before].reset_index(drop=True)
    n_notified = int(matured["notified"].sum()) if len(matured) else 0
    out = {
        "estimate": None,
        "ci_low": None,
        "ci_high": None,
        "truth": None,
        "reason": None,
        "scale": "difference in the rate of a recorded re-offence within the label window",
        "n_notified": n_notified,
        "n_controls": int(len(matured) - n_notified),
        "n_notified_before": n_before,
        "assumptions": ASSUMPTIONS,
    }
    if matured.empty:
        out["reason"] = NO_MATURED_OUTCOMES
        return out
    if n_notified < settings.min_notified or out["n_controls"] < settings.min_controls:
        out["reason"] = TOO_FEW.format(
            n_notified=n_notified,
            n_controls=out["n_controls"],
            min_notified=settings.min_notified,
            min_controls=settings.min_controls,
        )
        return out
    strata = _strata(matured, settings.score_bands)
    codes, _ = pd.factorize(strata, sort=True)
    n_strata = int(codes.max()) + 1
    cells = codes * 2 + matured["notified"].to_numpy(dtype=int)
    stats = np.column_stack([matured["label"].to_numpy(dtype=float), np.ones(len(matured))])
    observed = np.zeros((n_strata * 2, 2))
    np.add.at(observed, cells, stats)
    treated, matched, covered = _att(observed.reshape(n_strata, 2, 2))
    if not covered > 0:
        out["reason"] = NO_OVERLAP
        return out
    boot = bootstrap(matured, n_resamples=n_resamples, seed=seed)
    resampled = boot.totals(stats, cells, n_strata * 2).reshape(n_resamples, n_strata, 2, 2)
    boot_treated, boot_matched, _ = _att(resampled)
    low, high = boot.interval(boot_treated - boot_matched)
    out.update(
        estimate=float(treated - matched),
        ci_low=float(low),
        ci_high=float(high),
        notified_rate=float(treated),
        matched_rate=float(matched),
        notified_matched_share=float(covered),
        n_strata=n_strata,
    )
    return out


def _cumulative_hazard(rate: float) -> float:
    return -np.log1p(-min(rate, 1.0 - 1e-9))


def feedback_loop(effect: dict, uplifts: list[float], *, positives: int) -> dict:
    """The offending difference each recording uplift implies, and the uplift that would
    explain the whole recorded difference.

    An uplift ``u`` means a notified person's offence is ``u`` times as likely to be recorded
    as a comparable not-notified person's. On the cumulative-hazard scale (recorded hazard =
    offending hazard x recording probability), the notified's offending rate without the
    uplift is ``1 - (1 - r) ** (1 / u)``; ``share_of_notified_labels`` is the part of the
    notified's recorded re-offences the uplift alone adds, labels the next model would learn
    from as if they were offending.
    """
    out = {"uplifts": [], "explaining_uplift": None, "reason": effect["reason"]}
    if effect["estimate"] is None:
        return out
    treated, matched = effect["notified_rate"], effect["matched_rate"]
    for uplift in uplifts:
        offending = 1.0 - np.exp(-_cumulative_hazard(treated) / uplift)
        out["uplifts"].append(
            {
                "uplift": float(uplift),
                "notified_offending_rate": float(offending),
                "offending_difference": float(offending - matched),
                "share_of_notified_labels": max(0.0, float(1.0 - offending / treated))
                if treated
                else 0.0,
            }
        )
    if matched > 0:
        out["explaining_uplift"] = float(_cumulative_hazard(treated) / _cumulative_hazard(matched))
    out["notified_positive_labels"] = int(positives)
    return out
