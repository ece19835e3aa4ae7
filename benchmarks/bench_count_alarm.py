"""Power and false-alarm rate of the zip-sliced count alarm (monitoring/counts.py) on generated
careers.

For each seed, the generator's offenders and careers (``synth.core.simulate_offending``) give
the recorded incidents, injuries, strangulation and calls for service with their dates and
neighbourhoods (one zip each). The monitored period is the last ``--months`` months before
the extract date, in windows of ``monitoring.counts.window_months``, each against the
reference months before it, exactly as ``ipvi monitor`` runs :func:`count_alarms`.

A recording change of ``--shift`` (+30 %) from the start of the monitored period in the
neighbourhoods that hold about a fifth of the offenders (drawn per seed) is injected by
Poisson thinning: in those neighbourhoods every event dated before the change is kept with
probability 1 / (1 + shift), so after the change their recording is (1 + shift) times what it
was, relative to the rest of the city, and nothing else moves. The same seeds without the
change give the false-alarm rate. One JSON line: seeds, persons, the share of seeds whose first
window after the change raises ``alarm`` (power) and the share of no-change seeds that raise
``alarm`` anywhere (false-alarm rate).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
import pandas as pd

from ipvi.config import load_config
from monitoring.counts import count_alarms, monthly_counts, windows_of
from synth.core import simulate_offending
from synth.params import SynthParams


def _events(cohort) -> tuple[pd.Series, np.ndarray, pd.DataFrame]:
    """Dates, neighbourhoods and kinds of the recorded incident and call records."""
    off = cohort.careers.offences
    off = off[off["inc_rec"] <= cohort.end_day]
    day = np.floor(off["time"].to_numpy()) + cohort.epoch0
    dates = pd.Series(pd.to_datetime(np.r_[day, day[off["cfs"].to_numpy()]], unit="D"))
    nb = off["neighbourhood"].to_numpy()
    cfs = off["cfs"].to_numpy()
    n_inc = len(off)
    call = np.r_[np.zeros(n_inc, bool), np.ones(int(cfs.sum()), bool)]
    incident = ~call
    pad = np.zeros(int(cfs.sum()), bool)
    kinds = pd.DataFrame(
        {
            "incidents": incident,
            "injuries": np.r_[off["injury"].to_numpy(bool), pad],
            "strangulation": np.r_[off["strang"].to_numpy(bool), pad],
            "calls_for_service": call,
        }
    )
    return dates, np.r_[nb, nb[cfs]], kinds


def run_seed(persons: int, seed: int, months: int, shift: float, settings) -> dict:
    params = SynthParams(persons=persons, seed=seed)
    cohort = simulate_offending(params)
    dates, nb, kinds = _events(cohort)
    extract = pd.Timestamp(params.extract_date)
    last = (extract - pd.DateOffset(months=1)).to_period("M")
    first = last - months + 1
    span = pd.period_range(
        first - settings.reference_months - settings.window_months, last, freq="M"
    )
    windows = windows_of(first, last, settings.window_months)
    zips = pd.Series(cohort.nbs.zip[nb])
    rng = np.random.default_rng(10_000 + seed)
    # The neighbourhoods holding about a fifth of the offenders, in a random order per seed.
    share = np.bincount(cohort.people["nb0"].to_numpy(), minlength=len(cohort.nbs.zip))
    share = share / share.sum()
    order = rng.permutation(len(share))
    chosen = order[: int(np.searchsorted(np.cumsum(share[order]), 0.2)) + 1]
    before = (dates < first.to_timestamp()).to_numpy()
    thinned = np.isin(nb, chosen) & before & (rng.random(len(nb)) > 1.0 / (1.0 + shift))
    out = {"chosen_share": float(share[chosen].sum())}
    for name, keep in (("null", np.ones(len(nb), bool)), ("shift", ~thinned)):
        tables = monthly_counts(
            dates[keep].reset_index(drop=True),
            zips[keep].reset_index(drop=True),
            kinds[keep].reset_index(drop=True)[settings.kinds],
            span,
        )
        result = count_alarms(tables, windows, settings, seed=seed)
        levels = [w["level"] for w in result["windows"]]
        first_window = [w for w in result["windows"] if w["start"] == str(first)]
        out[name] = {
            "alarm": "alarm" in levels,
            "first_window_alarm": any(w["level"] == "alarm" for w in first_window),
            "found": sorted({z for w in first_window for z in w.get("zips", [])}),
            "min_family_p": min(w.get("family_p_value", 1.0) for w in result["windows"]),
        }
    out["chosen"] = sorted(cohort.nbs.zip[chosen].tolist())
    out["events_per_window"] = int(
        kinds["incidents"][(dates >= first.to_timestamp()).to_numpy()].sum() / len(windows)
    )
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--persons", type=int, default=20_000)
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--months", type=int, default=24)
    parser.add_argument("--shift", type=float, default=0.3)
    args = parser.parse_args()
    persons, seeds = (5_000, 3) if args.quick else (args.persons, args.seeds)
    settings = load_config().monitoring.counts
    started = time.perf_counter()
    runs = [run_seed(persons, seed, args.months, args.shift, settings) for seed in range(seeds)]
    figures = {
        "benchmark": "count_alarm",
        "persons": persons,
        "seeds": seeds,
        "shift": args.shift,
        "kinds": settings.kinds,
        "alpha_alarm": settings.alpha_alarm,
        "incidents_per_window": int(np.mean([r["events_per_window"] for r in runs])),
        "chosen_share": round(float(np.mean([r["chosen_share"] for r in runs])), 3),
        "power_first_window": float(np.mean([r["shift"]["first_window_alarm"] for r in runs])),
        "false_alarm_rate": float(np.mean([r["null"]["alarm"] for r in runs])),
        "null_min_family_p": [round(r["null"]["min_family_p"], 4) for r in runs],
        "shift_min_family_p": [round(r["shift"]["min_family_p"], 4) for r in runs],
        "seconds": round(time.perf_counter() - started, 1),
    }
    print(json.dumps(figures), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
