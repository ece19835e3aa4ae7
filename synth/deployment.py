"""A generated deployment: scores issued by a champion, staff decisions, and the truth to check.

The world of :mod:`synth.core` runs on; from the deployment date (``start``) the champion,
trained on the years before it, scores every IPV offence at its decision date, a month at a
time, through the scoring core the service uses (:meth:`training.scoring.RiskScorer.score_offences`,
which ``score_many`` calls for ``/v1/score``), and
the scores are kept as the service keeps them (:mod:`training.issued`, ``source`` = api).

Staff decisions follow the generator's own notifications, which carry the true effect
(``HazardParams.notified`` lowers offending, ``RecordingParams.notified_logit`` raises
recording): every offence the generator notified gets a notifying action (a call-in, a letter,
a detective's or a one-to-one notification) on its decision date; the others get a
non-notifying action or none. Staff override the tier at ``override_rate``, with a reason.

:func:`notification_truth` is the estimand ``ipvi monitor`` estimates: among the notified
offences scored in the deployment whose window has matured, the mean effect of their
notification on a recorded re-offence within the label's window, computed exactly from the
generator's closed-form probabilities (the notification flipped, :mod:`synth.offending`), and
its two parts, offending and recording.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ipvi.columns import Columns
from ipvi.db import session_scope
from ipvi.errors import IpviError
from synth.params import DRIFTS, DriftParams, HazardParams, SynthParams
from training.data import SCORING_MENTIONS, read_history
from training.features import persons_table
from training.issued import issued_rows, store_issued
from training.offences import assign_offences, index_offences, person_events
from training.scoring import RiskScorer

MIN_PERSONS = 1000
# A deployment's world settles into a steady state, as a live system's does: careers end
# (the hazard falls by half a log-unit a year since the first recorded offence, from a higher
# start), and the years before the monitored ones let the registry's histories fill in. Without
# this the generator's careers only accumulate (offences per year triple over 13 years, mean
# recorded priors go from 0.1 to 3.5), which every drift measure rightly flags.
DEPLOYMENT_YEARS = 20
DEPLOYMENT_HAZARD = HazardParams(base_per_year=0.3, career_years=-0.5)
UNKNOWN_DRIFT = "unknown drift {name!r}: choose one of {names}"
TOO_FEW_PERSONS = (
    "--persons {n} is too few for a deployment: at least {minimum} (training on the early years "
    "and a monitored period both need offences)"
)
# What staff do for a notified offence, by the generator's tier (A and B are notified).
NOTIFYING = {
    "A": {"call_in": 0.45, "detective_notification": 0.35, "one_to_one_notification": 0.2},
    "B": {"letter": 0.6, "detective_notification": 0.25, "call_in": 0.15},
}
NOT_NOTIFYING = {"no_action": 0.6, "advocate_outreach": 0.25, "prosecution_referral": 0.15}
DECIDED_WITHOUT_NOTIFICATION = 0.6  # share of offences not notified that get a decision
ADVOCATE_FIRST = 0.9  # notifications with advocate contact first
OVERRIDE_REASONS = {
    "new information from the victim advocate": 0.35,
    "record of this incident incomplete": 0.25,
    "supervisor judgement: risk higher than the tier": 0.2,
    "supervisor judgement: risk lower than the tier": 0.12,
    "possible wrong link between records": 0.08,
}


@dataclass(frozen=True)
class Deployment:
    """Where the deployment runs: the champion serves from ``start`` to the extract date."""

    params: SynthParams
    start: dt.date
    override_rate: float = 0.1

    @property
    def end(self) -> dt.date:
        return self.params.extract_date


def deployment_params(
    *,
    persons: int,
    seed: int,
    drift: str | None = None,
    monitored_years: int = 3,
    override_rate: float = 0.1,
    **synth,
) -> Deployment:
    """The generator's parameters for a deployment over the last ``monitored_years`` (any
    ``drift`` of :data:`synth.params.DRIFTS` starting with it); ``synth``: further
    :class:`~synth.params.SynthParams` (years, extract_date, label_bias, segregation).

    Raises
    ------
    IpviError
        An unknown drift, too few persons, a negative seed, or an override rate outside
        [0, 1].
    """
    if drift is not None and drift not in DRIFTS:
        raise IpviError(UNKNOWN_DRIFT.format(name=drift, names=", ".join(DRIFTS)))
    if persons < MIN_PERSONS:
        raise IpviError(TOO_FEW_PERSONS.format(n=persons, minimum=MIN_PERSONS))
    if seed < 0:
        raise IpviError(f"--seed must be 0 or more, got {seed}")
    if not 0.0 <= override_rate <= 1.0:
        raise IpviError(f"--override-rate must be between 0 and 1, got {override_rate}")
    defaults = {"years": DEPLOYMENT_YEARS, "hazard": DEPLOYMENT_HAZARD}
    base = SynthParams(persons=persons, seed=seed, **{**defaults, **synth})
    if not 1 <= monitored_years <= base.years - 3:
        raise IpviError(
            f"--years {base.years} leaves too few years before the {monitored_years} monitored "
            "ones: training needs at least 3"
        )
    end = base.extract_date
    start = end.replace(year=end.year - monitored_years)
    drifting = None if drift is None else DriftParams(name=drift, start=start)
    params = dataclasses.replace(base, drift=drifting)
    return Deployment(params=params, start=start, override_rate=override_rate)


def _months(start: dt.date, end: dt.date) -> list[pd.Timestamp]:
    return list(pd.date_range(pd.Timestamp(start), pd.Timestamp(end), freq="MS"))


def issue_scores(engine, scorer: RiskScorer, deployment: Deployment) -> pd.DataFrame:
    """Score every IPV offence whose decision date falls in the deployment, as of that date,
    one month's offences at a time, and keep them in ``issued_scores`` (``source`` = api).

    Returns
    -------
    DataFrame
        One row per issued score: ``person_id``, ``index_event_id``, ``as_of``, ``tier``,
        ``band``, ``probability``.
    """
    history = read_history(engine, mention_columns=SCORING_MENTIONS)
    settings = scorer.bundle.settings
    by_person = assign_offences(person_events(*history), window_days=settings.offence_window_days)
    index = index_offences(by_person, settings.decision_lag_days)
    persons = persons_table(history[1], history[2])
    as_of = pd.DatetimeIndex(np.asarray(index["as_of"]))
    months = _months(deployment.start, deployment.end)
    issued = []
    for first, following in zip(months, [*months[1:], pd.Timestamp(deployment.end)], strict=True):
        month = index.take((as_of >= first) & (as_of < following))
        if not len(month):
            continue
        scored = scorer.score_offences(month, by_person, persons)
        rows = issued_rows(
            scored,
            features=scorer.bundle.features,
            source="api",
            history="registry",
            issued_at=(following - pd.Timedelta(seconds=1)).to_pydatetime(),
        )
        with session_scope(engine) as session:
            store_issued(session, rows)
        issued.append(
            Columns(
                {
                    name: scored[name]
                    for name in ("person_id", "index_event_id", "as_of", "tier", "band")
                }
                | {"probability": scored["probability"]}
            ).to_frame()
        )
    if not issued:
        raise IpviError(
            f"no IPV offence had its decision date between {deployment.start} and "
            f"{deployment.end}: nothing to issue"
        )
    return pd.concat(issued, ignore_index=True)


def read_truth_offences(truth_dir: str | Path) -> pd.DataFrame:
    """The generator's index offences, one row per event id of each (``event_id``)."""
    truth = pd.read_csv(Path(truth_dir) / "index_offences.csv", dtype={"event_ids": str})
    truth["event_id"] = truth["event_ids"].fillna("").str.split(";")
    return truth.explode("event_id").reset_index(drop=True)


def match_truth(issued: pd.DataFrame, truth: pd.DataFrame) -> pd.DataFrame:
    """Each issued score with the generator's offence its index event belongs to (columns of
    the truth, NaN when the event is in no generated offence)."""
    columns = [
        "event_id",
        "tier",
        "notified",
        "window_observed",
        "p_recorded",
        "p_recorded_if_flipped",
        "p_recorded_if_flipped_hazard",
        "p_true",
        "p_true_if_flipped",
        "zip",
        "neighbourhood",
    ]
    known = (
        truth[columns]
        .drop_duplicates("event_id")
        .rename(columns={"event_id": "index_event_id", "tier": "true_tier"})
    )
    out = issued.merge(known, on="index_event_id", how="left")
    for flag in ("notified", "window_observed"):  # False for an event in no offence
        out[flag] = out[flag].astype("boolean").fillna(False).astype(bool)
    return out


def staff_decisions(matched: pd.DataFrame, *, override_rate: float, seed: int) -> list[dict]:
    """The decisions staff record for the issued scores (:class:`serving.schemas.DecisionRequest`
    fields): a notifying action for every offence the generator notified, on its decision date;
    a non-notifying one for most others; overrides of the tier at ``override_rate``."""
    rng = np.random.default_rng([seed, 20])
    n = len(matched)
    u = rng.random((n, 5))
    notified = matched["notified"].to_numpy()
    decided = notified | (u[:, 0] < DECIDED_WITHOUT_NOTIFICATION)
    tier_for_action = np.where(matched["true_tier"].fillna("B").to_numpy() == "A", "A", "B")
    actions = np.empty(n, dtype=object)
    for tier, choices in NOTIFYING.items():
        mask = notified & (tier_for_action == tier)
        actions[mask] = rng.choice(list(choices), mask.sum(), p=list(choices.values()))
    actions[~notified] = rng.choice(
        list(NOT_NOTIFYING), (~notified).sum(), p=list(NOT_NOTIFYING.values())
    )
    overridden = u[:, 1] < override_rate
    reasons = rng.choice(list(OVERRIDE_REASONS), n, p=list(OVERRIDE_REASONS.values()))
    # On the decision date, during office hours.
    decided_at = matched["as_of"] + pd.to_timedelta(np.round(8 * 60 + 540 * u[:, 2]), unit="min")
    out = []
    for k in np.flatnonzero(decided):
        out.append(
            {
                "decision_id": f"sim-{seed}-{k:07d}",
                "person_id": matched["person_id"].iat[k],
                "action": actions[k],
                "tier_decision": "overridden" if overridden[k] else "followed",
                "tier": matched["tier"].iat[k],
                "reason": reasons[k] if overridden[k] else None,
                "advocate_contacted_before_notification": bool(u[k, 3] < ADVOCATE_FIRST)
                if notified[k]
                else None,
                "decided_at": decided_at.iat[k].to_pydatetime(),
            }
        )
    return out


def notification_truth(matched: pd.DataFrame) -> dict:
    """The true effect of notification on a recorded re-offence within the label's window,
    among the notified scores whose window has matured, and its parts.

    Scores of a person notified at an earlier score of the deployment are left out, as the
    monitor leaves them out of its estimate (``notified_before``: a notifying decision before
    the score's date, and :func:`staff_decisions` records one on the date of every notified
    score): the estimand is the effect of a first notification in the deployment.

    ``truth`` = mean of ``p_recorded - p_recorded_if_flipped``; ``truth_offending`` holds
    recording at its actual level and flips the hazard (``p_recorded -
    p_recorded_if_flipped_hazard``); ``truth_recording`` is the rest. ``truth_true_reoffence``
    is the effect on any re-offence, recorded or not.
    """
    first_notified = matched["person_id"].map(
        matched.loc[matched["notified"]].groupby("person_id")["as_of"].min()
    )
    notified_before = (first_notified < matched["as_of"]).to_numpy()
    rows = matched[matched["notified"] & matched["window_observed"] & ~notified_before]
    if rows.empty:
        return {"truth": None, "truth_offending": None, "truth_recording": None, "truth_n": 0}
    p, flipped = rows["p_recorded"], rows["p_recorded_if_flipped"]
    hazard = rows["p_recorded_if_flipped_hazard"]
    return {
        "truth": float((p - flipped).mean()),
        "truth_offending": float((p - hazard).mean()),
        "truth_recording": float((hazard - flipped).mean()),
        "truth_true_reoffence": float((rows["p_true"] - rows["p_true_if_flipped"]).mean()),
        "truth_n": int(len(rows)),
        "truth_estimand": (
            "mean over the notified scores with a matured window, of people not notified at "
            "an earlier score, of P(recorded re-offence in "
            "the label's window | notified) - P(same | not notified), exact from the "
            "generator's probabilities; offending part: the hazard flipped at the actual "
            "recording; recording part: the rest"
        ),
    }
