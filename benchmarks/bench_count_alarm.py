"""Power and false-alarm rate of the zip-sliced count alarm (monitoring/counts.py) on generated
deployments, with the power of an oracle that knows the shifted zips and the date.

For each seed, the generator's world of ``ipvi simulate`` (``synth.deployment.deployment_params``:
20 years, the monitored period the last 3) is simulated twice with
``synth.core.simulate_offending``: without drift, and with the generator's own
``recording_shift`` (recording x 1.3 from the start of the monitored period in the
neighbourhoods that hold about a fifth of the offenders, whose first recorded offences also
come 1.3 times as often per day). The recorded incidents, with their dates and neighbourhoods
(one zip each), are counted per zip and month and scanned by :func:`count_alarms` exactly as
``ipvi monitor`` runs it.

Statistics compared, each scanned the same way:

- ``incidents``: recorded incidents per zip (the monitor's test);
- ``persons``: distinct persons with a recorded incident per zip and window (a repeat
  offender's bursts count once);
- ``oracle``: the one-sided binomial test of the true shifted zips' share of the first window's
  incidents against their share of the reference months (over-dispersion as the scan's), one
  test at ``alpha_alarm``: what knowing the zips and the date would buy.

Per statistic: ``first_quarter_run`` is the share of drift seeds whose monitor run at the end of
the first quarter after the change (one window judged) raises ``alarm``; ``full_run_first_window``
the share whose run at the extract date (every window judged, the family-wise correction over
all of them) raises ``alarm`` on that first window; ``false_alarm_rate`` the share of
no-drift seeds whose run at the extract date raises ``alarm`` anywhere.

``quarters_to_detection`` (the monitor's own statistic, per drift seed): the first window end
at whose run (every window so far judged, the family-wise correction over them) ``alarm`` is
raised, in windows after the change; null if no run up to the extract date alarms. The alarm
scans spans of up to ``max_span_windows`` windows ending at each window, so a persistent change
adds up; ``first_quarter_run`` is the one-window run. 20 seeds: at 100,000 persons all
caught, after 1-6 quarters (median 2); at 50,000, 19 after 2-9 (median 4); at 20,000, 3 after
4-8; no false alarm at any size (bench_count_span.py gives idealised figures). Progress, one
line per seed, on stderr.

Per seed, where the power goes: ``true_rise`` (the true zips' share of the first window over
their share of the reference months, minus 1) and ``true_llr`` (the log-likelihood ratio the
scan gives the true set); per statistic, the first-quarter run's ``first_p_*``, its chosen
set's log-likelihood ratio before the division (``first_llr_shift``) and the over-dispersion it
divides by (``first_dispersion_*``). The scan's best set is the best of every set of zips (it
ranks them by observed over expected), so its null puts p = ``alpha_alarm`` far above a fixed
set's threshold, at any number of events; ``true_llr`` grows with them. One JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
import pandas as pd
from scipy.special import xlogy
from scipy.stats import norm

from ipvi.config import load_config
from monitoring.counts import count_alarms, monthly_counts, overdispersion, windows_of
from synth.core import simulate_offending
from synth.deployment import deployment_params

STATISTICS = ("incidents", "persons")


def _incidents(cohort) -> pd.DataFrame:
    """Date, zip and offender of every recorded incident by the extract date."""
    off = cohort.careers.offences
    off = off[off["inc_rec"] <= cohort.end_day]
    day = np.floor(off["time"].to_numpy()) + cohort.epoch0
    return pd.DataFrame(
        {
            "date": pd.to_datetime(day, unit="D"),
            "zip": cohort.nbs.zip[off["neighbourhood"].to_numpy()],
            "person": off["offender"].to_numpy(),
        }
    )


def _tables(incidents: pd.DataFrame, span: pd.PeriodIndex, first: pd.Period, block: int) -> dict:
    """Per statistic, the zips x months table :func:`count_alarms` scans. For ``persons`` a
    person counts once per zip and window-long block (the blocks of the windows and of their
    reference months share one grid), in the block's first month with an incident."""
    date = incidents["date"].dt
    block_of = (date.year * 12 + date.month - first.year * 12 - first.month) // block
    keys = pd.DataFrame({"person": incidents["person"], "zip": incidents["zip"], "block": block_of})
    once = ~keys.duplicated()
    out = {}
    for name, keep in (("incidents", np.ones(len(incidents), bool)), ("persons", once.to_numpy())):
        kinds = pd.DataFrame({name: np.ones(int(keep.sum()), bool)})
        out |= monthly_counts(
            incidents["date"][keep].reset_index(drop=True),
            incidents["zip"][keep].reset_index(drop=True),
            kinds,
            span,
        )
    return out


def _oracle(table: pd.DataFrame, window: pd.PeriodIndex, zips: list[str], settings) -> dict:
    """Whether the true zips' share of ``window`` rose significantly at ``alpha_alarm``
    (``caught``); their share of the window over their share of the reference months, minus 1
    (``rise``); and the log-likelihood ratio the scan gives that set, before the division by
    the over-dispersion (``llr``: the expected counts, as in the scan, share the window's and the
    reference's events by the window's share of all)."""
    blocks = settings.reference_months // settings.window_months
    reference = pd.period_range(window[0] - settings.reference_months, window[0] - 1, freq="M")
    per_block = table[reference].to_numpy().reshape(len(table), blocks, -1).sum(2)
    inside = table.index.isin(zips)
    share = per_block[inside].sum() / per_block.sum()
    counts = table[window].to_numpy().sum(axis=1)
    n, x = counts.sum(), counts[inside].sum()
    z = (x - n * share) / np.sqrt(n * share * (1 - share) * overdispersion(per_block))
    both = counts[inside].sum() + per_block[inside].sum()
    e = both * n / (n + per_block.sum())
    llr = xlogy(x, x / e) + xlogy(n - x, (n - x) / (n - e)) if x > e else 0.0
    return {
        "caught": bool(z >= norm.isf(settings.alpha_alarm)),
        "rise": float(x / n / share - 1.0),
        "llr": float(llr),
    }


def _quarters_to_detection(table: dict, windows: list, settings, seed: int) -> int | None:
    """The number of windows after the change at whose end the monitor's run (every window so
    far judged, the family-wise correction over them) first raises ``alarm``; None if none."""
    for end in range(1, len(windows) + 1):
        run = count_alarms(table, windows[:end], settings, seed=seed)["windows"]
        if any(w["level"] == "alarm" for w in run):
            return end
    return None


def run_seed(persons: int, seed: int, settings) -> dict:
    out = {}
    for drift in (None, "recording_shift"):
        deployment = deployment_params(persons=persons, seed=seed, drift=drift)
        cohort = simulate_offending(deployment.params)
        incidents = _incidents(cohort)
        first = pd.Period(deployment.start, "M")
        last = pd.Period(deployment.end, "M") - 1
        span = pd.period_range(first - settings.reference_months, last, freq="M")
        windows = windows_of(first, last, settings.window_months)
        tables = _tables(incidents, span, first, settings.window_months)
        name = drift or "null"
        out[name] = {}
        for statistic in STATISTICS:
            table = {statistic: tables[statistic]}
            full = count_alarms(table, windows, settings, seed=seed)["windows"]
            early = count_alarms(table, windows[:1], settings, seed=seed)["windows"]
            out[name][statistic] = {
                "alarm": any(w["level"] == "alarm" for w in full),
                "quarters_to_detection": _quarters_to_detection(table, windows, settings, seed)
                if drift and statistic == "incidents"
                else None,
                "full_run_first_window": full[0]["level"] == "alarm",
                "first_quarter_run": early[0]["level"] == "alarm",
                "first_p": early[0].get("p_value", 1.0),
                "first_llr": early[0].get("statistic", 0.0) * early[0].get("dispersion", 1.0),
                "first_dispersion": early[0].get("dispersion", 1.0),
            }
        if drift:
            zips = sorted(set(cohort.nbs.zip[cohort.shifted].tolist()))
            out[name]["oracle"] = _oracle(tables["incidents"], windows[0], zips, settings)
            out["chosen_share"] = float(
                np.isin(incidents["zip"], zips)[incidents["date"] < first.to_timestamp()].mean()
            )
            out["incidents_per_window"] = int(tables["incidents"][windows[0]].to_numpy().sum())
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--persons", type=int, default=20_000)
    parser.add_argument("--seeds", type=int, default=20)
    args = parser.parse_args()
    persons, seeds = (5_000, 3) if args.quick else (args.persons, args.seeds)
    settings = load_config().monitoring.counts
    started = time.perf_counter()
    runs = []
    for seed in range(seeds):
        runs.append(run_seed(persons, seed, settings))
        progress = {"seed": seed, "seconds": round(time.perf_counter() - started, 1)}
        progress |= {
            "quarters_to_detection": runs[-1]["recording_shift"]["incidents"][
                "quarters_to_detection"
            ],
            "false_alarm": runs[-1]["null"]["incidents"]["alarm"],
        }
        print(json.dumps(progress), file=sys.stderr, flush=True)

    def share(drift: str, statistic: str, key: str) -> float:
        return float(np.mean([r[drift][statistic][key] for r in runs]))

    def per_seed(drift: str, statistic: str, key: str) -> list[float]:
        return [round(r[drift][statistic][key], 3) for r in runs]

    figures = {
        "benchmark": "count_alarm",
        "persons": persons,
        "seeds": seeds,
        "alpha_alarm": settings.alpha_alarm,
        "incidents_per_window": int(np.mean([r["incidents_per_window"] for r in runs])),
        "chosen_share": round(float(np.mean([r["chosen_share"] for r in runs])), 3),
        "oracle_power": share("recording_shift", "oracle", "caught"),
        "true_rise": per_seed("recording_shift", "oracle", "rise"),
        "true_llr": per_seed("recording_shift", "oracle", "llr"),
        "quarters_to_detection": [
            r["recording_shift"]["incidents"]["quarters_to_detection"] for r in runs
        ],
        "statistics": {
            statistic: {
                "first_quarter_run": share("recording_shift", statistic, "first_quarter_run"),
                "full_run_first_window": share(
                    "recording_shift", statistic, "full_run_first_window"
                ),
                "false_alarm_rate": share("null", statistic, "alarm"),
                "first_p_shift": per_seed("recording_shift", statistic, "first_p"),
                "first_p_null": per_seed("null", statistic, "first_p"),
                "first_llr_shift": per_seed("recording_shift", statistic, "first_llr"),
                "first_dispersion_shift": per_seed(
                    "recording_shift", statistic, "first_dispersion"
                ),
                "first_dispersion_null": per_seed("null", statistic, "first_dispersion"),
            }
            for statistic in STATISTICS
        },
        "seconds": round(time.perf_counter() - started, 1),
    }
    print(json.dumps(figures), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
