"""Blocking: the union of several rules, each pairing records that share a key exactly.

One rule is a list of standardised or derived columns (``["dob", "fn_init"]``); records with any
of them missing are left out of that rule. Rules are unioned, so a pair missed by one (a typo in
the surname) is found by another (same date of birth and first initial). A block larger than
``max_block_size`` is skipped by its rule and counted: such a key (a very common name) carries too
little evidence to pair everyone in it, and keeping it would make pairs grow quadratically.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ipvi.arrays import connected_labels, in_sorted, unique_sorted
from linkage.standardize import MISSING


@dataclass
class CandidatePairs:
    """Candidate pairs as positions into the left and right frames, and each rule's share.

    ``rule_pairs[k]`` holds the positions (into ``left`` / ``right``) of the pairs rule ``k``
    produced; EM trains on them rule by rule and they score the pairs
    (:class:`linkage.linker.Linker` empties them once the pairs are scored).
    """

    left: np.ndarray
    right: np.ndarray
    rule_pairs: list[np.ndarray] = field(default_factory=list)
    skipped_blocks: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.left)


def block_codes(
    frame: pd.DataFrame, columns: list[str], factorized: dict | None = None
) -> np.ndarray:
    """One integer code per row for the joint key of ``columns``; -1 when any part is missing.

    ``factorized`` (column -> codes, number of values, missing) caches the factorisation of
    each column across the rules that share it.
    """
    factorized = {} if factorized is None else factorized
    codes = np.zeros(len(frame), dtype=np.int64)
    missing = np.zeros(len(frame), dtype=bool)
    for column in columns:
        if column not in factorized:
            values = frame[column].to_numpy(dtype=object)
            part, uniques = pd.factorize(values)
            factorized[column] = (part.astype(np.int32), len(uniques), values == MISSING)
        part, n_values, absent = factorized[column]
        missing |= absent
        # Mixed radix, re-factorised after each column so the codes never overflow.
        codes, _ = pd.factorize(codes * (n_values + 1) + part)
        codes = codes.astype(np.int64)
    codes[missing] = -1
    return codes


def within_block_pairs(
    codes: np.ndarray, max_block_size: int
) -> tuple[np.ndarray, np.ndarray, int]:
    """All i < j pairs of rows sharing a code, vectorised (no Python loop over blocks)."""
    valid = np.flatnonzero(codes >= 0)
    order = valid[np.argsort(codes[valid], kind="stable")]
    sorted_codes = codes[order]
    if len(order) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), 0
    starts = np.flatnonzero(np.r_[True, sorted_codes[1:] != sorted_codes[:-1]])
    sizes = np.diff(np.r_[starts, len(order)])
    too_big = sizes > max_block_size
    keep = (sizes > 1) & ~too_big
    starts, sizes = starts[keep], sizes[keep]
    # For the member at offset k of a block of size s: partners at offsets k+1 .. s-1.
    member_block = np.repeat(np.arange(len(starts)), sizes)
    offset = np.arange(member_block.size) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    member_pos = np.repeat(starts, sizes) + offset
    n_partners = np.repeat(sizes, sizes) - offset - 1
    first = np.repeat(member_pos, n_partners)
    step = np.arange(first.size) - np.repeat(np.cumsum(n_partners) - n_partners, n_partners) + 1
    del member_block
    left, right = order[first], order[first + step]
    return np.minimum(left, right), np.maximum(left, right), int(too_big.sum())


def cross_block_pairs(
    codes_left: np.ndarray, codes_right: np.ndarray, max_block_size: int
) -> tuple[np.ndarray, np.ndarray, int]:
    """Pairs of a left and a right row sharing a code (linking two files)."""
    left = pd.DataFrame({"code": codes_left, "i": np.arange(len(codes_left))})
    right = pd.DataFrame({"code": codes_right, "j": np.arange(len(codes_right))})
    left, right = left[left.code >= 0], right[right.code >= 0]
    sizes = left.code.value_counts().add(right.code.value_counts(), fill_value=0)
    big = sizes.index[sizes > max_block_size]
    left, right = left[~left.code.isin(big)], right[~right.code.isin(big)]
    merged = left.merge(right, on="code")
    return merged.i.to_numpy(np.int64), merged.j.to_numpy(np.int64), len(big)


def candidate_pairs(
    rules: list[list[str]],
    data: pd.DataFrame,
    other: pd.DataFrame | None = None,
    max_block_size: int | list[int] = 500,
) -> CandidatePairs:
    """The union of the pairs of every rule whose columns exist in the data.

    With ``other`` the pairs link ``data`` to ``other`` (no pair inside one file).
    ``max_block_size`` is one limit for every rule, or one per rule: blocks over their rule's
    limit are skipped (and counted).
    """
    limits = max_block_size if isinstance(max_block_size, list) else [max_block_size] * len(rules)
    n_right = len(other) if other is not None else len(data)
    rule_codes, skipped = [], []
    factorized: dict = {}
    if other is not None:
        # One factorisation over both files, so equal keys get equal codes.
        keys = list(dict.fromkeys(column for rule in rules for column in rule))
        both = pd.concat([data[keys], other[keys]], ignore_index=True)
    for rule, limit in zip(rules, limits, strict=True):
        if other is None:
            codes = block_codes(data, rule, factorized)
            left, right, n_big = within_block_pairs(codes, limit)
        else:
            codes = block_codes(both, rule, factorized)
            left, right, n_big = cross_block_pairs(codes[: len(data)], codes[len(data) :], limit)
        rule_codes.append(left * n_right + right)
        skipped.append(n_big)
    union = unique_sorted(np.concatenate(rule_codes)) if rule_codes else np.zeros(0, np.int64)
    positions = [np.searchsorted(union, unique_sorted(codes)) for codes in rule_codes]
    return CandidatePairs(
        left=union // n_right, right=union % n_right, rule_pairs=positions, skipped_blocks=skipped
    )


def linked_component_pairs(
    n_records: int,
    left: np.ndarray,
    right: np.ndarray,
    linked: np.ndarray,
    max_block_size: int,
    n_left: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Pairs inside the components of first-pass links that no blocking rule produced.

    Iterative blocking (Whang et al. 2009): two mentions of one person that share no blocking
    key (a nickname on one, a missing date of birth on the other) are still joined through a
    third mention they both match. Treating the component of the links as one more blocking
    key compares them directly, so clustering judges a cluster on all its pairs, not only on
    the chain that formed it. Components larger than ``max_block_size`` (chains) are skipped
    as any oversized block is, so the pairs still grow linearly with the records.

    ``left`` / ``right`` are global positions of the scored pairs and ``linked`` marks those
    at or above the link threshold. With ``n_left`` (linking two files: positions below it are
    the first file) only pairs across the files are returned.

    Examples
    --------
    >>> left, right = np.array([0, 1, 3]), np.array([1, 2, 4])
    >>> linked_component_pairs(5, left, right, np.array([True, True, False]), 10)
    (array([0]), array([2]))
    """
    known = unique_sorted(np.minimum(left, right) * n_records + np.maximum(left, right))
    labels = connected_labels(n_records, left[linked], right[linked])
    sizes = np.bincount(labels)
    codes = np.where(sizes[labels] > 1, labels, -1).astype(np.int64)
    new_left, new_right, _ = within_block_pairs(codes, max_block_size)
    if n_left is not None:
        across = (new_left < n_left) & (new_right >= n_left)
        new_left, new_right = new_left[across], new_right[across]
    fresh = ~in_sorted(new_left * n_records + new_right, known)
    return new_left[fresh], new_right[fresh]


def rule_report(
    rules: list[list[str]],
    rule_pairs: list[np.ndarray],
    probability: np.ndarray,
    skipped_blocks: list[int],
) -> dict:
    """Pairs and estimated matches per blocking rule, and the estimated pair completeness.

    Without a truth the matches are the pairs' match probabilities summed. A rule's recall is
    estimated as a capture-recapture would: the share of the matches the *other* rules found
    that this rule found too. Assuming the rules miss matches independently of each other, the
    union misses the product of their misses, so the estimated pair completeness is
    ``1 - prod(1 - recall)``. Rules that fail on the same records (a missing date of birth
    defeats every rule reading it) make this an overestimate; it cannot be estimated with one
    rule (null then).

    Parameters
    ----------
    rules : list of list of str
        The blocking rules, in order.
    rule_pairs : list of ndarray
        Positions (into ``probability``) of each rule's pairs, as
        :class:`CandidatePairs` holds them.
    probability : ndarray
        Match probability of every candidate pair.
    skipped_blocks : list of int
        Blocks each rule skipped for their size.

    Returns
    -------
    dict
        ``rules`` (rule, pairs, skipped_blocks, estimated_matches, estimated_recall),
        ``pairs`` and ``estimated_matches`` of the union, ``estimated_pair_completeness``.

    Examples
    --------
    >>> p = np.array([0.9, 0.9, 0.9, 0.9, 0.01])
    >>> report = rule_report([["a"], ["b"]], [np.array([0, 1, 4]), np.array([0, 2])], p, [0, 0])
    >>> [r["estimated_recall"] for r in report["rules"]], report["estimated_pair_completeness"]
    ([0.5, 0.4972], 0.7486)
    """
    captured = np.zeros(len(probability), dtype=np.int16)
    for positions in rule_pairs:
        captured[positions] += 1
    union = captured > 0
    found = float(probability[union].sum())
    entries, misses = [], []
    for rule, positions, skipped in zip(rules, rule_pairs, skipped_blocks, strict=True):
        own = float(probability[positions].sum())
        shared = float(probability[positions][captured[positions] >= 2].sum())
        others = found - own + shared
        recall = shared / others if others > 0 else None
        misses.append(None if recall is None else 1.0 - recall)
        entries.append(
            {
                "rule": "+".join(rule),
                "pairs": int(len(positions)),
                "skipped_blocks": int(skipped),
                "estimated_matches": round(own, 1),
                "estimated_recall": None if recall is None else round(recall, 4),
            }
        )
    completeness = None
    if len(rules) > 1 and all(m is not None for m in misses) and found > 0:
        completeness = 1.0 - float(np.prod(misses))
    return {
        "rules": entries,
        "pairs": int(union.sum()),
        "estimated_matches": round(found, 1),
        "estimated_pair_completeness": None if completeness is None else round(completeness, 4),
    }
