"""Every generation parameter with its documented default.

These are generator settings, not pipeline configuration, so they live here (and on the
``ipvi generate`` command line) rather than in the YAML. The defaults are part of the data
contract of issue 2: linkage and the model must not be able to make their job easy.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

DEFAULT_EXTRACT_DATE = dt.date(2026, 1, 1)


@dataclass(frozen=True)
class HazardParams:
    """Log-hazard of a new IPV offence per day at liberty, as a function of the recorded state.

    The hazard over an index offence's follow-up window is ``Z * h(state at T) * g(s)``: ``Z``
    the person's gamma frailty (mean 1), ``h`` the exponentiated linear predictor below (with
    two non-additive terms), and ``g(s)`` an early-liberty factor (``early_factor`` during the
    first ``early_days`` at liberty, 1 afterwards). Each offence is recorded with probability
    ``r`` (police presence in the neighbourhood, raised for notified offenders); only recorded
    offences change the recorded state.
    """

    base_per_year: float = 0.16
    prior_offences: float = 0.05  # per recorded prior IPV offence, capped at 4
    recent_prior: float = 0.15  # previous recorded IPV offence within 180 days of the index
    strangulation: float = 0.30
    strangulation_x_prior: float = 0.45  # non-additive: strangulation in a repeat pattern
    weapon: float = 0.25
    threat_to_kill: float = 0.20
    weapon_x_threat: float = 0.40  # non-additive: a weapon and a threat to kill together
    injury: float = 0.10
    order_violation: float = 0.50  # any protective-order violation on record
    probation_violation: float = 0.35
    order_active: float = 0.15
    non_ipv_violence: float = 0.22  # per prior non-IPV violent arrest, capped at 3
    age_per_decade: float = -0.25  # centred at 30
    young_x_prior: float = 0.30  # non-additive: under 25 with a prior IPV offence
    female: float = -0.35
    notified: float = -0.35  # notification lowers the hazard
    # per year since the first recorded IPV offence (desistance; 0 = none, as issue 2's world):
    # a generated deployment sets it so that careers end and the world settles into a steady state
    career_years: float = 0.0
    early_factor: float = 1.5
    early_days: float = 90.0
    frailty_shape: float = 6.0  # gamma shape k (rate k): smaller = more unobserved heterogeneity


@dataclass(frozen=True)
class RecordingParams:
    """Probability that an offence becomes a police record (and so an index event / label)."""

    base: float = 0.62
    notified_logit: float = 0.6  # notified offenders are watched: more of their offences recorded
    non_ipv_violence_per_year: float = 0.10  # rate (times frailty) of prior non-IPV violent arrests
    non_ipv_lookback_days: float = 5 * 365.0


@dataclass(frozen=True)
class NoiseParams:
    """Identifier noise per mention (issue 2 defaults)."""

    first_typo: float = 0.08
    nickname: float = 0.06
    last_typo: float = 0.05
    dob_missing: dict[str, float] = field(
        default_factory=lambda: {
            "police": 0.12,
            "jail": 0.03,
            "court": 0.14,
            "protective_orders": 0.35,
            "probation": 0.05,
        }
    )
    dob_missing_victim_extra: float = 0.10
    dob_swap: float = 0.02
    dob_digit: float = 0.03
    ssn_missing: float = 0.60
    name_swap: float = 0.02
    namesake_dob: float = 0.25  # a namesake's DOB copied in (wrong pick in a name index)
    surname_change_women: float = 0.15  # over ten years
    old_surname_after_change: float = 0.15
    hyphenate_on_change: float = 0.30
    moves_per_year: float = 0.12
    stale_address: float = 0.08
    junior_senior_share: float = 0.02
    second_agency_id: float = 0.03
    reused_agency_id: float = 0.003
    case_ref_missing: float = 0.08
    case_ref_garbled: float = 0.06
    malformed_share: float = 0.004


# The drifts a generated deployment can inject (``ipvi generate --deployment --drift NAME``,
# ``ipvi simulate --drift NAME``), each from ``DriftParams.start`` (the start of the monitored
# period unless given). README "Watching the live model" lists them too.
DRIFTS = {
    "recording_shift": "a recording-policy change: offences in the neighbourhoods that hold about "
    "a fifth of the offenders are recorded 30 % more often (probability x 1.3, at most 0.99), "
    "and their first recorded offences come 1.3 times as often per day",
    "new_feed": "a new police records feed: dates of birth, SSN-4 and phones missing far more "
    "often and the incident flags (weapon, strangulation, injury, threat, children) often blank",
    "offence_mix": "a change in the offence mix: strangulation x 2, weapons x 1.8, threats to "
    "kill x 1.5 and injuries x 1.4 as often as before",
}


@dataclass(frozen=True)
class DriftParams:
    """One injected drift (:data:`DRIFTS`) and its size, from ``start`` on."""

    name: str
    start: dt.date
    recording_factor: float = 1.3
    recording_share: float = 0.2  # share of offenders living in the shifted neighbourhoods
    feed_agency: str = "police"
    feed_dob_missing: float = 0.45
    feed_flag_missing: float = 0.5
    mix_strangulation: float = 2.0
    mix_weapon: float = 1.8
    mix_threat: float = 1.5
    mix_injury: float = 1.4


@dataclass(frozen=True)
class SynthParams:
    """Everything ``generate`` needs; the CLI sets the first few, the rest keep their defaults."""

    persons: int = 3000
    years: int = 10
    seed: int = 7  # with persons=3000: the shipped sample (data_samples/)
    extract_date: dt.date = DEFAULT_EXTRACT_DATE
    label_bias: float = 0.5  # logit shift of recording per SD of police presence
    segregation: float = 0.6  # 0: neighbourhoods mirror the city; 1: fully segregated
    decision_lag_days: int = 3
    window_days: float = 365.0
    horizon_grace_days: float = 90.0
    hazard: HazardParams = HazardParams()
    recording: RecordingParams = RecordingParams()
    noise: NoiseParams = NoiseParams()
    drift: DriftParams | None = None
