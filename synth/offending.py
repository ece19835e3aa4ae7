"""Offending careers with an exact, closed-form probability of a recorded re-offence.

The model, per offender with gamma frailty ``Z ~ Gamma(k, rate k)``:

* A career starts with a recorded IPV offence at a uniform time (its timing carries no
  information about ``Z``). Before it, non-IPV violent arrests arrive as a Poisson process of
  rate ``Z * mu(age)`` over a look-back window, so they inform ``Z`` conjugately.
* After each recorded offence ``j`` (time ``t_j``, decision time ``T_j = day(t_j) + lag``) the
  recorded state as of ``T_j`` fixes ``h_j`` (hazard per liberty day) and ``r_j`` (recording
  probability). Until the next recorded offence, offences occur at rate ``Z h_j g(s)`` in
  liberty time ``s`` since ``T_j`` (custody stops the clock); each is recorded with probability
  ``r_j``. Unrecorded offences change no record, so they change neither ``h`` nor ``r``.
* Everything else (flags, arrests, custody, court outcomes, orders, notifications) is drawn
  independently of ``Z`` given the recorded state.

Hence, given the records as of ``T_j``, ``Z ~ Gamma(a_j, b_j)`` with
``a_j = k + V + (j - 1)`` and ``b_j = k + mu L + sum_{i<j} r_i h_i G(s_i)``, and the label
(a recorded offence within ``W`` liberty days) has the exact probability
``p_recorded = 1 - (b_j / (b_j + r_j h_j G(W))) ** a_j``, where ``G`` integrates ``g``.
Every record an offence produces is either entered at once (a call for service, an arrest)
or at most 89 days late, so "recorded by 90 days after the window's end" always holds.

An injected drift (``params.drift``) keeps the form exact. A recording shift multiplies ``r``
from a calendar day ``D`` on in some neighbourhoods: with ``s_D`` the liberty days from ``T_j``
to ``D``, the recorded exposure ``r_j G(s)`` becomes ``r_j G(s)`` up to ``s_D`` and
``r_j G(s_D) + r'_j (G(s) - G(s_D))`` after it (:func:`recorded_exposure`). An offence-mix
change alters how often offences carry each flag from ``D`` on, before the state is read.

Each offence also keeps its counterfactual: ``p_recorded_if_flipped`` is the probability with
this offence's notification flipped (notified <-> not; an earlier notification stays), and
``p_recorded_if_flipped_hazard`` flips only the hazard's notification term (recording as if
flipped is left out): the truth of the notification effect and its offending and recording parts.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pandas as pd

from synth.params import SynthParams

PROBATION_DAYS = 540


def _minute(x: np.ndarray) -> np.ndarray:
    """Round times to the minute, the resolution of the police and jail timestamps."""
    return np.round(x * 1440.0) / 1440.0


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def early_integral(s: np.ndarray, factor: float, days: float) -> np.ndarray:
    """``G(s)``: the integral of the early-liberty factor over the first ``s`` liberty days."""
    return s + (factor - 1.0) * np.minimum(s, days)


def early_inverse(x: np.ndarray, factor: float, days: float) -> np.ndarray:
    """Inverse of :func:`early_integral`."""
    return np.where(x <= factor * days, x / factor, x - (factor - 1.0) * days)


def liberty_between(
    start: np.ndarray, stop: np.ndarray, spell_start: np.ndarray, spell_end: np.ndarray
) -> np.ndarray:
    """Liberty days between ``start`` and ``stop`` (0 when ``stop <= start``), custody spells
    (as in :func:`calendar_after`) not counted: the inverse of :func:`calendar_after`."""
    order = np.argsort(spell_start, axis=1)
    starts = np.take_along_axis(spell_start, order, axis=1)
    ends = np.take_along_axis(spell_end, order, axis=1)
    t = np.minimum(start.astype(float), stop)
    free = np.zeros(len(t))
    for k in range(starts.shape[1]):
        s, e = starts[:, k], ends[:, k]
        ahead = np.isfinite(s) & (e > t) & (t < stop)
        free += np.where(ahead, np.maximum(np.minimum(s, stop) - t, 0.0), 0.0)
        t = np.where(ahead, np.maximum(t, np.minimum(e, stop)), t)
    return free + np.maximum(stop - t, 0.0)


def recorded_exposure(
    r_before: np.ndarray, r_after: np.ndarray, h: np.ndarray, G: np.ndarray, G_D: np.ndarray
) -> np.ndarray:
    """``h`` times the recorded exposure over ``G`` (integrated early-liberty factor): recording
    ``r_before`` up to ``G_D`` (the drift day's, ``inf`` when none), ``r_after`` beyond."""
    with np.errstate(invalid="ignore"):
        shifted = h * (r_before * G_D + r_after * (G - G_D))
    return np.where(G <= G_D, r_before * h * G, shifted)


def first_recorded(
    e: np.ndarray,
    r_before: np.ndarray,
    r_after: np.ndarray,
    z: np.ndarray,
    h: np.ndarray,
    G_D: np.ndarray,
    hz,
) -> np.ndarray:
    """Liberty time of the first offence recorded with probability ``r_before`` then
    ``r_after`` (past ``G_D``), given a unit exponential draw ``e``, frailty ``z`` and hazard
    ``h``."""
    before = e / (z * r_before * h)
    with np.errstate(invalid="ignore"):
        after = G_D + (e / (z * h) - r_before * G_D) / r_after
    return early_inverse(np.where(before <= G_D, before, after), hz.early_factor, hz.early_days)


def calendar_after(
    start: np.ndarray, liberty: np.ndarray, spell_start: np.ndarray, spell_end: np.ndarray
) -> np.ndarray:
    """The calendar time reached after ``liberty`` days at liberty from ``start``.

    Custody spells (one row of padded columns per person, ``inf`` for none) stop the clock.
    """
    order = np.argsort(spell_start, axis=1)
    starts = np.take_along_axis(spell_start, order, axis=1)
    ends = np.take_along_axis(spell_end, order, axis=1)
    t = start.astype(float).copy()
    remaining = liberty.astype(float).copy()
    for k in range(starts.shape[1]):
        s, e = starts[:, k], ends[:, k]
        ahead = np.isfinite(s) & (e > t) & (remaining > 0)
        take = np.where(ahead, np.minimum(remaining, np.maximum(s - t, 0.0)), 0.0)
        t = t + take
        remaining = remaining - take
        jump = ahead & (remaining > 0)
        t = np.where(jump, np.maximum(t, e), t)
    return t + remaining


@dataclass
class Careers:
    """The simulated histories: one row per recorded IPV offence, and prior non-IPV violence."""

    offences: pd.DataFrame
    violence: pd.DataFrame
    frailty: np.ndarray


def drift_day(params: SynthParams, epoch0: int) -> float:
    """The drift's start in days since day 0 of the extract period (inf: no drift)."""
    if params.drift is None:
        return np.inf
    return float((params.drift.start - dt.date(1970, 1, 1)).days - epoch0)


def simulate_careers(
    rng: np.random.Generator,
    *,
    entry: np.ndarray,
    dob: np.ndarray,
    female: np.ndarray,
    neighbourhood_at,
    presence: np.ndarray,
    epoch0: int,
    end_day: float,
    params: SynthParams,
    shifted: np.ndarray | None = None,
    progress=None,
) -> Careers:
    """Simulate every offender's recorded IPV offences, their consequences and labels.

    Parameters
    ----------
    rng : numpy Generator
    entry : time (days since day 0) of each offender's first recorded IPV offence
    dob : days since 1970-01-01 of each offender's birth
    female : bool per offender
    neighbourhood_at : callable(person_index, day) -> neighbourhood index (address history)
    presence : police presence per neighbourhood (standardised)
    epoch0 : day number (since 1970-01-01) of day 0 of the extract period
    end_day : the extract date, in days since day 0
    params : all generation parameters (``params.drift``: the drift injected, if any)
    shifted : bool per neighbourhood, whose recording the drift ``recording_shift`` changes
    progress : optional callable(fraction) for a progress bar
    """
    hz, rec = params.hazard, params.recording
    n = len(dob)
    k = hz.frailty_shape
    W = params.window_days
    lag = params.decision_lag_days
    G_W = early_integral(np.array(W), hz.early_factor, hz.early_days)
    drift = params.drift
    drift_start = drift_day(params, epoch0)
    mix = drift is not None and drift.name == "offence_mix"
    recording_shift = drift is not None and drift.name == "recording_shift"
    frailty = rng.gamma(k, 1.0 / k, n)
    severity = rng.lognormal(0.0, 0.5, n)
    t = _minute(entry)
    first_time = t.copy()

    # Prior non-IPV violence: Poisson(Z * mu * L) arrests in the look-back window before entry.
    age_entry = (epoch0 + t - dob) / 365.25
    mu = rec.non_ipv_violence_per_year / 365.0 * np.exp(-0.04 * (age_entry - 30.0))
    # (within the extract period, and ending 3 days before entry: any custody is over, and no
    # offence grouping can merge one with the first IPV offence)
    lookback = np.maximum(np.minimum(rec.non_ipv_lookback_days, t) - 3.0, 0.0)
    n_violence = rng.poisson(frailty * mu * lookback)
    v_owner = np.repeat(np.arange(n), n_violence)
    v_time = _minute(t[v_owner] - 3.0 - rng.uniform(0, 1, len(v_owner)) * lookback[v_owner])
    v_arrest = v_time + _minute(rng.uniform(0.01, 0.3, len(v_owner)))
    v_release = np.minimum(
        v_arrest + _minute(rng.exponential(3.0, len(v_owner)) + 0.1), t[v_owner] - 0.5
    )
    v_release = np.maximum(v_release, v_arrest + 0.05)
    v_charge = np.floor(v_arrest + rng.uniform(0.5, 2.5, len(v_owner)))
    v_disp = v_charge + rng.integers(30, 300, len(v_owner))
    violence = pd.DataFrame(
        {
            "offender": v_owner,
            "time": v_time,
            "arrest_time": v_arrest,
            "release": v_release,
            "charge_day": v_charge,
            "disp_day": v_disp,
            "outcome": rng.choice(4, len(v_owner), p=[0.35, 0.25, 0.32, 0.08]),
            "weapon": rng.random(len(v_owner)) < 0.2,
        }
    )

    a_base = k + n_violence
    b_cum = k + mu * lookback  # grows with each completed interval
    alive = np.ones(n, dtype=bool)
    prev_t = np.full(n, np.nan)
    partner = np.zeros(n, dtype=np.int64)
    ever_notified = np.zeros(n, dtype=bool)
    # Custody spells that may still lie ahead, packed per offender (inf = none); and all spells.
    open_s = np.full((n, 0), np.inf)
    open_e = np.full((n, 0), np.inf)
    all_spells: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    history: list[dict[str, np.ndarray]] = []  # per offence number, full-length, for the state
    records: list[dict[str, np.ndarray]] = []  # per offence number, one entry per offender
    j = 0
    while alive.any():
        j += 1
        idx = np.flatnonzero(alive)
        m = len(idx)
        u = rng.random((m, 24))
        tj = t[idx]
        sev = severity[idx]
        if j > 1:
            partner[idx] += u[:, 0] < 0.25
        strang = u[:, 1] < np.minimum(0.09 * sev, 0.9)
        weapon = u[:, 2] < np.minimum(0.11 * sev, 0.9)
        threat = u[:, 3] < np.minimum(0.12 * sev, 0.9)
        injury = u[:, 4] < 0.35
        if mix:
            changed = tj >= drift_start
            strang = np.where(
                changed, u[:, 1] < np.minimum(0.09 * drift.mix_strangulation * sev, 0.9), strang
            )
            weapon = np.where(
                changed, u[:, 2] < np.minimum(0.11 * drift.mix_weapon * sev, 0.9), weapon
            )
            threat = np.where(
                changed, u[:, 3] < np.minimum(0.12 * drift.mix_threat * sev, 0.9), threat
            )
            injury = np.where(changed, u[:, 4] < 0.35 * drift.mix_injury, injury)
        children = u[:, 5] < 0.3
        cfs = u[:, 6] < 0.35
        late = cfs & (u[:, 7] < 0.143)
        inc_delay = np.where(late, 31 + 58 * u[:, 8], 0.01 + 2.49 * u[:, 8])
        inc_rec = _minute(tj + inc_delay)
        arrested = u[:, 9] < _sigmoid(
            -0.25 + 0.8 * injury + 0.9 * strang + 0.7 * weapon + 0.3 * threat
        )
        arrest_time = _minute(tj + 0.01 + 0.29 * u[:, 10])
        stay = np.select(
            [u[:, 11] < 0.55, u[:, 11] < 0.85],
            [0.2 + 1.8 * u[:, 12], 2 + 28 * u[:, 12]],
            30 + 120 * u[:, 12],
        )
        release = _minute(arrest_time + 0.02 + stay)
        dual = arrested & (u[:, 13] < 0.03)
        charged = np.where(arrested, u[:, 14] < 0.95, u[:, 14] < 0.2)
        charge_day = np.where(
            arrested,
            np.floor(arrest_time + 0.5 + 2.0 * u[:, 15]),
            np.floor(tj + 5 + 25 * u[:, 15]),
        )
        disp_day = charge_day + np.floor(30 + 270 * u[:, 16])
        outcome = np.searchsorted([0.30, 0.55, 0.93], u[:, 17])  # guilty, plea, dismissed, NG
        convicted = charged & (outcome <= 1)
        sentenced = convicted & (u[:, 18] < 0.25)
        sent_start = disp_day + 0.5
        sent_end = _minute(sent_start + 10 + 110 * u[:, 19])
        probation = convicted & (u[:, 20] < 0.6)
        prob_day = np.where(sentenced, np.ceil(sent_end), disp_day)
        pv = probation & (u[:, 21] < 0.3)
        pv_day = prob_day + np.floor(30 + (PROBATION_DAYS - 30) * u[:, 22])
        pv_jail = pv & (u[:, 23] < 0.5)
        u2 = rng.random((m, 7))
        pv_jail_end = _minute(pv_day + 0.6 + 2 + 28 * u2[:, 0])
        order = u2[:, 1] < 0.2 + 0.15 * (strang | threat | weapon)
        order_day = np.floor(tj) + np.floor(3 + 18 * u2[:, 2])
        order_entered = order_day + np.floor(3 * u2[:, 3])

        # Is an order protecting this victim in force at the time of the offence?
        violation = np.zeros(m, dtype=bool)
        for past in history:
            p_o = past["order"][idx]
            violation |= (
                p_o
                & (past["partner"][idx] == partner[idx])
                & (past["order_day"][idx] <= tj)
                & (past["order_day"][idx] + 365 > tj)
            )
        viol_entered = np.floor(tj + 0.5 + 4.5 * u2[:, 4])

        T = np.floor(tj) + lag
        # ---- the recorded state as of T (only what the records show by then) ----
        n_prior = j - 1
        recent = np.isfinite(prev_t[idx]) & (tj - prev_t[idx] < 180)
        known_flags = {
            "strang": strang & (inc_rec <= T),
            "weapon": weapon & (inc_rec <= T),
            "threat": threat & (inc_rec <= T),
        }
        po_viol = (violation & (viol_entered <= T)).astype(int)
        pv_known = np.zeros(m, dtype=int)
        po_active = order & (order_entered <= T) & (order_day < T)
        prior_charges = np.zeros(m, dtype=int)
        for past in history:
            for flag in ("strang", "weapon", "threat"):
                known_flags[flag] |= past[flag][idx] & (past["inc_rec"][idx] <= T)
            po_viol += past["violation"][idx] & (past["viol_entered"][idx] <= T)
            pv_known += past["pv"][idx] & (past["pv_day"][idx] < T)
            po_active |= (
                past["order"][idx]
                & (past["order_entered"][idx] <= T)
                & (past["order_day"][idx] < T)
                & (past["order_day"][idx] + 365 > T)
            )
            prior_charges += past["charged"][idx] & (past["charge_day"][idx] <= T)
        charged_now = charged & (charge_day <= T)
        violent = n_violence[idx]
        tier_b = charged_now & ((prior_charges >= 1) | (violent >= 1))
        tier_a = tier_b & (known_flags["strang"] | known_flags["weapon"] | (po_viol >= 1))
        tier = np.select([tier_a, tier_b, charged_now | (prior_charges >= 1)], ["A", "B", "C"], "D")
        notified = (tier_a | tier_b) & (u2[:, 5] < 0.7)
        notif_time = _minute(tj + 1.0 + 0.95 * u2[:, 6])
        notified_before = ever_notified[idx].copy()
        ever_notified[idx] |= notified
        # The counterfactual: this offence's notification flipped (an earlier one stays).
        flipped = notified_before | ~notified
        age = (epoch0 + T - dob[idx]) / 365.25
        lin = (
            np.log(hz.base_per_year / 365.0)
            + hz.prior_offences * min(n_prior, 4)
            + hz.recent_prior * recent
            + hz.strangulation * known_flags["strang"]
            + hz.strangulation_x_prior * (known_flags["strang"] & (n_prior >= 1))
            + hz.weapon * known_flags["weapon"]
            + hz.threat_to_kill * known_flags["threat"]
            + hz.weapon_x_threat * (known_flags["weapon"] & known_flags["threat"])
            + hz.injury * (injury & (inc_rec <= T))
            + hz.order_violation * (po_viol >= 1)
            + hz.probation_violation * (pv_known >= 1)
            + hz.order_active * po_active
            + hz.non_ipv_violence * np.minimum(violent, 3)
            + hz.age_per_decade * (age - 30.0) / 10.0
            + hz.young_x_prior * ((age < 25) & (n_prior >= 1))
            + hz.female * female[idx]
            + hz.career_years * (T - first_time[idx]) / 365.25
        )
        h = np.exp(lin + hz.notified * ever_notified[idx])
        h_flipped = np.exp(lin + hz.notified * flipped)
        nb = neighbourhood_at(idx, tj)
        logit_base = np.log(rec.base / (1 - rec.base)) + params.label_bias * presence[nb]
        r = _sigmoid(logit_base + rec.notified_logit * ever_notified[idx])
        r_flipped = _sigmoid(logit_base + rec.notified_logit * flipped)
        a = a_base[idx] + n_prior
        b = b_cum[idx]

        new_s = np.stack(
            [
                np.where(arrested, arrest_time + 0.02, np.inf),
                np.where(sentenced, sent_start, np.inf),
                np.where(pv_jail, pv_day + 0.6, np.inf),
            ],
            axis=1,
        )
        new_e = np.stack(
            [
                np.where(arrested, release, np.inf),
                np.where(sentenced, sent_end, np.inf),
                np.where(pv_jail, pv_jail_end, np.inf),
            ],
            axis=1,
        )
        all_spells.append((np.repeat(idx, 3), new_s.ravel(), new_e.ravel()))
        open_s, open_e = _add_spells(open_s, open_e, idx, new_s, new_e, T)

        # Recording from the drift day on (G_D: the early-liberty integral up to it).
        G_D = np.full(m, np.inf)
        r_after, r_flipped_after = r, r_flipped
        if recording_shift:
            moved = shifted[nb]
            s_D = liberty_between(
                T[moved], np.full(moved.sum(), drift_start), open_s[idx][moved], open_e[idx][moved]
            )
            G_D[moved] = early_integral(s_D, hz.early_factor, hz.early_days)
            factor = np.where(moved, drift.recording_factor, 1.0)
            r_after = np.minimum(r * factor, 0.99)
            r_flipped_after = np.minimum(r_flipped * factor, 0.99)
        exposure = recorded_exposure(r, r_after, h, G_W, G_D)
        p_rec = 1.0 - (b / (b + exposure)) ** a
        p_flipped = (
            1.0
            - (b / (b + recorded_exposure(r_flipped, r_flipped_after, h_flipped, G_W, G_D))) ** a
        )
        p_flipped_hazard = 1.0 - (b / (b + recorded_exposure(r, r_after, h_flipped, G_W, G_D))) ** a
        p_true = 1.0 - (b / (b + h * G_W)) ** a
        p_true_flipped = 1.0 - (b / (b + h_flipped * G_W)) ** a

        z = frailty[idx]
        s_rec = first_recorded(rng.exponential(1.0, m), r, r_after, z, h, G_D, hz)
        s_unrec = first_recorded(rng.exponential(1.0, m), 1 - r, 1 - r_after, z, h, G_D, hz)
        t_next = _minute(calendar_after(T, s_rec, open_s[idx], open_e[idx]))
        G_rec = early_integral(s_rec, hz.early_factor, hz.early_days)
        b_cum[idx] = b + recorded_exposure(r, r_after, h, G_rec, G_D)
        prev_t[idx] = tj
        t[idx] = t_next
        alive[idx] = t_next < end_day

        record = {
            "offender": idx,
            "seq": np.full(m, j),
            "time": tj,
            "partner": partner[idx].copy(),
            "strang": strang,
            "weapon": weapon,
            "threat": threat,
            "injury": injury,
            "children": children,
            "cfs": cfs,
            "inc_rec": inc_rec,
            "arrested": arrested,
            "arrest_time": arrest_time,
            "release": release,
            "dual": dual,
            "charged": charged,
            "charge_day": charge_day,
            "disp_day": disp_day,
            "outcome": outcome,
            "sentenced": sentenced,
            "sent_start": sent_start,
            "sent_end": sent_end,
            "probation": probation,
            "prob_day": prob_day,
            "pv": pv,
            "pv_day": pv_day,
            "pv_jail": pv_jail,
            "pv_jail_end": pv_jail_end,
            "order": order,
            "order_day": order_day,
            "order_entered": order_entered,
            "violation": violation,
            "viol_entered": viol_entered,
            "tier": tier,
            "notified": notified,
            "notif_time": notif_time,
            "decision_time": T,
            "neighbourhood": nb,
            "age": age,
            "prior_offences": np.full(m, n_prior),
            "h": h,
            "r": r,
            "post_shape": a,
            "post_rate": b,
            "p_recorded": p_rec,
            "p_true": p_true,
            "p_recorded_if_flipped": p_flipped,
            "p_recorded_if_flipped_hazard": p_flipped_hazard,
            "p_true_if_flipped": p_true_flipped,
            "r_after_drift": r_after,
            "label": s_rec <= W,
            "true_reoffense": np.minimum(s_rec, s_unrec) <= W,
        }
        records.append(record)
        history.append(
            {key: _full(n, idx, record[key], _FILL[key]) for key in _HISTORY_KEYS}
            | {"partner": _full(n, idx, record["partner"], -1)}
        )
        if progress is not None:
            progress(min(1.0, 1.0 - alive.mean()))

    offences = pd.concat([pd.DataFrame(r) for r in records], ignore_index=True)
    window_end = _window_ends(offences, all_spells, W)
    offences["window_end"] = window_end
    offences["observed"] = window_end + params.horizon_grace_days <= end_day
    return Careers(offences=offences, violence=violence, frailty=frailty)


_HISTORY_KEYS = (
    "strang",
    "weapon",
    "threat",
    "inc_rec",
    "order",
    "order_day",
    "order_entered",
    "violation",
    "viol_entered",
    "pv",
    "pv_day",
    "charged",
    "charge_day",
)
_FILL = {
    key: (np.inf if key.endswith(("_day", "_rec", "_entered")) else False) for key in _HISTORY_KEYS
}


def _add_spells(
    open_s: np.ndarray,
    open_e: np.ndarray,
    idx: np.ndarray,
    new_s: np.ndarray,
    new_e: np.ndarray,
    now: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Add new spells for the offenders ``idx`` (all those still offending), forget spells over by
    ``now`` and those of everyone else, keep rows packed."""
    n = open_s.shape[0]
    pad = np.full((n, new_s.shape[1]), np.inf)
    S = np.concatenate([open_s, pad], axis=1)
    E = np.concatenate([open_e, pad.copy()], axis=1)
    S[idx, -new_s.shape[1] :] = new_s
    E[idx, -new_e.shape[1] :] = new_e
    # Spells of offenders with no further offence, or already over, no longer matter here.
    over = np.ones_like(S, dtype=bool)
    over[idx] = E[idx] <= now[:, None]
    S[over] = np.inf
    E[over] = np.inf
    order = np.argsort(S, axis=1)
    S = np.take_along_axis(S, order, axis=1)
    E = np.take_along_axis(E, order, axis=1)
    keep = np.isfinite(S).any(axis=0)
    return S[:, keep], E[:, keep]


def _window_ends(
    offences: pd.DataFrame, spells: list[tuple[np.ndarray, np.ndarray, np.ndarray]], W: float
) -> np.ndarray:
    """Calendar end of each index offence's window: ``W`` liberty days after its decision time.

    Every custody spell of the offender that ends after the decision time stops the clock,
    including the custody that follows a re-offence inside the window.
    """
    who = np.concatenate([s[0] for s in spells])
    start = np.concatenate([s[1] for s in spells])
    end = np.concatenate([s[2] for s in spells])
    real = np.isfinite(start)
    long = pd.DataFrame({"offender": who[real], "s": start[real], "e": end[real]})
    idx = pd.DataFrame(
        {
            "oid": np.arange(len(offences)),
            "offender": offences["offender"].to_numpy(),
            "T": offences["decision_time"].to_numpy(),
        }
    )
    pairs = idx.merge(long, on="offender")
    pairs = pairs[(pairs["e"] > pairs["T"]) & (pairs["s"] < pairs["T"] + 5 * W)]
    pairs = pairs.sort_values(["oid", "s"], kind="stable")
    rank = pairs.groupby("oid").cumcount().to_numpy()
    width = int(rank.max()) + 1 if len(rank) else 1
    S = np.full((len(offences), width), np.inf)
    E = np.full((len(offences), width), np.inf)
    S[pairs["oid"].to_numpy(), rank] = pairs["s"].to_numpy()
    E[pairs["oid"].to_numpy(), rank] = pairs["e"].to_numpy()
    return calendar_after(idx["T"].to_numpy(), np.full(len(offences), W), S, E)


def _full(n: int, idx: np.ndarray, values: np.ndarray, fill) -> np.ndarray:
    out = np.full(n, fill, dtype=np.asarray(values).dtype if fill is not np.inf else float)
    out[idx] = values
    return out
