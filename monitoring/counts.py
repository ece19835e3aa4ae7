"""Monthly counts of recorded incidents, injuries, strangulation and calls for service, city-wide
and by zip, and the alarm for a change in how often offences are recorded in some zips.

Outcomes take more than a year to mature, so a recording change (a new policy, more patrols in
some neighbourhoods) must show in the counts first. The model never reads a zip; monitoring
does, only to slice these counts. An event's zip is its suspect's address on the record.

The alarm (:func:`span_scan`) compares each zip's *share* of the events of a span of windows
with its share over the reference months before the span, so a city-wide rise or fall moves
nothing. Among all sets of zips it finds the one whose share rose most convincingly
(Kulldorff's scan statistic; the best set is among the zips ranked by observed over expected,
so the search is linear), and among the spans of 1, 2, ... ``max_span_windows`` windows ending
with the window judged, the one where it did (the prospective space-time scan: a persistent
change too small to see in one window adds up over the windows it lasts). Its p-value comes
from Monte Carlo draws of every span's counts at once under "no zip changed", with the
statistic divided by the over-dispersion the reference months themselves show (repeat
offenders make counts burstier than Poisson). :func:`count_alarms` runs it at the end of every
window of the monitored period and for every kind of count and corrects for the number of
tests (Bonferroni), so ``alpha_alarm`` bounds the chance that one monitoring run raises a false
alarm here.
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


# Monte Carlo draws made at a time, so a scan can stop once its p-value is known to be large.
DRAW_BATCH = 500


@dataclass
class ScanResult:
    """The most convincing rise of some zips' share of the events of a span of windows.

    ``zips``: the rows whose share rose; ``span``: the number of windows in the chosen span (the
    last ones); ``ratio``: the zips' events in the span over the number their reference share
    predicts; ``statistic``: the log-likelihood ratio divided by ``dispersion``; ``p_value``: the
    Monte Carlo p-value of the largest such statistic over the spans (one test), from ``draws``
    draws.
    """

    zips: list[int]
    span: int
    ratio: float
    statistic: float
    dispersion: float
    p_value: float
    draws: int


def _ranked(window: np.ndarray, both: np.ndarray) -> np.ndarray:
    """The zips (last axis) in the order the scan grows its sets: by the window's events over
    the window's and reference's together (observed over expected), zips with no events last."""
    with np.errstate(divide="ignore", invalid="ignore"):
        rank = np.where(both > 0, window / both, -np.inf)
    return np.argsort(-rank, axis=-1, kind="stable")


def _span_counts(
    counts: np.ndarray, reference_blocks: int, span: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per zip of (... x zips x blocks) counts: the events of the last ``span`` blocks, and of
    those with the ``reference_blocks`` blocks before them."""
    blocks = counts.shape[-1]
    inside = counts[..., blocks - span :].sum(axis=-1)
    start = blocks - span - reference_blocks
    return inside, inside + counts[..., start : blocks - span].sum(axis=-1)


def _kulldorff(window: np.ndarray, both: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row of (draws x zips) counts in the window (or span) and in it and its reference
    together (``both``, one row or one per draw), the largest log-likelihood ratio of "these
    zips' share of the window rose" over the zip sets ranked by observed over expected, and
    the size of that set. The ratio is that of the whole table, window and reference (the
    space-time scan's: a set's reference events count as evidence as much as its window's),
    so spans of different lengths are on one scale."""
    window = np.atleast_2d(window)
    both = np.broadcast_to(np.atleast_2d(both), window.shape)
    total, grand = window.sum(axis=1, keepdims=True), both.sum(axis=1, keepdims=True)
    order = _ranked(window, both)
    a = np.cumsum(np.take_along_axis(window, order, axis=1), axis=1)[:, :-1]
    b = np.cumsum(np.take_along_axis(both, order, axis=1), axis=1)[:, :-1]
    e = b * total / grand
    rest, rest_expected = total - a, total - e
    with np.errstate(divide="ignore", invalid="ignore"):
        llr = (
            xlogy(a, a / e)
            + xlogy(rest, rest / rest_expected)
            + xlogy(b - a, (b - a) / (b - e))
            + xlogy(grand - b - rest, (grand - b - rest) / (grand - b - rest_expected))
        )
        rose = (e > 0) & (rest_expected > 0) & (a / e > rest / rest_expected)
    llr = np.where(rose, np.nan_to_num(llr), 0.0)
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


def _span_llrs(
    counts: np.ndarray, reference_blocks: int, spans: int
) -> tuple[np.ndarray, np.ndarray]:
    """For (draws x zips x blocks) counts whose last ``spans`` blocks are the windows that may
    have changed, per draw and span of the last 1 ... ``spans`` blocks: the scan's
    log-likelihood ratio of the span against the ``reference_blocks`` before it (draws x spans),
    and the size of its best set."""
    llrs, sizes = [], []
    for span in range(1, spans + 1):
        llr, size = _kulldorff(*_span_counts(counts, reference_blocks, span))
        llrs.append(llr)
        sizes.append(size)
    return np.stack(llrs, axis=1), np.stack(sizes, axis=1)


def span_scan(
    blocks: np.ndarray,
    *,
    reference_blocks: int,
    spans: int,
    n_simulations: int,
    seed: int,
    stop_above: float | None = None,
) -> ScanResult:
    """Scan the zips (rows) of ``blocks`` (counts per zip and window-long block, oldest first)
    for a rise in their share of the last 1, 2, ... ``spans`` blocks (a span), each against the
    ``reference_blocks`` blocks before it: the prospective space-time scan (Kulldorff 2001), so
    a persistent change too small for one window adds up over the windows it lasts.

    The statistic is the largest, over spans and zip sets (ranked by observed over expected),
    of the log-likelihood ratio divided by the over-dispersion of that span's reference blocks
    (repeat offenders make counts burstier than Poisson). Under "no zip changed" each zip keeps
    its share in every block: given its total over all the blocks, its counts are multinomial
    with the blocks' shares of all events. The Monte Carlo draws give every span at once, so
    the p-value is that of the largest statistic over the spans, not one per span.

    The draws come ``DRAW_BATCH`` at a time from one stream and stop once so many reach the
    statistic that the p-value of all ``n_simulations`` draws, ``(1 + exceedances) / (1 +
    n_simulations)``, is sure to exceed ``stop_above`` (a sequential Monte Carlo test, after
    Besag and Clifford 1991). A p-value at or under ``stop_above`` is therefore exactly the one
    all the draws give; one above it comes from the draws made, ``(1 + exceedances) / (1 +
    draws)``; and a scan of unchanged zips stops after a few hundred draws instead of all.

    >>> ref = np.array([[100, 100, 100], [100, 100, 100], [100, 100, 200]])
    >>> span_scan(ref, reference_blocks=2, spans=1, n_simulations=999, seed=0).zips
    [2]
    """
    blocks = np.asarray(blocks, dtype=np.int64)
    spans = min(spans, blocks.shape[1] - reference_blocks)
    keep = blocks.sum(axis=1) > 0
    blocks = blocks[keep]
    llr, size = _span_llrs(blocks[None].astype(float), reference_blocks, spans)
    end = blocks.shape[1]
    dispersion = np.array(
        [
            overdispersion(blocks[:, end - s - reference_blocks : end - s])
            for s in range(1, spans + 1)
        ]
    )
    divided = llr[0] / dispersion
    chosen = int(np.argmax(divided))
    statistic = float(divided[chosen])
    rng = np.random.default_rng(seed)
    totals, time_share = blocks.sum(axis=1), blocks.sum(axis=0) / blocks.sum()
    drawn = exceedances = 0
    while drawn < n_simulations and (
        stop_above is None or (1 + exceedances) / (1 + n_simulations) <= stop_above
    ):
        batch = min(DRAW_BATCH, n_simulations - drawn)
        draws = rng.multinomial(totals, time_share, size=(batch, len(blocks)))
        null, _ = _span_llrs(draws.astype(float), reference_blocks, spans)
        exceedances += int(np.sum(null.max(axis=1) >= statistic - 1e-9))
        drawn += batch
    p_value = (1 + exceedances) / (1 + drawn)
    span = chosen + 1
    # The set the statistic was computed on: the chosen span's zips in the scan's own order.
    inside, both = _span_counts(blocks, reference_blocks, span)
    expected = both * inside.sum() / both.sum()
    ranked = _ranked(inside, both)[: int(size[0, chosen])]
    rows = np.flatnonzero(keep)[ranked]
    ratio = float(inside[ranked].sum() / expected[ranked].sum()) if statistic > 0 else 1.0
    return ScanResult(
        zips=sorted(rows.tolist()) if statistic > 0 else [],
        span=span,
        ratio=ratio,
        statistic=statistic,
        dispersion=float(dispersion[chosen]),
        p_value=p_value,
        draws=drawn,
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
    """Every window and kind judged by :func:`span_scan` over the spans of windows ending with
    it (up to ``settings.max_span_windows`` of the windows given, each span against the
    ``settings.reference_months`` before its start).

    Returns ``n_tests`` (the windows and kinds judged), ``draws`` (Monte Carlo draws per test:
    enough for the smallest p-value the correction can need) and ``windows``: per window and
    kind, the first month of the chosen span (``span_start``; the window's own ``start`` when
    the window alone is most convincing) and its reference months (``span_reference``), the zips
    whose share rose, the rise, the p-value and the draws it came from (fewer than ``draws``
    once it was sure to be above ``alpha_warn / n_tests``, so its level is decided), the
    family-wise p-value (times ``n_tests``, at most 1) and the level (``ok``, ``warn``,
    ``alarm``); a window whose reference months hold events
    in fewer than two windows' worth of months, or in which fewer than two zips hold
    ``settings.min_zip_events`` reference events, is ``judged: false`` with a reason.
    """
    block = settings.window_months
    blocks = settings.reference_months // block
    out, tests = [], []
    for w, window in enumerate(windows):
        spans = min(settings.max_span_windows, w + 1)
        reference = pd.period_range(window[0] - blocks * block, window[0] - 1, freq="M")
        months = pd.period_range(window[0] - (spans - 1 + blocks) * block, window[-1], freq="M")
        for k, kind in enumerate(tables):
            table = tables[kind].reindex(columns=months, fill_value=0)
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
            tests.append((entry, pooled, spans, w, k))
    n_tests = max(1, len(tests))
    draws = max(settings.n_simulations, math.ceil(20 * n_tests / settings.alpha_alarm))
    for entry, table, spans, w, k in tests:
        per_block = table.to_numpy().reshape(len(table), -1, block).sum(axis=2)
        result = span_scan(
            per_block,
            reference_blocks=blocks,
            spans=spans,
            n_simulations=draws,
            seed=seed + 7919 * w + k,
            stop_above=settings.alpha_warn / n_tests,
        )
        family = min(1.0, result.p_value * n_tests)
        level = (
            "alarm"
            if family <= settings.alpha_alarm
            else "warn"
            if family <= settings.alpha_warn
            else "ok"
        )
        span_start = table.columns[-result.span * block]
        entry.update(
            judged=True,
            span_start=str(span_start),
            span_reference=[str(span_start - blocks * block), str(span_start - 1)],
            zips=[str(table.index[z]) for z in result.zips],
            rise=result.ratio - 1.0,
            statistic=result.statistic,
            dispersion=result.dispersion,
            p_value=result.p_value,
            draws=result.draws,
            family_p_value=family,
            level=level,
        )
    return {"n_tests": n_tests, "draws": draws, "windows": out}
