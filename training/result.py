"""What one training run produced (:class:`TrainResult`) and the figures it reports.

:func:`training.pipeline.train` makes it; :func:`training.registry.log_training_run` logs it to
MLflow; ``ipvi train --json`` prints :func:`summary` of it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from training.bundle import ModelBundle


@dataclass
class TrainResult:
    """Everything a run produced: model bundle, test predictions, metrics, data facts."""

    bundle: ModelBundle
    predictions: pd.DataFrame
    metrics: dict
    counts: dict
    data_fingerprint: str
    trained_persons: list[str]  # person ids, in memory only: stored as keyed pseudonyms
    truth: pd.DataFrame | None = None
    # Each model input's distribution over the test period's rows (training.reference).
    feature_reference: dict = field(default_factory=dict)
    figures: dict = field(default_factory=dict)


def summary(result: TrainResult) -> dict:
    """The flat figures ``ipvi train --json`` prints (truth figures None without truth)."""
    m = result.metrics
    ceiling = m.get("ceiling", {})
    return {
        "auc": m["model"]["auc"],
        "auc_ci": m["model"]["auc_ci"],
        "pr_auc": m["model"]["pr_auc"],
        "brier": m["model"]["brier"],
        "ece": m["model"]["ece"],
        "auc_tiers": m["tiers"]["auc"],
        "auc_odara": m["odara"]["auc"],
        "auc_scorecard": m["scorecard"]["auc"],
        "auc_person_disjoint": m["person_disjoint"]["auc"],
        "auc_ceiling": ceiling.get("auc"),
        "ece_ceiling": ceiling.get("ece"),
        "auc_ratio_ci": ceiling.get("auc_ratio_ci"),
        "mae_vs_truth": ceiling.get("mae_vs_truth"),
        "auc_truth_crosswalk": m.get("truth_crosswalk", {}).get("auc"),
        "auc_no_linkage": m.get("no_linkage", {}).get("auc"),
        "n_train": result.counts["n_train"],
        "n_test": result.counts["n_test"],
        "tier_shares": result.counts["tier_shares"],
    }
