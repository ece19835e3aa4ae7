"""What the audit can separate on synthetic data: label bias and linkage bias.

The recorded label is a re-offence that was *recorded*; where police are more present more
re-offences are recorded. With the generator's truth, the audit compares the recorded label
with ``true_reoffense`` (recorded or not) and ``p_recorded`` by group, and the model's error
rates against both. Linkage errors change a person's visible history; the linkage section
compares the prior-offence count and tier shares by group under the pipeline's crosswalk and
under the true one. Both are built only from ``evaluation_truth``, which training writes when
it is given an explicit ``--truth DIR``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from fairness.metrics import (
    GroupMetrics,
    base_rate,
    count,
    false_negative_rate,
    false_positive_rate,
)


def _mean_true(y_true, y_pred) -> float:
    values = np.asarray(y_true, dtype=float)
    return float(np.nanmean(values)) if values.size else float("nan")


def _mean_pred(y_true, y_pred) -> float:
    values = np.asarray(y_pred, dtype=float)
    return float(np.nanmean(values)) if values.size else float("nan")


def _mean_of(y_true, y_pred, *, values) -> float:
    values = np.asarray(values, dtype=float)
    return float(np.nanmean(values)) if values.size else float("nan")


def _recorded_share(y_true, y_pred) -> float:
    """Among true re-offences (y_true), the share recorded (y_pred)."""
    truth = np.asarray(y_true) == 1
    return float(np.asarray(y_pred)[truth].mean()) if truth.any() else float("nan")


def label_bias(
    frame: pd.DataFrame, attributes: Sequence[str], decision_column: str
) -> dict[str, Any]:
    """Recorded against true re-offence by group, and error rates against each.

    ``frame`` holds ``label``, ``true_reoffense``, ``p_recorded`` and the decision column; rows
    without a truth value are left out and counted (``rows_without_truth``).
    """
    known = frame["true_reoffense"].notna() & frame["p_recorded"].notna()
    skipped = int((~known).sum())
    frame = frame[known]
    y = frame["label"].to_numpy(dtype=int)
    truth = frame["true_reoffense"].to_numpy(dtype=int)
    decision = frame[decision_column].to_numpy(dtype=int)
    out: dict[str, Any] = {
        "decision": decision_column,
        "rows_without_truth": skipped,
        "attributes": {},
    }
    for attribute in attributes:
        groups = pd.Series(frame[attribute].to_numpy(), name=attribute)
        recorded = GroupMetrics(
            {
                "n": count,
                "recorded_rate": base_rate,
                "fpr_recorded": false_positive_rate,
                "fnr_recorded": false_negative_rate,
            },
            y,
            decision,
            sensitive_features=groups,
        ).by_group
        true = GroupMetrics(
            {
                "true_rate": base_rate,
                "fpr_true": false_positive_rate,
                "fnr_true": false_negative_rate,
            },
            truth,
            decision,
            sensitive_features=groups,
        ).by_group
        recording = GroupMetrics(
            {"recording_share": _recorded_share, "mean_p_recorded": _mean_of},
            truth,
            y,
            sensitive_features=groups,
            sample_params={"mean_p_recorded": {"values": frame["p_recorded"].to_numpy(float)}},
        ).by_group
        table = pd.concat([recorded, true, recording], axis=1)
        table = table.sort_values("n", ascending=False, kind="stable")
        out["attributes"][attribute] = {
            str(group): {k: (int(v) if k == "n" else float(v)) for k, v in row.items()}
            for group, row in table.iterrows()
        }
    return out


def linkage_bias(frame: pd.DataFrame, attributes: Sequence[str]) -> dict[str, Any]:
    """Mean prior IPV offences and tier shares by group: pipeline crosswalk against truth.

    ``frame`` holds ``prior_ipv_offences``, ``truth_prior_ipv_offences``, ``tier`` and
    ``truth_tier``; rows without the truth values are left out and counted.
    """
    known = frame["truth_prior_ipv_offences"].notna() & frame["truth_tier"].notna()
    skipped = int((~known).sum())
    frame = frame[known]
    tiers = sorted(
        set(frame["tier"].dropna().astype(str)) | set(frame["truth_tier"].dropna().astype(str))
    )
    prior = frame["prior_ipv_offences"].to_numpy(dtype=float)
    truth_prior = frame["truth_prior_ipv_offences"].to_numpy(dtype=float)
    pipeline_tier = frame["tier"].astype(str).to_numpy()
    truth_tier = frame["truth_tier"].astype(str).to_numpy()
    share_metrics = {
        f"{which}:{tier}": (
            lambda yt, yp, t=tier, w=which: float(
                np.mean((np.asarray(yt) if w == "pipeline" else np.asarray(yp)) == t)
            )
        )
        for tier in tiers
        for which in ("pipeline", "truth")
    }
    out: dict[str, Any] = {"tiers": tiers, "rows_without_truth": skipped, "attributes": {}}
    for attribute in attributes:
        groups = pd.Series(frame[attribute].to_numpy(), name=attribute)
        means = GroupMetrics(
            {"n": count, "mean_prior_pipeline": _mean_true, "mean_prior_truth": _mean_pred},
            prior,
            truth_prior,
            sensitive_features=groups,
        ).by_group
        shares = GroupMetrics(
            share_metrics, pipeline_tier, truth_tier, sensitive_features=groups
        ).by_group
        entries = {}
        for group, row in means.sort_values("n", ascending=False, kind="stable").iterrows():
            entries[str(group)] = {
                "n": int(row["n"]),
                "mean_prior_pipeline": float(row["mean_prior_pipeline"]),
                "mean_prior_truth": float(row["mean_prior_truth"]),
                "tier_share_pipeline": {
                    t: float(shares.loc[group, f"pipeline:{t}"]) for t in tiers
                },
                "tier_share_truth": {t: float(shares.loc[group, f"truth:{t}"]) for t in tiers},
            }
        out["attributes"][attribute] = entries
    return out
