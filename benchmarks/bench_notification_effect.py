"""Recovery of the notification effect (monitoring/programme.py) on generated careers.

The generator (``synth.offending``) notifies offenders in tiers A and B at random (70 %), and
notification lowers the offending hazard (``HazardParams.notified``) and raises the recording
probability (``RecordingParams.notified_logit``). For every index offence whose window is
observed it keeps the hazard ``h``, the recording probability ``r`` and the frailty posterior
(``post_shape``, ``post_rate``), so the probability of a recorded re-offence with notification
undone is known exactly. That gives the truth, on the notified, of the effect on recorded
re-offence (and its offending-only part), and a risk score without notification for the
matched comparison (the role the model's probability plays in ``ipvi monitor``).

One JSON line: per seed the estimate, its interval, the truth and whether the interval covers
it; the offending-only truth and the feedback-loop check's offending difference at the true
recording uplift.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
import pandas as pd

from ipvi.config import load_config
from monitoring.programme import feedback_loop, notification_effect
from synth.core import simulate_offending
from synth.offending import early_integral
from synth.params import SynthParams


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def run_seed(persons: int, seed: int, settings) -> dict:
    params = SynthParams(persons=persons, seed=seed)
    cohort = simulate_offending(params)
    off = cohort.careers.offences.sort_values(["offender", "seq"], kind="stable")
    # Notification acts from the first one on (the generator's ``ever_notified``); offences
    # after a first notification are neither first notifications nor comparisons (the
    # monitor's ``notified_before``).
    ever = off.groupby("offender")["notified"].cummax()
    before = ever.groupby(off["offender"]).shift(fill_value=False).to_numpy(bool)
    treated = off["notified"].to_numpy(bool) & ~before
    hz, rec = params.hazard, params.recording
    g_w = early_integral(np.array(params.window_days), hz.early_factor, hz.early_days)
    h, r = off["h"].to_numpy(), off["r"].to_numpy()
    a, b = off["post_shape"].to_numpy(), off["post_rate"].to_numpy()
    h0 = np.where(treated, h / np.exp(hz.notified), h)
    r0 = np.where(treated, _sigmoid(np.log(r / (1 - r)) - rec.notified_logit), r)

    def recorded(rate: np.ndarray) -> np.ndarray:
        return 1.0 - (b / (b + rate * g_w)) ** a

    p_rec, p_without = recorded(r * h), recorded(r0 * h0)
    p_offending_only = recorded(r0 * h)  # notified's offending, recorded as if not notified
    observed = off["observed"].to_numpy(bool)
    frame = pd.DataFrame(
        {
            "person_id": off["offender"].to_numpy(),
            "tier": off["tier"].astype(str).to_numpy(),
            "probability": p_without,
            "notified": treated,
            "notified_before": before,
            "label": off["label"].to_numpy(int),
        }
    )[observed].reset_index(drop=True)
    on = treated & observed
    truth = float(np.mean(p_rec[on] - p_without[on]))
    offending_truth = float(np.mean(p_offending_only[on] - p_without[on]))
    uplift = float(np.mean(r[on] / r0[on]))
    effect = notification_effect(
        frame, settings.programme, n_resamples=settings.n_bootstrap, seed=seed
    )
    loop = feedback_loop(
        effect, [uplift], positives=int(frame.loc[frame["notified"], "label"].sum())
    )
    return {
        "seed": seed,
        "n_notified": effect["n_notified"],
        "n_controls": effect["n_controls"],
        "estimate": round(effect["estimate"], 4),
        "ci": [round(effect["ci_low"], 4), round(effect["ci_high"], 4)],
        "truth": round(truth, 4),
        "covered": effect["ci_low"] <= truth <= effect["ci_high"],
        "offending_truth": round(offending_truth, 4),
        "true_recording_uplift": round(uplift, 3),
        "offending_difference_at_true_uplift": round(loop["uplifts"][0]["offending_difference"], 4),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--persons", type=int, default=20_000)
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    persons, seeds = (5_000, 1) if args.quick else (args.persons, args.seeds)
    settings = load_config().monitoring
    started = time.perf_counter()
    runs = [run_seed(persons, seed, settings) for seed in range(seeds)]
    print(
        json.dumps(
            {
                "benchmark": "notification_effect",
                "persons": persons,
                "covered": sum(run["covered"] for run in runs),
                "seeds": runs,
                "seconds": round(time.perf_counter() - started, 1),
            }
        ),
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
