"""The whole linkage process on DataFrames: standardise, block, compare, score, cluster.

:class:`Linker` is what ``ipvi link``, ``ipvi dedupe``, the benchmarks and the incremental
index share; it knows nothing of files or the database.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ipvi.errors import IpviError
from linkage.autoblock import BlockingPlan, plan_blocking
from linkage.blocking import (
    CandidatePairs,
    candidate_pairs,
    linked_component_pairs,
    rule_report,
)
from linkage.cluster import Clusters, cluster_records
from linkage.compare import compare_pairs, encode_for
from linkage.fellegi_sunter import FellegiSunter, estimated_errors, expected_f1_threshold
from linkage.fellegi_sunter import probability as probability_of
from linkage.settings import KEY_SOURCES, LinkageSettings
from linkage.standardize import standardize_frame


@dataclass
class LinkResult:
    """Everything one linkage pass produced (positions refer to the concatenated records)."""

    records: pd.DataFrame
    pairs: CandidatePairs
    levels: np.ndarray
    weight: np.ndarray
    probability: np.ndarray
    clusters: Clusters
    model: FellegiSunter
    rules: list[list[str]]
    link_threshold: float
    # The rules `auto` chose, their pair counts and the seed's estimated pair completeness.
    plan: BlockingPlan | None = None
    conflicts: list[dict] = field(default_factory=list)
    # Pairs and estimated matches per blocking rule, the estimated pair completeness, and the
    # pairs iterative blocking added (:func:`linkage.blocking.rule_report`).
    blocking: dict = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def labels(self) -> np.ndarray:
        return self.clusters.labels

    def summary(self) -> dict:
        """What the run chose and what it expects of itself, without any truth.

        ``blocking_rules`` (with their pair counts), ``estimated_pair_completeness`` (the
        share of the estimated matches the rules pair; null for listed rules),
        ``estimated_precision`` and ``estimated_recall`` of the links (from the match
        probabilities; recall times the pair completeness), ``conflict_fields`` (the
        identifiers treated as hard constraints, and why) and ``link_threshold``.
        """
        precision, recall = estimated_errors(self.probability, self.link_threshold)
        plan = self.plan
        completeness = plan.estimated_pair_completeness if plan is not None else None
        if plan is not None:
            rules = plan.report()
        else:
            rules = [{"rule": "+".join(rule), "pairs": None} for rule in self.rules]
        return {
            "blocking_rules": rules,
            "estimated_pair_completeness": _rounded(completeness),
            "estimated_precision": _rounded(precision),
            "estimated_recall": _rounded(recall * (completeness or 1.0)),
            "conflict_fields": [c for c in self.conflicts if c["hard"]],
            "conflict_fields_not_hard": [c for c in self.conflicts if not c["hard"]],
            "link_threshold": _rounded(self.link_threshold),
            "candidate_pairs": int(len(self.pairs)),
            "links": int((self.probability >= self.link_threshold).sum()),
        }

    def link_confidence(self) -> np.ndarray:
        """Per record: the highest probability of a link inside its cluster (0 if alone)."""
        confidence = np.zeros(len(self.records))
        same = self.labels[self.pairs.left] == self.labels[self.pairs.right]
        linked = same & (self.probability >= self.link_threshold)
        for side in (self.pairs.left, self.pairs.right):
            np.maximum.at(confidence, side[linked], self.probability[linked])
        return confidence


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(float(value), 4)


def _tf_records(data: pd.DataFrame, columns: list[str]) -> dict[str, pd.Categorical]:
    """The term-frequency columns of ``data`` as categoricals: gathered per pair by integer
    codes, and looked up in the frequency table once per distinct value (see
    :meth:`FellegiSunter.match_weight`)."""
    return {c: pd.Categorical(data[c].to_numpy(dtype=object)) for c in columns}


class Linker:
    """Link or deduplicate canonical mention frames with Fellegi-Sunter and anti-chaining.

    Parameters
    ----------
    settings : LinkageSettings
        Comparisons, blocking rules and thresholds.

    Attributes
    ----------
    model_ : FellegiSunter
        The fitted model of the last run.
    """

    def __init__(self, settings: LinkageSettings):
        self.settings = settings

    def standardize(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Standardised comparison columns and blocking keys of canonical ``frame``."""
        fields = [c for c in frame.columns if c not in ("record_id",)]
        return standardize_frame(frame[fields].reset_index(drop=True))

    def run(
        self,
        frame: pd.DataFrame,
        other: pd.DataFrame | None = None,
        must_link: list[tuple[int, int]] = (),
        cannot_link: list[tuple[int, int]] = (),
        standardized: bool = False,
        rescore=None,
    ) -> LinkResult:
        """Link ``frame`` to itself, or to ``other`` (pairs only across the two).

        ``must_link`` / ``cannot_link`` are position pairs (into ``frame`` followed by
        ``other``) from clerical decisions. Positions in the result follow the same order.
        ``rescore(levels, weight, left, right) -> probability`` replaces the Fellegi-Sunter
        probability (the supervised option) before clustering.
        """
        config = self.settings.config
        timings: dict[str, float] = {}
        start = time.perf_counter()
        data = frame if standardized else self.standardize(frame)
        data = self._ensure_columns(data)
        right = None
        if other is not None:
            right = other if standardized else self.standardize(other)
            right = self._ensure_columns(right)
        # The canonical frames are not read again: a caller that passed its only references
        # (as ``ipvi dedupe`` does) has them freed here.
        del frame, other
        timings["standardize"] = time.perf_counter() - start

        start = time.perf_counter()
        comparisons = self.settings.comparisons
        frames = [data] if right is None else [data, right]
        coded, vocabulary = encode_for(comparisons, frames)
        coded_right = coded[1] if right is not None else None
        rng = np.random.default_rng(config.seed)
        n_left = len(data)
        n_right = len(right) if right is not None else n_left
        # Enough random pairs for stable u; small files need far fewer than the cap.
        n_random = int(min(config.random_pairs, max(100_000, 50 * (n_left + n_right))))
        random_left = rng.integers(0, n_left, n_random)
        random_right = rng.integers(0, n_right, n_random)
        if right is None:
            distinct = random_left != random_right
            random_left, random_right = random_left[distinct], random_right[distinct]
        random_levels = compare_pairs(
            comparisons, random_left, random_right, coded[0], coded_right, vocabulary
        )
        n_total = n_left * (n_left - 1) / 2 if right is None else float(n_left * n_right)
        all_records = data if right is None else pd.concat([data, right], ignore_index=True)
        tf_columns = [c.column for c in comparisons if c.tf_level() is not None]
        tf_values = {c: all_records[c] for c in tf_columns}
        offset = 0 if right is None else n_left

        def fit(levels, rule_pairs, rule_excluded, pair_weights=None) -> FellegiSunter:
            model = FellegiSunter(comparisons, config.em_max_iterations, config.em_tolerance)
            return model.fit(
                levels,
                random_levels,
                rule_pairs,
                rule_excluded,
                n_total,
                tf_values=tf_values,
                pair_weights=pair_weights,
            )

        def excluded(rule: list[str]) -> set[int]:
            sources = self.settings.rule_sources(rule)
            return {k for k, c in enumerate(comparisons) if c.column in sources}

        def direct(rule: list[str]) -> set[int]:
            sources = {s for key in rule for s in KEY_SOURCES.get(key, (key,))}
            return {k for k, c in enumerate(comparisons) if c.column in sources}

        plan = None
        rules = config.blocking_rules
        if rules == "auto":
            plan = plan_blocking(
                all_records,
                None if right is None else n_left,
                key_sources=KEY_SOURCES,
                pairs_per_record=config.pairs_per_record,
                max_block_size=config.max_block_size,
                compare=lambda left, right_: compare_pairs(
                    comparisons, left, right_ - offset, coded[0], coded_right, vocabulary
                ),
                fit=fit,
                excluded=excluded,
                seed=config.seed,
            )
            rules = plan.rules
        timings["plan_blocking"] = time.perf_counter() - start

        start = time.perf_counter()
        pairs = self._candidate_pairs(rules, data, right, config.block_limits(rules))
        timings["block"] = time.perf_counter() - start

        start = time.perf_counter()
        levels = self._compare(pairs.left, pairs.right, (coded, vocabulary))
        timings["compare"] = time.perf_counter() - start

        start = time.perf_counter()
        if plan is not None:
            # m and u from the seed's many training passes; the prior from these pairs.
            model = plan.model.refit_prior(levels, n_total)
            model.rule_u_ = [plan.model.rule_u_[k] for k in plan.chosen]
            model.rule_share_ = [plan.model.rule_share_[k] for k in plan.chosen]
        else:
            model = fit(levels, pairs.rule_pairs, [excluded(rule) for rule in rules])
        model.blocking_rules_ = [list(rule) for rule in rules]
        model.rule_direct_ = [direct(rule) for rule in rules]
        tf_records = _tf_records(data, tf_columns)
        weight = model.match_weight(
            levels,
            {c: v[pairs.left] for c, v in tf_records.items()},
            pairs.rule_pairs,
        )
        blocking = rule_report(
            rules, pairs.rule_pairs, probability_of(weight), pairs.skipped_blocks
        )
        # EM, weights and the rule report were the only uses of each rule's pairs: freed.
        pairs.rule_pairs = []
        n_blocked = len(pairs)
        threshold = config.link_threshold
        if threshold == "auto":
            threshold = expected_f1_threshold(
                probability_of(weight), config.review_lower, config.review_upper
            )
        model.link_threshold_ = threshold
        if config.expand_linked_components:
            pairs, levels, weight = self._expand(
                pairs,
                levels,
                weight,
                model,
                offset,
                (data, right),
                (coded, vocabulary),
                tf_records,
                threshold,
            )
        probability = probability_of(weight)
        blocking["expansion"] = {
            "pairs": int(len(pairs) - n_blocked),
            "estimated_matches": round(float(probability[n_blocked:].sum()), 1),
        }
        # Positions into all_records (a copy of the right positions only when linking two files).
        global_right = pairs.right + offset if offset else pairs.right
        if rescore is not None:
            probability = rescore(levels, weight, pairs.left, global_right)
        timings["score"] = time.perf_counter() - start

        start = time.perf_counter()
        hard = self._hard_identifiers(model)
        strong_columns = [
            h["field"] for h in hard if h["field"] in config.cluster.strong_identifiers
        ]
        exclusive_columns = [
            h["field"] for h in hard if h["field"] in config.cluster.exclusive_identifiers
        ]
        minimum = config.cluster.min_average_probability
        clusters = self._cluster(
            len(all_records),
            pairs.left,
            global_right,
            probability,
            link_threshold=threshold,
            min_average_probability=threshold if minimum == "auto" else minimum,
            strong=all_records[strong_columns].to_numpy(dtype=object),
            exclusive=all_records[exclusive_columns].to_numpy(dtype=object),
            must_link=list(must_link),
            cannot_link=list(cannot_link),
        )
        timings["cluster"] = time.perf_counter() - start
        self.model_ = model
        global_pairs = CandidatePairs(
            left=pairs.left,
            right=global_right,
            skipped_blocks=pairs.skipped_blocks,
        )
        return LinkResult(
            records=all_records,
            pairs=global_pairs,
            levels=levels,
            weight=weight,
            probability=probability,
            clusters=clusters,
            model=model,
            rules=rules,
            link_threshold=threshold,
            plan=plan,
            conflicts=self._conflict_report(model),
            blocking=blocking,
            timings=timings,
        )

    def _conflict_report(self, model: FellegiSunter) -> list[dict]:
        """Each candidate hard identifier that is compared: its learned m of disagreement and
        whether it is a hard constraint in this data (m at most ``cluster.max_conflict_m``)."""
        config = self.settings.config.cluster
        candidates = list(config.strong_identifiers) + list(config.exclusive_identifiers)
        out = []
        for k, comparison in enumerate(model.comparisons):
            if (
                comparison.column not in candidates
                or comparison.column not in self.compared_columns_
            ):
                continue
            m_disagree = float(model.m_[k][-1])
            hard = m_disagree <= config.max_conflict_m
            relation = "<=" if hard else ">"
            out.append(
                {
                    "field": comparison.column,
                    "hard": hard,
                    "m_disagree": round(m_disagree, 6),
                    "reason": (
                        f"EM: matches disagree on it (beyond a near miss) with probability "
                        f"{m_disagree:.4f} {relation} cluster.max_conflict_m "
                        f"{config.max_conflict_m}"
                    ),
                }
            )
        return out

    def _hard_identifiers(self, model: FellegiSunter) -> list[dict]:
        return [entry for entry in self._conflict_report(model) if entry["hard"]]

    def _expand(self, pairs, levels, weight, model, offset, frames, encoded, tf_records, threshold):
        """Add and score the pairs inside first-pass link components (iterative blocking).

        The model is not refitted: the added pairs belong to no blocking rule, so EM, which
        learns per rule, never sees them.
        """
        config = self.settings.config
        data, right = frames
        coded, vocabulary = encoded
        n_records = len(data) + (0 if right is None else len(right))
        linked = probability_of(weight) >= threshold
        extra_left, extra_right = self._component_pairs(
            n_records,
            pairs.left,
            pairs.right + offset if offset else pairs.right,
            linked,
            config.max_block_size,
            n_left=None if right is None else len(data),
        )
        extra_right = extra_right - offset
        extra_levels = self._compare(extra_left, extra_right, (coded, vocabulary))
        tf_left = {c: values[extra_left] for c, values in tf_records.items()}
        expanded = CandidatePairs(
            left=np.concatenate([pairs.left, extra_left]),
            right=np.concatenate([pairs.right, extra_right]),
            skipped_blocks=pairs.skipped_blocks,
        )
        return (
            expanded,
            np.concatenate([levels, extra_levels]),
            np.concatenate([weight, model.match_weight(extra_levels, tf_left)]),
        )

    # The pair-heavy steps, one method each: the Spark engine (linkage.spark.SparkLinker)
    # runs the same functions in its executors and leaves the rest of ``run`` as it is.

    def _candidate_pairs(self, rules, data, right, limits) -> CandidatePairs:
        return candidate_pairs(rules, data, right, limits)

    def _compare(self, left: np.ndarray, right: np.ndarray, encoded) -> np.ndarray:
        """Levels of the pairs ``left`` / ``right`` (positions into the first and the second
        frame, or both into the one frame), from the frames ``encoded`` by :func:`encode_for`."""
        coded, vocabulary = encoded
        other = coded[1] if len(coded) > 1 else None
        return compare_pairs(self.settings.comparisons, left, right, coded[0], other, vocabulary)

    def _component_pairs(self, n_records, left, right, linked, max_block_size, n_left=None):
        return linked_component_pairs(n_records, left, right, linked, max_block_size, n_left)

    def _cluster(self, n_records, left, right, probability, **options) -> Clusters:
        return cluster_records(n_records, left, right, probability, **options)

    def _ensure_columns(self, data: pd.DataFrame) -> pd.DataFrame:
        self.compared_columns_ = [
            c for c in data.columns if c in self.settings.columns and (data[c] != "").any()
        ]
        missing = [c for c in self.settings.columns if c not in data.columns]
        if len(data) == 0:
            raise IpviError("no records to link")
        for column in missing:
            data[column] = ""
        return data
