"""Small synthetic histories in the canonical form, written in code.

Two uses: the fixed input example registered with every model version (so the signature and
example never carry a real person), and a fast, self-contained data set for tests and quick
benchmarks of the training stage (the full generator lives in :mod:`synth`). The process is
simple but has the shape the model needs: offending depends on recorded history and an
unobserved propensity; offences leave incidents, arrests, charges, later dispositions, jail
bookings, protective orders and violations, each a separate agency record of one person.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ipvi.schema import EVENT_COLUMNS, MENTION_COLUMNS

EXTRACT_TAIL_DAYS = 365.0 + 90.0 + 30.0


def toy_history(
    n_persons: int = 400, *, years: int = 6, seed: int = 0, start: str = "2015-01-01"
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Canonical ``events``, ``mentions`` and a ``crosswalk`` for ``n_persons`` offenders.

    Returns
    -------
    tuple of DataFrame
        Events (:data:`ipvi.schema.EVENT_COLUMNS`), mentions
        (:data:`ipvi.schema.MENTION_COLUMNS`) and the crosswalk (``record_id``, ``person_id``,
        ``link_probability``, ``linkage_run_id``); victims are persons too.

    Examples
    --------
    >>> events, mentions, crosswalk = toy_history(20, seed=1)
    >>> set(crosswalk["record_id"]) == set(mentions["record_id"])
    True
    """
    rng = np.random.default_rng(seed)
    origin = pd.Timestamp(start)
    # Careers run on past the ``years`` shown in full, long enough that every label window
    # the extract shows as observed (one year plus the recording allowance) was simulated.
    shown = years * 365.0
    horizon = shown + EXTRACT_TAIL_DAYS
    events: list[dict] = []
    mentions: list[dict] = []
    links: list[dict] = []
    counter = iter(range(10**9))

    def record(person: str, event_id: str, role: str, agency: str, dob, sex: str) -> str:
        record_id = f"{agency}-R{next(counter)}"
        mentions.append(
            {
                "record_id": record_id,
                "agency": agency,
                "dob": dob,
                "sex": sex,
                "event_id": event_id,
                "role": role,
            }
        )
        links.append(
            {
                "record_id": record_id,
                "person_id": person,
                "link_probability": float(rng.choice([1.0, 0.97, 0.8], p=[0.8, 0.15, 0.05])),
            }
        )
        return record_id

    def event(agency: str, etype: str, when: float, recorded: float, **fields) -> str:
        event_id = f"{agency}-E{next(counter)}"
        row = dict.fromkeys(EVENT_COLUMNS)
        row.update(
            event_id=event_id,
            agency=agency,
            event_type=etype,
            offense_date=origin + pd.Timedelta(days=when),
            recorded_at=origin + pd.Timedelta(days=recorded),
            ipv=False,
            weapon=False,
            strangulation=False,
            injury=False,
            threat_to_kill=False,
            children_present=False,
        )
        row.update(fields)
        events.append(row)
        return event_id

    for p in range(n_persons):
        person = f"P{p:06d}"
        partners = 0
        victim = f"V{p:06d}-0"
        dob = (origin - pd.Timedelta(days=int(rng.integers(18 * 365, 60 * 365)))).date()
        sex = "male" if rng.random() < 0.8 else "female"
        frailty = rng.gamma(shape=1.2, scale=1 / 1.2)
        age0 = (origin.date() - dob).days / 365.25
        t = rng.uniform(0, shown * 0.5)
        prior = 0
        violations = 0
        while t < horizon:
            if rng.random() < 0.15:
                partners += 1
                victim = f"V{p:06d}-{partners}"
            severe = rng.random() < 0.2
            case = f"CASE{next(counter)}" if rng.random() < 0.85 else None
            flags = {
                "strangulation": bool(severe and rng.random() < 0.5),
                "weapon": bool(severe and rng.random() < 0.5),
                "threat_to_kill": bool(rng.random() < 0.1),
                "injury": bool(rng.random() < 0.3),
                "children_present": bool(rng.random() < 0.2),
            }
            late = 1 + (rng.exponential(40) if rng.random() < 0.05 else rng.exponential(1))
            inc = event("PD", "incident", t, t + late, case_ref=case, ipv=True, **flags)
            record(person, inc, "suspect", "PD", dob, sex)
            record(victim, inc, "victim", "PD", None, "female")
            charged = rng.random() < 0.6
            if charged:
                ch = event("CT", "charge", t, t + rng.uniform(1, 5), case_ref=case, ipv=True)
                record(person, ch, "defendant", "CT", dob, sex)
                outcome = rng.choice(["convicted", "dismissed"], p=[0.6, 0.4])
                dis = event(
                    "CT",
                    "disposition",
                    t,
                    t + rng.uniform(30, 300),
                    case_ref=case,
                    ipv=True,
                    disposition=outcome,
                )
                record(person, dis, "defendant", "CT", dob, sex)
                if outcome == "convicted" and rng.random() < 0.5:
                    pt = t + rng.uniform(30, 300)
                    pb = event("PB", "probation_start", pt, pt + 1, case_ref=case, ipv=True)
                    record(person, pb, "probationer", "PB", dob, sex)
                    if rng.random() < 0.3 * frailty:
                        pv = pt + rng.uniform(30, 300)
                        pvi = event("PB", "probation_violation", pv, pv + 1, ipv=True)
                        record(person, pvi, "probationer", "PB", dob, sex)
                        violations += 1
                if rng.random() < 0.5:
                    jin = event("JL", "custody_start", t, t + 0.2, case_ref=case, ipv=True)
                    record(person, jin, "arrestee", "JL", dob, sex)
                    stay = rng.exponential(20)
                    jout = event("JL", "custody_end", t + stay, t + stay + 0.1, case_ref=case)
                    record(person, jout, "arrestee", "JL", dob, sex)
                    t += stay
            if rng.random() < 0.3:
                po = event("PO", "protective_order", t + 2, t + 3, case_ref=case, ipv=True)
                record(person, po, "respondent", "PO", dob, sex)
                if rng.random() < 0.3 * frailty:
                    vt = t + rng.uniform(10, 200)
                    vio = event("PO", "order_violation", vt, vt + 2, ipv=True)
                    record(person, vio, "respondent", "PO", dob, sex)
                    violations += 1
            if rng.random() < 0.3:
                other = t + rng.uniform(20, 300)
                nonipv = event("PD", "incident", other, other + 1, injury=bool(rng.random() < 0.5))
                record(person, nonipv, "suspect", "PD", dob, sex)
                severe = severe or rng.random() < 0.5
            if rng.random() < 0.1:
                note = event("PD", "notification", t + 20, t + 21)
                record(person, note, "suspect", "PD", dob, sex)
            prior += 1
            age = age0 + t / 365.25
            rate = (
                frailty
                * 0.15
                * np.exp(0.3 * min(prior, 3) + 0.5 * min(violations, 2) + 0.5 * severe)
                * np.exp(-0.03 * (age - 30))
            )
            t += rng.exponential(365.0 / rate)
    events_frame = pd.DataFrame(events, columns=list(EVENT_COLUMNS))
    mentions_frame = pd.DataFrame(mentions).reindex(columns=list(MENTION_COLUMNS))
    crosswalk = pd.DataFrame(links).assign(linkage_run_id="toy")
    # The extract is taken when the simulation ends: a record entered later (a disposition
    # months after its charge) is not in it. Keeping such records would date the extract
    # after the last simulated offence, and the last label windows would count as observed
    # over months in which no offence could happen.
    extracted = events_frame["recorded_at"] <= origin + pd.Timedelta(days=horizon)
    events_frame = events_frame[extracted].reset_index(drop=True)
    kept = mentions_frame["event_id"].isin(events_frame["event_id"])
    mentions_frame = mentions_frame[kept].reset_index(drop=True)
    crosswalk = crosswalk[crosswalk["record_id"].isin(mentions_frame["record_id"])]
    return events_frame, mentions_frame, crosswalk.reset_index(drop=True)
