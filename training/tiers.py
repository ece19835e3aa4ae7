"""Rule tiers A-D with provenance, provisional flags and possible dual arrests.

The tier rules are data (``training.tiers`` in the YAML): an ordered list of
``{tier, all: [[feature, op, value], ...], any: [...], reason}``; the first rule whose ``all``
conditions all hold and (when given) one of whose ``any`` conditions holds sets the tier, and
the last rule catches everyone. Conditions read the shared feature definitions
(:data:`training.features.FEATURES`).

Every reason cites the source record ids it rests on (the index offence's records and those of
each condition that holds) and the weakest link probability among them. An A or B tier resting
on a link below ``confirm_threshold`` is provisional with ``identity_review_required``; so is
the tier of a suspect also recorded as the victim of the same partner within
``dual_arrest_days`` (``possible_dual_arrest``).
"""

from __future__ import annotations

import operator
from collections.abc import Callable

import numpy as np
import pandas as pd

from ipvi.config import TierConfig
from ipvi.errors import IpviError
from training.features import FEATURE_BY_NAME, INDEX_OFFENCE, AsOfFeatures, group_lists

OPERATORS: dict[str, Callable] = {
    ">=": operator.ge,
    ">": operator.gt,
    "<=": operator.le,
    "<": operator.lt,
    "==": operator.eq,
    "!=": operator.ne,
}
TIER_ORDINAL: dict[str, int] = {"D": 1, "C": 2, "B": 3, "A": 4}
PUNITIVE_TIERS: frozenset[str] = frozenset({"A", "B"})


def validate_conditions(conditions: list, where: str) -> None:
    """Refuse a condition naming an unknown feature or operator; ``where`` names the key."""
    for condition in conditions:
        feature, op, _ = condition
        if feature not in FEATURE_BY_NAME:
            raise IpviError(f"config key '{where}': unknown feature '{feature}'")
        if op not in OPERATORS:
            raise IpviError(f"config key '{where}': unknown operator '{op}'")


def validate_rules(config: TierConfig) -> None:
    """Check every rule's features against the feature definitions."""
    for number, rule in enumerate(config.rules):
        for key in ("all", "any"):
            validate_conditions(getattr(rule, key), f"training.tiers.rules.{number}.{key}")


def condition_mask(X: pd.DataFrame, condition) -> np.ndarray:
    """Boolean mask of the rows where ``[feature, op, value]`` holds (NaN never holds)."""
    feature, op, value = condition
    values = X[feature].to_numpy(dtype=float)
    return OPERATORS[op](np.nan_to_num(values, nan=-np.inf if op in (">=", ">") else np.inf), value)


def _describe(condition) -> str:
    feature, op, value = condition
    return f"{feature} {op} {value:g}"


def matching_rule(X: pd.DataFrame, config: TierConfig) -> np.ndarray:
    """The number of the first rule each row of ``X`` matches (the last rule catches all)."""
    validate_rules(config)
    n = len(X)
    rule_of = np.full(n, -1)
    for number, rule in enumerate(config.rules):
        matched = rule_of < 0
        for condition in rule.all:
            matched &= condition_mask(X, condition)
        if rule.any:
            any_mask = np.zeros(n, dtype=bool)
            for condition in rule.any:
                any_mask |= condition_mask(X, condition)
            matched &= any_mask
        rule_of[matched] = number
    return rule_of


def tiers_only(X: pd.DataFrame, config: TierConfig) -> pd.Series:
    """Each row's tier, without reasons (cheap: for shares and baselines)."""
    tiers = np.array([rule.tier for rule in config.rules])
    return pd.Series(tiers[matching_rule(X, config)], index=X.index)


def assign_tiers(
    features: AsOfFeatures,
    config: TierConfig,
    *,
    dual_arrest: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """The tier of each index offence, with its reasons and flags.

    Parameters
    ----------
    features : AsOfFeatures
        As-of features and provenance of the index offences.
    config : TierConfig
        The ordered rules and settings.
    dual_arrest : DataFrame, optional
        ``row`` and ``record_ids`` of rows that are possible dual arrests
        (:func:`possible_dual_arrests`).

    Returns
    -------
    DataFrame
        One row per index offence: ``tier``, ``rule``, ``tier_reasons`` (list of dicts with
        ``tier``, ``reason``, ``conditions``, ``record_ids``, ``weakest_link``),
        ``weakest_link``, ``identity_review_required``, ``possible_dual_arrest``,
        ``provisional``.
    """
    X = features.X
    n = len(X)
    rule_of = matching_rule(X, config)
    # (rows, feature, description) of each condition holding for the rows its rule tiered.
    held: list[tuple[np.ndarray, str, str | None]] = []
    for number, rule in enumerate(config.rules):
        matched = rule_of == number
        for condition in [*rule.all, *rule.any]:
            rows = np.flatnonzero(matched & condition_mask(X, condition))
            held.append((rows, condition[0], _describe(condition)))
        held.append((np.flatnonzero(matched), INDEX_OFFENCE, None))
    # One frame from concatenated arrays: a frame per condition costs more on small batches.
    sizes = [len(rows) for rows, _, _ in held]
    pairs = pd.DataFrame(
        {
            "row": np.concatenate([rows for rows, _, _ in held]),
            "feature": np.repeat(np.array([f for _, f, _ in held], dtype=object), sizes),
            "condition": np.repeat(np.array([t for _, _, t in held], dtype=object), sizes),
        }
    )
    cited = features.cite(pairs)
    per_row = cited[["row", "record_ids"]].explode("record_ids").dropna(subset=["record_ids"])
    records = group_lists(per_row, ["row"], "record_ids").set_index("row")["record_ids"]
    weakest = cited.groupby("row")["weakest_link"].min()
    out = pd.DataFrame({"rule": rule_of})
    tiers = np.array([rule.tier for rule in config.rules])
    out["tier"] = tiers[rule_of]
    out["weakest_link"] = weakest.reindex(range(n)).to_numpy()
    record_lists = records.reindex(range(n))
    conditions = pairs.dropna(subset=["condition"]).drop_duplicates(["row", "condition"])
    held_by_row = group_lists(conditions, ["row"], "condition").set_index("row")["condition"]
    held_by_row = held_by_row.reindex(range(n))
    out["tier_reasons"] = [
        [
            {
                "tier": config.rules[rule].tier,
                "reason": config.rules[rule].reason,
                "conditions": conditions if isinstance(conditions, list) else [],
                "record_ids": ids if isinstance(ids, list) else [],
                "weakest_link": None if np.isnan(link) else float(link),
            }
        ]
        for rule, conditions, ids, link in zip(
            rule_of,
            held_by_row.to_numpy(),
            record_lists.to_numpy(),
            out["weakest_link"],
            strict=True,
        )
    ]
    low_link = out["weakest_link"].fillna(1.0).to_numpy() < config.confirm_threshold
    out["identity_review_required"] = out["tier"].isin(PUNITIVE_TIERS).to_numpy() & low_link
    out["possible_dual_arrest"] = False
    if dual_arrest is not None and len(dual_arrest):
        out.loc[dual_arrest["row"].to_numpy(), "possible_dual_arrest"] = True
        for row, ids in zip(dual_arrest["row"], dual_arrest["record_ids"], strict=True):
            out.at[row, "tier_reasons"] = [
                *out.at[row, "tier_reasons"],
                {
                    "tier": out.at[row, "tier"],
                    "reason": "possible dual arrest: also recorded as the victim of the same "
                    "partner; check who is the primary aggressor",
                    "conditions": ["possible_dual_arrest"],
                    "record_ids": ids,
                    "weakest_link": None,
                },
            ]
    out["provisional"] = out["identity_review_required"] | out["possible_dual_arrest"]
    return out


def possible_dual_arrests(
    index: pd.DataFrame, person_events: pd.DataFrame, *, days: int
) -> pd.DataFrame:
    """Index offences whose suspect was recorded as the victim of the same partner nearby.

    The partner is the victim of the index offence; a dual arrest is an event, known at the
    decision date, with that partner as offender and the suspect as victim, within ``days`` of
    the index date.

    Returns
    -------
    DataFrame
        ``row`` and ``record_ids`` (the partner-side records) of each possible dual arrest.
    """
    rows = index[["person_id", "offence_id", "index_date", "as_of"]].assign(
        row=np.arange(len(index))
    )
    victims = (
        person_events.loc[
            person_events["victim_person_id"].notna(), ["offence_id", "victim_person_id"]
        ]
        .drop_duplicates("offence_id")
        .rename(columns={"victim_person_id": "partner"})
    )
    rows = rows.merge(victims, on="offence_id")
    reverse = person_events.loc[
        person_events["victim_person_id"].notna(),
        ["person_id", "victim_person_id", "offense_date", "recorded_at", "record_id"],
    ].rename(columns={"person_id": "partner", "victim_person_id": "suspect"})
    joined = rows.merge(
        reverse, left_on=["partner", "person_id"], right_on=["partner", "suspect"], how="inner"
    )
    near = (joined["offense_date"] - joined["index_date"]).abs() <= pd.Timedelta(days=days)
    known = joined["recorded_at"] <= joined["as_of"]
    hits = joined[near & known]
    return group_lists(hits, ["row"], "record_id").rename(columns={"record_id": "record_ids"})


def tier_shares(tiers: pd.Series) -> dict[str, float]:
    """The share of each tier (A-D), rounded to 4 decimals."""
    shares = tiers.value_counts(normalize=True)
    return {tier: round(float(shares.get(tier, 0.0)), 4) for tier in ("A", "B", "C", "D")}
