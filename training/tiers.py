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

from ipvi.arrays import is_in, unique_sorted
from ipvi.columns import Columns
from ipvi.config import TierConfig
from ipvi.errors import IpviError
from training.features import FEATURE_BY_NAME, INDEX_OFFENCE, AsOfFeatures, expand, lists_of

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


def condition_mask(X: Columns, condition) -> np.ndarray:
    """Boolean mask of the rows where ``[feature, op, value]`` holds.

    A missing value (NaN) satisfies no comparison but ``!=``, as IEEE comparisons say.
    """
    feature, op, value = condition
    return OPERATORS[op](np.asarray(X[feature], dtype=float), value)


def _describe(condition) -> str:
    feature, op, value = condition
    return f"{feature} {op} {value:g}"


def condition_masks(X: Columns, config: TierConfig) -> dict[tuple, np.ndarray]:
    """:func:`condition_mask` of every distinct condition of the rules, by ``tuple(condition)``:
    each is evaluated once, to pick the rule and to cite its reasons."""
    validate_rules(config)
    conditions = [tuple(c) for rule in config.rules for c in [*rule.all, *rule.any]]
    return {condition: condition_mask(X, condition) for condition in dict.fromkeys(conditions)}


def matching_rule(X: Columns, config: TierConfig, masks: dict | None = None) -> np.ndarray:
    """The number of the first rule each row of ``X`` matches (the last rule catches all).

    ``masks`` (:func:`condition_masks`) when the caller has them already.
    """
    masks = condition_masks(X, config) if masks is None else masks
    n = len(X)
    rule_of = np.full(n, -1)
    for number, rule in enumerate(config.rules):
        matched = rule_of < 0
        for condition in rule.all:
            matched &= masks[tuple(condition)]
        if rule.any:
            any_mask = np.zeros(n, dtype=bool)
            for condition in rule.any:
                any_mask |= masks[tuple(condition)]
            matched &= any_mask
        rule_of[matched] = number
    return rule_of


def tiers_only(X: Columns, config: TierConfig) -> np.ndarray:
    """Each row's tier, without reasons (cheap: for shares and baselines)."""
    tiers = np.array([rule.tier for rule in config.rules], dtype=object)
    return tiers[matching_rule(X, config)]


def assign_tiers(
    features: AsOfFeatures,
    config: TierConfig,
    *,
    dual_arrest: Columns | None = None,
) -> Columns:
    """The tier of each index offence, with its reasons and flags.

    Parameters
    ----------
    features : AsOfFeatures
        As-of features and provenance of the index offences.
    config : TierConfig
        The ordered rules and settings.
    dual_arrest : Columns, optional
        ``row`` and ``record_ids`` of rows that are possible dual arrests
        (:func:`possible_dual_arrests`).

    Returns
    -------
    Columns
        One row per index offence: ``tier``, ``rule``, ``tier_reasons`` (list of dicts with
        ``tier``, ``reason``, ``conditions``, ``record_ids``, ``weakest_link``),
        ``weakest_link``, ``identity_review_required``, ``possible_dual_arrest``,
        ``provisional``.
    """
    X = features.X
    n = len(X)
    masks = condition_masks(X, config)
    rule_of = matching_rule(X, config, masks)
    # (rows, feature, description) of each condition holding for the rows its rule tiered.
    held: list[tuple[np.ndarray, str, str | None]] = []
    for number, rule in enumerate(config.rules):
        matched = rule_of == number
        for condition in [*rule.all, *rule.any]:
            rows = np.flatnonzero(matched & masks[tuple(condition)])
            held.append((rows, condition[0], _describe(condition)))
        held.append((np.flatnonzero(matched), INDEX_OFFENCE, None))
    sizes = [len(rows) for rows, _, _ in held]
    rows = np.concatenate([rows for rows, _, _ in held])
    cited_features = np.repeat(np.array([f for _, f, _ in held], dtype=object), sizes)
    record_lists, weakest = features.cite(rows, cited_features, rows, n)
    described = np.repeat(np.array([t for _, _, t in held], dtype=object), sizes)
    has_text = pd.notna(described)
    held_by_row = lists_of(rows[has_text], described[has_text], n)
    tiers = np.array([rule.tier for rule in config.rules])
    tier = tiers[rule_of]
    reasons = [
        [
            {
                "tier": config.rules[rule].tier,
                "reason": config.rules[rule].reason,
                "conditions": conditions,
                "record_ids": ids,
                "weakest_link": None if np.isnan(link) else float(link),
            }
        ]
        for rule, conditions, ids, link in zip(
            rule_of, held_by_row, record_lists, weakest, strict=True
        )
    ]
    low_link = np.where(np.isnan(weakest), 1.0, weakest) < config.confirm_threshold
    review = np.isin(tier, list(PUNITIVE_TIERS)) & low_link
    dual = np.zeros(n, dtype=bool)
    if dual_arrest is not None and len(dual_arrest):
        dual[np.asarray(dual_arrest["row"])] = True
        for row, ids in zip(dual_arrest["row"], dual_arrest["record_ids"], strict=True):
            reasons[row].append(
                {
                    "tier": str(tier[row]),
                    "reason": "possible dual arrest: also recorded as the victim of the same "
                    "partner; check who is the primary aggressor",
                    "conditions": ["possible_dual_arrest"],
                    "record_ids": ids,
                    "weakest_link": None,
                }
            )
    return Columns(
        {
            "rule": rule_of,
            "tier": tier,
            "weakest_link": weakest,
            "tier_reasons": reasons,
            "identity_review_required": review,
            "possible_dual_arrest": dual,
            "provisional": review | dual,
        },
    )


def possible_dual_arrests(index: Columns, person_events: Columns, *, days: int) -> Columns:
    """Index offences whose suspect was recorded as the victim of the same partner nearby.

    The partner is the victim of the index offence; a dual arrest is an event, known at the
    decision date, with that partner as offender and the suspect as victim, within ``days`` of
    the index date.

    Returns
    -------
    Columns
        ``row`` and ``record_ids`` (the partner-side records) of each possible dual arrest.
    """
    # Only events whose victim is one of the suspects can be the partner's side: usually none.
    if not is_in(person_events["victim_person_id"], index["person_id"]).any():
        return Columns({"row": np.array([], dtype=np.int64), "record_ids": []})
    with_victim = person_events.take(np.flatnonzero(pd.notna(person_events["victim_person_id"])))
    offence = np.asarray(with_victim["offence_id"])
    # Persons coded once, so (offender, victim) pairs become integer keys.
    codes, persons = pd.factorize(
        np.concatenate(
            [
                np.asarray(with_victim["person_id"], dtype=object),
                np.asarray(with_victim["victim_person_id"], dtype=object),
                np.asarray(index["person_id"], dtype=object),
            ]
        )
    )
    width = np.int64(len(persons) + 1)
    m = len(with_victim)
    offender, victim, suspect = codes[:m], codes[m : 2 * m], codes[2 * m :]
    # The partner of each index offence: the first victim recorded on it.
    offences, first = np.unique(offence, return_index=True)
    index_offence = np.asarray(index["offence_id"])
    at = np.minimum(np.searchsorted(offences, index_offence), len(offences) - 1)
    has_partner = offences[at] == index_offence
    partner = np.where(has_partner, victim[first[at]], -1)
    # Events with the partner as offender and the suspect as victim.
    reverse = offender.astype(np.int64) * width + victim
    order = np.argsort(reverse, kind="stable")
    wanted = np.where(has_partner, partner.astype(np.int64) * width + suspect, -1)
    lo = np.searchsorted(reverse[order], wanted, side="left")
    hi = np.where(has_partner, np.searchsorted(reverse[order], wanted, side="right"), lo)
    rows, hits = expand(lo, hi)
    events = order[hits]
    dates = np.asarray(with_victim["offense_date"], dtype="datetime64[ns]")[events]
    recorded = np.asarray(with_victim["recorded_at"], dtype="datetime64[ns]")[events]
    index_date = np.asarray(index["index_date"], dtype="datetime64[ns]")[rows]
    near = np.abs(dates - index_date) <= np.timedelta64(days, "D")
    known = recorded <= np.asarray(index["as_of"], dtype="datetime64[ns]")[rows]
    rows = rows[near & known]
    found = unique_sorted(rows)
    records = lists_of(
        np.searchsorted(found, rows),
        np.asarray(with_victim["record_id"], dtype=object)[events[near & known]],
        len(found),
    )
    return Columns({"row": found, "record_ids": records})


def tier_shares(tiers: np.ndarray | pd.Series) -> dict[str, float]:
    """The share of each tier (A-D), rounded to 4 decimals."""
    shares = pd.Series(tiers).value_counts(normalize=True)
    return {tier: round(float(shares.get(tier, 0.0)), 4) for tier in ("A", "B", "C", "D")}
