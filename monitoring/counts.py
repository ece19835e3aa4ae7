"""Monthly counts of recorded incidents, injuries, strangulation and calls for service, city-wide
and by zip, and the alarm for a change in how often offences are recorded in some zips.

Outcomes take more than a year to mature, so a recording change (a new policy, more patrols in
some neighbourhoods) must show in the counts first. The model never reads a zip; monitoring
does, only to slice these counts. An event's zip is its suspect's address on the record.

The alarm (:func:`share_scan`) compares each zip's *share* of a window's events with its share
over the reference months before it, so a city-wide rise or fall moves nothing. Among all sets
of zips it finds the one whose share rose most convincingly (Kulldorff's scan statistic; the
best set is among the zips ranked by observed over expected, so the search is linear). Its
p-value comes from Monte Carlo draws of the window's counts under "no zip changed", with the
statistic divided by the over-dispersion the reference months themselves show (repeat
offenders make counts burstier than Poisson). :func:`count_alarms` runs it for every window of
the monitored period and every kind of count and corrects for the number of tests (Bonferroni),
so ``alpha_alarm`` bounds the chance that one monitoring run raises a false alarm here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.special import xlogy
from sqlalchemy import select
from sqlalchemy.orm import Session

from ipvi.tables.ingest import events, mentions

OTHER_ZIPS = "other"
UNKNOWN_ZIP = "unknown"
KIND_NAMES = {
    "incidents": "incidents",
    "injuries": "incidents with an injury",
    "strangulation": "incidents with strangulation",
    "calls_for_service": "calls for service",
}
TOO_LITTLE_HISTORY = (
    "too little history: the reference months before this window hold too few events to "
    "compare with"
)
TOO_FEW_ZIPS = (
    "too few events to compare zips: fewer than two zips hold monitoring.counts.min_zip_events "
    "= {minimum} events over the reference months"
)
# The mention whose address places an event: the person the incident is about.
_PLACING_ROLES = ("suspect", "arrestee")


def read_incidents(session: Session, *, start: pd.Timestamp, extract: pd.Timestamp) -> pd.DataFrame:
    """Incident records dated from ``start`` and recorded by ``extract``: ``event_id``,
    ``offense_date``, ``injury``, ``strangulation``, ``offense_code`` and ``zip`` (the suspect's
    zip on the record, ``unknown`` when it has none)."""
    query = (
        select(
            events.c.event_id,
            events.c.offense_date,
            events.c.injury,
            events.c.strangulation,
            events.c.offense_code,
            mentions.c.zip,
        )
        .select_from(
            events.outerjoin(
                mentions,
                (mentions.c.event_id == events.c.event_id) & mentions.c.role.in_(_PLACING_ROLES),
            )
        )
        .where(events.c.event_type == "incident")
        .where(events.c.offense_date >= start.to_pydatetime())
        .where(events.c.recorded_at <= extract.to_pydatetime())
    )
    result = session.execute(query)
    frame = pd.DataFrame(result.fetchall(), columns=list(result.keys()))
    frame = frame.sort_values(["event_id", "zip"], na_position="last", kind="stable")
    frame = frame.drop_duplicates("event_id").reset_index(drop=True)
    frame["offense_date"] = pd.to_datetime(frame["offense_date"])
    frame["zip"] = frame["zip"].fillna(UNKNOWN_ZIP).astype(str)
    return frame


def count_kinds(incidents: pd.DataFrame, call_codes: list[str]) -> pd.DataFrame:
    """One boolean column per kind of count: an incident record is a call for service when its
    offence code is one of ``call_codes``, an incident otherwise; injuries and strangulation
    are the incidents flagged so."""
    call = incidents["offense_code"].isin(call_codes).to_numpy()
    incident = ~call
    return pd.DataFrame(
        {
            "incidents": incident,
            "injuries": incident & incidents["injury"].fillna(False).astype(bool).to_numpy(),
            "strangulation": incident
            & incidents["strangulation"].fillna(False).astype(bool).to_numpy(),
            "calls_for_service": call,
        },
        index=incidents.index,
    )


def monthly_counts(
    dates: pd.Series, zips: pd.Series, kinds: pd.DataFrame, months: pd.PeriodIndex
) -> dict[str, pd.DataFrame]:
    """Per kind, a zips x ``months`` table of counts (months outside ``months`` left out)."""
    month = dates.dt.to_period("M")
    inside = month.isin(months).to_numpy()
    out = {}
    for kind in kinds.columns:
        rows = inside & kinds[kind].to_numpy()
        # crosstab of no rows fails on period columns (a registry without calls for service).
        table = pd.crosstab(zips[rows], month[rows]) if rows.any() else pd.DataFrame(dtype=int)
        table = table.reindex(columns=months, fill_value=0)
        out[kind] = table.rename_axis(index="zip", columns="month").sort_index()
    return out


@dataclass
class ScanResult:
    """The most convincing rise of some zips' share of a window's events.

    ``zips``: the rows whose share rose; ``ratio``: their events in the window over the number
    their reference share predicts; ``statistic``: the log-likelihood ratio divided by
    ``dispersion``; ``p_value``: its Monte Carlo p-value (one test).
    """

    zips: list[int]
    ratio: float
    statistic: float
    dispersion: float
    p_value: float


def _kulldorff(window: np.ndarray, expected: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row of (draws x zips) counts, the largest log-likelihood ratio of "these zips' share
    rose" over the zip sets ranked by observed over expected, and the size of that set.
    ``expected`` gives each zip's share; each row's own total is shared out by it."""
    total = window.sum(axis=1, keepdims=True)
    scaled = expected[None, :] * (total / expected.sum())
    order = np.argsort(-(window / expected), axis=1, kind="stable")
    a = np.cumsum(np.take_along_axis(window, order, axis=1), axis=1)[:, :-1]
    e = np.cumsum(np.take_along_axis(scaled, order, axis=1), axis=1)[:, :-1]
    rest, rest_expected = total - a, total - e
    with np.errstate(divide="ignore", invalid="ignore"):
        llr = xlogy(a, a / e) + xlogy(rest, rest / rest_expected)
        rose = a / e > rest / rest_expected
    llr = np.where(rose, llr, 0.0)
    best = np.argmax(llr, axis=1)
    return llr[np.arange(len(llr)), best], best + 1


def overdispersion(reference: np.ndarray) -> float:
    """Pearson chi-square over its degrees of freedom of a zips x blocks table against
    independence (each zip keeping its share in every block), at least 1."""
    reference = reference[reference.sum(axis=1) > 0][:, reference.sum(axis=0) > 0]
    rows, blocks = reference.shape
    if rows < 2 or blocks < 2:
        return 1.0
    expected = np.outer(reference.sum(axis=1), reference.sum(axis=0)) / reference.sum()
    chi2 = float(np.sum((reference - expected) ** 2 / expected))
    return max(1.0, chi2 / ((rows - 1) * (blocks - 1)))


def share_scan(
    window: np.ndarray, reference: np.ndarray, *, n_simulations: int, seed: int
) -> ScanResult:
    """Scan the zips (rows) for a rise in their share of ``window`` (counts per zip) against
    ``reference`` (counts per zip and block, blocks as long as the window).

    Under "no zip changed", a zip's window count given its window-plus-reference total is
    binomial with the window's share of all events; the p-value counts the draws whose
    statistic reaches the observed one over the over-dispersion of the reference blocks.

    >>> ref = np.array([[100, 100], [100, 100], [100, 100]])
    >>> share_scan(np.array([100, 100, 200]), ref, n_simulations=999, seed=0).zips
    [2]
    """
    window = np.asarray(window, dtype=np.int64)
    reference_total = np.asarray(reference, dtype=np.int64).sum(axis=1)
    both = window + reference_total
    share = window.sum() / both.sum()
    expected = both * share
    keep = expected > 0
    observed, best = _kulldorff(window[None, keep].astype(float), expected[keep])
    dispersion = overdispersion(np.asarray(reference)[keep])
    statistic = float(observed[0]) / dispersion
    rng = np.random.default_rng(seed)
    draws = rng.binomial(both[keep], share, size=(n_simulations, int(keep.sum())))
    null, _ = _kulldorff(draws.astype(float), expected[keep])
    p_value = (1 + int(np.sum(null >= statistic - 1e-9))) / (n_simulations + 1)
    ranked = np.argsort(-(window[keep] / expected[keep]), kind="stable")[: int(best[0])]
    rows = np.flatnonzero(keep)[ranked]
    ratio = float(window[rows].sum() / expected[rows].sum()) if statistic > 0 else 1.0
    return ScanResult(
        zips=sorted(rows.tolist()) if statistic > 0 else [],
        ratio=ratio,
        statistic=statistic,
        dispersion=dispersion,
        p_value=p_value,
    )


def windows_of(first: pd.Period, last: pd.Period, months: int) -> list[pd.PeriodIndex]:
    """Consecutive windows of ``months`` whole months from ``first`` through ``last``; a last
    window shorter than ``months`` is left out."""
    span = pd.period_range(first, last, freq="M")
    return [span[k : k + months] for k in range(0, len(span) - months + 1, months)]


def _pooled(table: pd.DataFrame, reference: pd.PeriodIndex, minimum: int) -> pd.DataFrame:
    """Zips with fewer than ``minimum`` events over ``reference`` pooled into one row."""
    small = table[reference].sum(axis=1) < minimum
    if not small.any():
        return table
    pooled = table[~small].copy()
    pooled.loc[OTHER_ZIPS] = table[small].sum(axis=0)
    return pooled


def count_alarms(
    tables: dict[str, pd.DataFrame],
    windows: list[pd.PeriodIndex],
    settings,
    *,
    seed: int,
) -> dict:
    """Every window and kind scanned against the ``settings.reference_months`` before it.

    Returns ``n_tests`` (the windows and kinds judged), ``draws`` (Monte Carlo draws per test:
    enough for the smallest p-value the correction can need) and ``windows``: per window and
    kind, the zips whose share rose, the rise, the p-value, the family-wise p-value (times
    ``n_tests``, at most 1) and the level (``ok``, ``warn``, ``alarm``); a window whose
    reference months hold events in fewer than two windows' worth of months, or in which
    fewer than two zips hold ``settings.min_zip_events`` reference events, is ``judged:
    false`` with a reason.
    """
    block = settings.window_months
    blocks = settings.reference_months // block
    out, tests = [], []
    for w, window in enumerate(windows):
        reference = pd.period_range(window[0] - blocks * block, window[0] - 1, freq="M")
        for k, kind in enumerate(tables):
            table = tables[kind].reindex(columns=reference.append(window), fill_value=0)
            entry = {
                "start": str(window[0]),
                "end": str(window[-1]),
                "kind": kind,
                "reference": [str(reference[0]), str(reference[-1])],
                "n_window": int(table[window].to_numpy().sum()),
                "judged": False,
                "level": "ok",
            }
            out.append(entry)
            if (table[reference].sum(axis=0) > 0).sum() < 2 * block or not entry["n_window"]:
                entry["reason"] = TOO_LITTLE_HISTORY
                continue
            pooled = _pooled(table, reference, settings.min_zip_events)
            if len(pooled) < 2:
                entry["reason"] = TOO_FEW_ZIPS.format(minimum=settings.min_zip_events)
                continue
            tests.append((entry, pooled, w, k))
    n_tests = max(1, len(tests))
    draws = max(settings.n_simulations, math.ceil(20 * n_tests / settings.alpha_alarm))
    for entry, table, w, k in tests:
        window = table.columns[-block:]
        per_block = table.iloc[:, :-block].to_numpy().reshape(len(table), blocks, block).sum(2)
        result = share_scan(
            table[window].sum(axis=1).to_numpy(),
            per_block,
            n_simulations=draws,
            seed=seed + 7919 * w + k,
        )
        family = min(1.0, result.p_value * n_tests)
        level = (
            "alarm"
            if family <= settings.alpha_alarm
            else "warn"
            if family <= settings.alpha_warn
            else "ok"
        )
        entry.update(
            judged=True,
            zips=[str(table.index[z]) for z in result.zips],
            rise=result.ratio - 1.0,
            statistic=result.statistic,
            dispersion=result.dispersion,
            p_value=result.p_value,
            family_p_value=family,
            level=level,
        )
    return {"n_tests": n_tests, "draws": draws, "windows": out}
