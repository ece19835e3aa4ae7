"""Quarters to detection of a persistent recording change by the count alarm's span scan
(monitoring/counts.py) in an idealised world, for several longest spans: the figures behind
``monitoring.counts.max_span_windows``.

Each seed draws Poisson counts for 24 zips (shares from a Dirichlet(5)) over 8 reference
quarters and 12 monitored ones, ``--events`` a quarter; 5 random zips holding a fifth of the
events are recorded ``--rate`` times as often from the first monitored quarter on (x1.19 moves
their share by about +15 %, the median rise bench_count_alarm measures in the generator's
world). A monitor run at the end of quarter q judges windows 1..q; it alarms when a window's
span-max p-value, times q, is at most 0.01. The p-values come from 24,000 draws of the same
world without change (no over-dispersion here, so no division). Per longest span:
``quarters_to_detection`` per seed (null: never within 12) and ``caught`` (seeds caught). One
JSON line.

Results (20 seeds; caught within 12 quarters, longest span 1 / 4 / 8 windows): 3,600 events a
quarter (the 100,000-person world) 14 / 20 / 20; 1,800 (50,000) 2 / 8 / 13; 725 (20,000)
0 / 2 / 2.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from monitoring.counts import _span_llrs

REFERENCE, MONITORED, ZIPS, SHIFTED = 8, 12, 24, 5


def _world(rng: np.random.Generator, events: int, rate: float, n: int) -> np.ndarray:
    """(n x zips x quarters) counts, the shifted zips' rate times ``rate`` after the reference."""
    share = rng.dirichlet(np.full(ZIPS, 5.0))
    chosen = rng.choice(ZIPS, SHIFTED, replace=False)
    other = np.setdiff1d(np.arange(ZIPS), chosen)
    share[chosen] *= 0.2 / share[chosen].sum()
    share[other] *= 0.8 / share[other].sum()
    lam = np.repeat((share * events)[:, None], REFERENCE + MONITORED, axis=1)
    lam[chosen, REFERENCE:] *= rate
    return rng.poisson(lam, size=(n, ZIPS, REFERENCE + MONITORED)).astype(float)


def detection(events: int, rate: float, spans: int, seeds: int, alpha: float) -> list[int | None]:
    rng = np.random.default_rng(123)
    nulls = []
    for m in range(1, spans + 1):
        draws = _world(rng, events, 1.0, 24_000)[:, :, : REFERENCE + m]
        nulls.append(np.sort(_span_llrs(draws, REFERENCE, m)[0].max(axis=1)))
    out = []
    for seed in range(seeds):
        counts = _world(np.random.default_rng(seed), events, rate, 1)
        p_values = []
        for w in range(MONITORED):
            m = min(spans, w + 1)
            statistic = _span_llrs(counts[:, :, : REFERENCE + w + 1], REFERENCE, m)[0].max()
            null = nulls[m - 1]
            p_values.append((1 + len(null) - np.searchsorted(null, statistic - 1e-9)) / len(null))
        q = [q for q in range(1, MONITORED + 1) if min(p_values[:q]) * q <= alpha]
        out.append(q[0] if q else None)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=1_800)
    parser.add_argument("--rate", type=float, default=1.19)
    parser.add_argument("--spans", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--seeds", type=int, default=20)
    args = parser.parse_args()
    started = time.perf_counter()
    runs = {s: detection(args.events, args.rate, s, args.seeds, 0.01) for s in args.spans}
    figures = {
        "benchmark": "count_span",
        "events_per_quarter": args.events,
        "rate": args.rate,
        "seeds": args.seeds,
        "spans": {
            str(s): {"quarters_to_detection": q, "caught": sum(x is not None for x in q)}
            for s, q in runs.items()
        },
        "seconds": round(time.perf_counter() - started, 1),
    }
    print(json.dumps(figures), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
