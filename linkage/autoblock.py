"""Blocking rules chosen from the data in front of the linker (``blocking_rules: auto``).

1. **Candidates.** Every blocking key the mapped fields give (a field, or a key derived from
   it: phonetic codes, initials, the nickname group, the swapped-name key, date parts, the
   postal area), alone, and every pair of keys of two different fields of which one alone is
   too broad. Each rule's pair count is computed from its block sizes before any pair exists
   (the sum of n(n-1)/2 over its blocks; blocks over the size limit are skipped, as blocking
   skips them). Rules over the pair budget (``pairs_per_record`` x records) are no candidates.
2. **A seed pass.** Every candidate is sampled by blocks down to a few thousand pairs; the
   sampled pairs are compared and a Fellegi-Sunter model is fitted on them, m by EM on each
   candidate's pairs apart, blind to the fields that candidate reads (Splink's training
   passes, here one per candidate rule). This model also scores the final pairs.
3. **Choice.** The seed's likely matches (probability >= 0.5), each weighted by the inverse of
   its chance of being sampled, show which rules find matches (dedupe's predicate learning,
   on estimated instead of labelled matches): rules are added greedily by matches found per
   pair spent until the budget is spent or no rule adds 0.1 % of the estimated matches.
4. **Estimated pair completeness**: the share of those estimated matches the chosen rules
   find. It cannot count matches that share no blocking key at all.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import combinations

import numpy as np
import pandas as pd

from ipvi.arrays import unique_sorted
from ipvi.errors import IpviError
from linkage.blocking import block_codes, cross_block_pairs, within_block_pairs
from linkage.fellegi_sunter import FellegiSunter
from linkage.standardize import MISSING

NO_BLOCKING = (
    "the mapped fields ({fields}) cannot block under the pair budget: every blocking key they "
    "give pairs more than {budget:g} records per record on average (linkage.pairs_per_record); "
    "map a more specific field (a date of birth, a full name, an identifier) or raise the budget"
)
# Seed pairs sampled over all candidate rules together (per record, and bounds), and at least
# per rule: enough for each rule's EM pass, few enough to cost a fraction of the final pass.
SEED_PAIRS_PER_RECORD = 5
SEED_PAIRS = (100_000, 2_000_000)
MIN_SEED_PAIRS_PER_RULE = 2_000
# A rule is added only while it finds at least this share of the estimated matches.
MIN_GAIN = 0.001
LIKELY_MATCH = 0.5
# The estimated matches the choice is computed on, at most (a uniform sample of them).
LIKELY_SAMPLE = 100_000


@dataclass
class BlockingPlan:
    """The chosen rules, their pair counts, the estimated pair completeness, the seed model."""

    rules: list[list[str]]
    pairs: list[int]
    estimated_pair_completeness: float | None
    model: FellegiSunter
    n_candidates: int
    chosen: list[int]  # the chosen rules' positions among the candidates (the seed's passes)

    def report(self) -> list[dict]:
        """The chosen rules (fields joined by "+") with their pair counts."""
        return [
            {"rule": "+".join(rule), "pairs": int(pairs)}
            for rule, pairs in zip(self.rules, self.pairs, strict=True)
        ]


@dataclass
class _Rule:
    keys: list[str]
    pairs: int  # pairs of its blocks within the size limit
    all_pairs: int  # pairs of all its blocks
    # Records in one of its blocks within the size limit, one bit each (np.packbits).
    kept: np.ndarray | None = None


def candidate_keys(records: pd.DataFrame, key_sources: dict[str, tuple[str, ...]]) -> list[str]:
    """The blocking keys with a value somewhere: every compared field and every derived key
    whose fields are compared."""
    fields = [c for c in records.columns if c not in key_sources]
    keys = fields + [k for k, sources in key_sources.items() if set(sources) <= set(fields)]
    return [k for k in keys if k in records.columns and (records[k] != MISSING).any()]


class _Counter:
    """Block codes and pair counts of rules over the records (one file, or two linked)."""

    def __init__(self, records: pd.DataFrame, n_left: int | None, limit: int):
        self.records = records
        self.n_left = n_left
        self.limit = limit
        self._factorized: dict = {}

    def rule(self, keys: list[str]) -> tuple[_Rule, np.ndarray]:
        """The rule and its block code per record (-1: missing, or a block over the size
        limit)."""
        codes = block_codes(self.records, keys, self._factorized)
        valid = codes >= 0
        if self.n_left is None:
            sizes = np.bincount(codes[valid]).astype(np.int64)
            block_pairs = sizes * (sizes - 1) // 2
        else:
            n_codes = int(codes.max()) + 1 if valid.any() else 0
            left = np.bincount(codes[: self.n_left][valid[: self.n_left]], minlength=n_codes)
            right = np.bincount(codes[self.n_left :][valid[self.n_left :]], minlength=n_codes)
            sizes = (left + right).astype(np.int64)
            block_pairs = left.astype(np.int64) * right
        kept = sizes <= self.limit
        codes = np.where(valid, codes, -1)
        codes[valid] = np.where(kept[codes[valid]], codes[valid], -1)
        rule = _Rule(
            keys=keys, pairs=int(block_pairs[kept].sum()), all_pairs=int(block_pairs.sum())
        )
        return rule, codes.astype(np.int32)

    def pairs(self, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The pairs (global positions) of records sharing a code."""
        if self.n_left is None:
            left, right, _ = within_block_pairs(codes.astype(np.int64), self.limit)
            return left, right
        left, right, _ = cross_block_pairs(
            codes[: self.n_left].astype(np.int64), codes[self.n_left :].astype(np.int64), self.limit
        )
        return left, right + self.n_left

    def agreement(self, keys: list[str], left: np.ndarray, right: np.ndarray) -> dict:
        """Per key: which pairs share its value (neither missing)."""
        out = {}
        for key in keys:
            part, _, absent = self._factorized[key]
            out[key] = (part[left] == part[right]) & ~absent[left]
        return out


def candidate_rules(
    counter: _Counter, keys: list[str], key_sources: dict[str, tuple[str, ...]], budget: float
) -> Iterator[tuple[_Rule, np.ndarray]]:
    """Single keys, and pairs of keys of different fields where one alone is too broad; only
    the rules whose pairs fit the budget, each with its block codes, one at a time."""
    broad = {}
    for key in keys:
        rule, codes = counter.rule([key])
        broad[key] = rule.all_pairs > budget
        if 0 < rule.pairs <= budget:
            yield rule, codes
    for a, b in combinations(keys, 2):
        apart = not set(key_sources.get(a, (a,))) & set(key_sources.get(b, (b,)))
        if apart and (broad[a] or broad[b]):
            rule, codes = counter.rule([a, b])
            if 0 < rule.pairs <= budget:
                yield rule, codes


def _members(rule: _Rule, agree: dict, left: np.ndarray) -> np.ndarray:
    """Which pairs the rule finds (same block, within the size limit), from each key's
    agreement on them (:meth:`_Counter.agreement`) and ``left``, their first records."""
    found = np.unpackbits(rule.kept)[left].astype(bool)
    for key in rule.keys:
        found &= agree[key]
    return found


def plan_blocking(
    records: pd.DataFrame,
    n_left: int | None,
    *,
    key_sources: dict[str, tuple[str, ...]],
    pairs_per_record: float,
    max_block_size: int,
    compare: Callable[[np.ndarray, np.ndarray], np.ndarray],
    fit: Callable[..., FellegiSunter],
    excluded: Callable[[list[str]], set[int]],
    seed: int = 0,
) -> BlockingPlan:
    """Choose blocking rules for ``records`` (the first ``n_left`` linked to the rest, or
    deduplicated when ``n_left`` is None).

    ``compare(left, right)`` gives the level matrix of pairs (global positions);
    ``fit(levels, rule_pairs, rule_excluded, pair_weights)`` fits the seed model;
    ``excluded(rule)`` names the comparisons a rule reads.
    """
    n_records = len(records)
    budget = pairs_per_record * n_records
    counter = _Counter(records, n_left, max_block_size)
    keys = candidate_keys(records, key_sources)

    # The seed: each candidate sampled by blocks, so a block is kept or dropped whole. Its
    # share depends on the number of candidates, known only at the end; so that one
    # candidate's block codes at a time are alive, each draws its blocks' random numbers as
    # it is found and keeps the records of the blocks that the largest share it can still
    # get would sample (a share falls as candidates are added).
    rng = np.random.default_rng(seed)
    seed_pairs = int(np.clip(SEED_PAIRS_PER_RECORD * n_records, *SEED_PAIRS))
    candidates, draws = [], []
    for rule, codes in candidate_rules(counter, keys, key_sources, budget):
        most = max(MIN_SEED_PAIRS_PER_RULE, seed_pairs // (len(candidates) + 1)) / rule.pairs
        draw = rng.random(int(codes.max()) + 1)[np.where(codes >= 0, codes, 0)]
        drawn = np.flatnonzero((codes >= 0) & (draw < most))
        rule.kept = np.packbits(codes >= 0)
        candidates.append(rule)
        draws.append((drawn, codes[drawn], draw[drawn]))
        del codes, draw
    if not candidates:
        fields = sorted({s for k in keys for s in key_sources.get(k, (k,))})
        raise IpviError(NO_BLOCKING.format(fields=", ".join(fields), budget=pairs_per_record))
    per_rule = max(MIN_SEED_PAIRS_PER_RULE, seed_pairs // len(candidates))
    fractions, sampled = [], []
    for rule, (drawn, codes, draw) in zip(candidates, draws, strict=True):
        fraction = min(1.0, per_rule / rule.pairs)
        chosen_blocks = np.full(n_records, -1, dtype=np.int32)
        kept = draw < fraction
        chosen_blocks[drawn[kept]] = codes[kept]
        left, right = counter.pairs(chosen_blocks)
        fractions.append(fraction)
        sampled.append(left * n_records + right)
    del draws
    union = unique_sorted(np.concatenate(sampled))
    left, right = union // n_records, union % n_records
    rule_pairs = [np.searchsorted(union, unique_sorted(codes)) for codes in sampled]
    del sampled
    agree = counter.agreement(keys, left, right)
    # Each seed pair's chance of being sampled by some candidate that finds it.
    log_missed = np.zeros(len(union))
    for rule, fraction in zip(candidates, fractions, strict=True):
        if fraction < 1.0:
            log_missed += _members(rule, agree, left) * np.log1p(-fraction)
        else:
            log_missed[_members(rule, agree, left)] = -np.inf
    inclusion = -np.expm1(log_missed)
    levels = compare(left, right)
    model = fit(levels, rule_pairs, [excluded(rule.keys) for rule in candidates], 1 / inclusion)
    probability = model.predict_proba(levels)
    likely = np.flatnonzero(probability >= LIKELY_MATCH)
    if len(likely) > LIKELY_SAMPLE:  # a uniform sample estimates the shares as well
        likely = np.sort(rng.choice(likely, LIKELY_SAMPLE, replace=False))
    weight = probability[likely] / inclusion[likely]
    costs = np.array([rule.pairs for rule in candidates], dtype=float)

    if not len(likely):
        # No likely match anywhere: the cheapest rule of each field set, within the budget.
        chosen, spent, seen = [], 0.0, set()
        for r in np.argsort(costs, kind="stable"):
            fields = frozenset(candidates[r].keys)
            if fields not in seen and spent + costs[r] <= budget:
                chosen.append(int(r))
                spent += costs[r]
                seen.add(fields)
        completeness = None
    else:
        agree_likely = {key: agrees[likely] for key, agrees in agree.items()}
        found = np.column_stack([_members(rule, agree_likely, left[likely]) for rule in candidates])
        covered = np.zeros(len(likely), dtype=bool)
        total = float(weight.sum())
        chosen, spent = [], 0.0
        gains = weight @ found  # estimated matches each rule finds that no chosen one finds
        while True:
            score = gains / (costs + n_records)
            score[chosen] = -1
            score[spent + costs > budget] = -1
            best = int(np.argmax(score))
            if score[best] < 0 or gains[best] < MIN_GAIN * total:
                break
            chosen.append(best)
            newly = found[:, best] & ~covered
            gains -= weight[newly] @ found[newly]
            covered |= newly
            spent += costs[best]
        completeness = float(weight[covered].sum() / total) if total > 0 else None
    return BlockingPlan(
        rules=[candidates[r].keys for r in chosen],
        pairs=[candidates[r].pairs for r in chosen],
        estimated_pair_completeness=completeness,
        model=model,
        n_candidates=len(candidates),
        chosen=chosen,
    )
