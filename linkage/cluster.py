"""Clustering that resists chaining.

Connected components over links merge whole populations through a few weak or wrong links.
Here components are only a first cut:

* a component is accepted as is when every scored pair inside it links and no two of its
  records hold conflicting strong identifiers;
* otherwise it is rebuilt by average-link merging: links in decreasing probability, two groups
  merge only if the mean log-odds over all their scored cross pairs reaches the log-odds of
  ``min_average_probability``, no cannot-link separates them, and no record of one conflicts
  with a record of the other on every strong identifier (different SSN-4 *and* different DOB).
  Links refused for a conflict are returned for clerical review.

Review decisions bind: a "match" is a must-link, a "non-match" a cannot-link.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import chain

import numpy as np
import pandas as pd

from linkage.blocking import connected_labels, sorted_unique
from linkage.standardize import MISSING


@dataclass
class Clusters:
    """Cluster label per record, the links used, and links refused for conflicts."""

    labels: np.ndarray
    refused: list[tuple[int, int]]
    n_rebuilt_components: int


def identifier_codes(values: np.ndarray) -> np.ndarray:
    """(records, identifiers) standardised strings as integer codes per column, -1 missing.

    Conflict tests then compare integers, not Python strings.
    """
    codes = np.full(values.shape, -1, dtype=np.int64)
    for k in range(values.shape[1]):
        column = values[:, k]
        codes[:, k] = np.where(column == MISSING, -1, pd.factorize(column)[0])
    return codes


def conflicts(
    strong: np.ndarray, left: np.ndarray, right: np.ndarray, exclusive: np.ndarray | None = None
) -> np.ndarray:
    """True where two records disagree on every strong identifier (each present on both
    sides), or on any exclusive one (a JR and a SR).

    ``strong`` and ``exclusive`` are (records, identifiers) codes of
    :func:`identifier_codes` (-1 missing).
    """
    out = np.zeros(len(left), dtype=bool)
    if strong.shape[1]:
        a, b = strong[left], strong[right]
        out |= ((a >= 0) & (b >= 0) & (a != b)).all(axis=1)
    if exclusive is not None and exclusive.shape[1]:
        a, b = exclusive[left], exclusive[right]
        out |= ((a >= 0) & (b >= 0) & (a != b)).any(axis=1)
    return out


# Scored pairs per chunk of components rebuilt together (bounds the memory of large runs).
CHUNK_PAIRS = 1_000_000


def cluster_records(
    n_records: int,
    left: np.ndarray,
    right: np.ndarray,
    probability: np.ndarray,
    *,
    link_threshold: float,
    min_average_probability: float,
    strong: np.ndarray,
    must_link: list[tuple[int, int]] = (),
    cannot_link: list[tuple[int, int]] = (),
    exclusive: np.ndarray | None = None,
) -> Clusters:
    """Cluster ``n_records`` from scored candidate pairs (positions ``left`` / ``right``).

    Returns
    -------
    Clusters
        ``labels[i]`` is the cluster of record ``i`` (0 .. n_clusters - 1).
    """
    left = np.asarray(left, dtype=np.int64)
    right = np.asarray(right, dtype=np.int64)
    if exclusive is None:
        exclusive = np.empty((n_records, 0), dtype=object)
    strong, exclusive = identifier_codes(strong), identifier_codes(exclusive)
    probability = np.asarray(probability, dtype=float).copy()
    decided = _decision_overrides(left, right, must_link, cannot_link)
    probability = np.where(decided == 1, 1.0, np.where(decided == -1, 0.0, probability))
    extra = list(must_link)
    link = probability >= link_threshold
    edge_left = np.r_[left[link], [a for a, _ in extra]].astype(np.int64)
    edge_right = np.r_[right[link], [b for _, b in extra]].astype(np.int64)
    components = connected_labels(n_records, edge_left, edge_right)

    # Components needing a rebuild: a scored pair inside that does not link, or a conflict.
    same = components[left] == components[right]
    dirty = same & ~link
    dirty |= same & conflicts(strong, left, right, exclusive) & (decided != 1)
    dirty_components = sorted_unique(components[left[dirty]])
    labels = components.copy()
    refused: list[tuple[int, int]] = []
    if len(dirty_components):
        next_label = components.max() + 1
        inside = np.flatnonzero(np.isin(components[left], dirty_components) & same)
        order = inside[np.lexsort((-probability[inside], components[left[inside]]))]
        component_of = components[left[order]]
        bounds = np.flatnonzero(np.r_[True, component_of[1:] != component_of[:-1], True])
        identity, conflict = _identities(strong, exclusive)
        # Groups are compared on their mean log-odds: n cross pairs weigh as the product of
        # their odds, so one hopeless pair among several sure ones does not cancel them, as it
        # does in a mean of probabilities (and pairs added by iterative blocking are many).
        log_odds = _log_odds(probability)
        thresholds = float(_log_odds(link_threshold)), float(_log_odds(min_average_probability))
        # Whole components in chunks of about CHUNK_PAIRS pairs: the Python lists below cost
        # ~40 bytes a value, so building them for every pair at once took 14 GB at 1M mentions.
        chunk = bounds[:-1] // CHUNK_PAIRS
        edges = np.r_[np.flatnonzero(np.r_[True, chunk[1:] != chunk[:-1]]), len(chunk)]
        for first, last in zip(edges[:-1].tolist(), edges[1:].tolist(), strict=True):
            part = order[bounds[first] : bounds[last]]
            lefts, rights = left[part], right[part]
            scores, verdicts = log_odds[part], decided[part]
            adjacency = _adjacency(n_records, lefts, rights, scores, verdicts)
            # Python lists once per chunk, sliced per component (numpy scalars are slow here).
            lefts, rights = lefts.tolist(), rights.tolist()
            scores, verdicts = scores.tolist(), verdicts.tolist()
            offsets = (bounds[first : last + 1] - bounds[first]).tolist()
            for start, stop in zip(offsets[:-1], offsets[1:], strict=True):
                parts, refused_here = _average_link(
                    lefts[start:stop],
                    rights[start:stop],
                    scores[start:stop],
                    verdicts[start:stop],
                    adjacency,
                    identity,
                    conflict,
                    *thresholds,
                )
                refused += refused_here
                for members in parts[1:]:
                    labels[members] = next_label
                    next_label += 1
    labels = pd.factorize(labels)[0]
    return Clusters(labels=labels, refused=refused, n_rebuilt_components=len(dirty_components))


def _log_odds(probability):
    """Natural log-odds, bounded so that decided pairs (0 or 1) stay finite."""
    p = np.clip(probability, 1e-12, 1 - 1e-12)
    return np.log(p) - np.log1p(-p)


def _decision_overrides(left, right, must_link, cannot_link) -> np.ndarray:
    """+1 for pairs decided "match", -1 for "non-match", 0 otherwise."""
    decided = np.zeros(len(left), dtype=np.int8)
    if len(left) == 0 or (not must_link and not cannot_link):
        return decided
    keys = pd.Series(np.arange(len(left)), index=pd.MultiIndex.from_arrays([left, right]))
    for pairs, value in ((must_link, 1), (cannot_link, -1)):
        for a, b in pairs:
            for key in ((a, b), (b, a)):
                if key in keys.index:
                    decided[keys.loc[[key]].to_numpy()] = value
    return decided


def _identities(strong: np.ndarray, exclusive: np.ndarray):
    """Per record an integer naming its (strong, exclusive) identifier codes, and a cached
    conflict test on two such integers (scalar :func:`conflicts`).

    Records of one person mostly share their identifiers, so a group holds few distinct
    ones and each distinct couple is tested once per run.
    """
    if not strong.shape[1] and not exclusive.shape[1]:
        return None, None
    _, first, identity = np.unique(
        np.hstack([strong, exclusive]), axis=0, return_index=True, return_inverse=True
    )
    strong_of = strong[first].tolist()
    exclusive_of = exclusive[first].tolist()
    cache: dict[tuple[int, int], bool] = {}

    def conflict(i: int, j: int) -> bool:
        key = (i, j) if i < j else (j, i)
        if key not in cache:
            strong_conflict = bool(strong_of[i]) and all(
                a >= 0 and b >= 0 and a != b
                for a, b in zip(strong_of[i], strong_of[j], strict=True)
            )
            cache[key] = strong_conflict or any(
                a >= 0 and b >= 0 and a != b
                for a, b in zip(exclusive_of[i], exclusive_of[j], strict=True)
            )
        return cache[key]

    return identity.ravel().tolist(), conflict


def _adjacency(n_records, lefts, rights, ps, decisions):
    """The scored pairs as each record's neighbour lists (CSR as Python lists).

    Built with numpy once, not appended pair by pair; each record's neighbours keep the
    order of the pairs given.
    """
    source = np.column_stack([lefts, rights]).ravel()
    order = np.argsort(source, kind="stable")
    target = np.column_stack([rights, lefts]).ravel()[order]
    starts = np.r_[0, np.cumsum(np.bincount(source, minlength=n_records))]
    return (
        starts.tolist(),
        target.tolist(),
        np.repeat(ps, 2)[order].tolist(),
        np.repeat(decisions, 2)[order].tolist(),
    )


def _average_link(
    lefts, rights, ps, decisions, adjacency, identity, conflict, threshold, min_average
):
    """Greedy average-link merging inside one component (pairs sorted by score, desc).

    ``ps``, ``threshold`` and ``min_average`` are on one monotone scale (log-odds here).
    Two groups merge when their scored cross pairs average at least ``min_average``, no
    cannot-link lies between them, and no two of their records conflict on every strong
    identifier (a reviewer's "match" overrides the last two checks for its own pair). Each
    group keeps its distinct identifiers and each record its scored neighbours
    (``adjacency``, see :func:`_adjacency`), so a check costs the smaller group's links, not
    the product of the two groups' sizes.
    """
    starts, targets, scores, verdicts = adjacency
    owner = dict.fromkeys(chain(lefts, rights))
    members: dict[int, list[int]] = {}
    identifiers: dict[int, set] = {}
    for record in owner:
        owner[record] = record
        members[record] = [record]
        identifiers[record] = {identity[record]} if identity is not None else set()
    refused = []
    rejected: set[tuple[int, int, int, int]] = set()
    for a, b, p, d in zip(lefts, rights, ps, decisions, strict=True):
        if p < threshold:
            break
        ga, gb = owner[a], owner[b]
        if ga == gb:
            continue
        state = (min(ga, gb), max(ga, gb), len(members[ga]), len(members[gb]))
        if d != 1 and state in rejected:
            continue
        if d != 1 and any(conflict(x, y) for x in identifiers[ga] for y in identifiers[gb]):
            refused.append((a, b))
            rejected.add(state)
            continue
        small, large = sorted((ga, gb), key=lambda g: len(members[g]))
        total, count, blocked = 0.0, 0, False
        for record in members[small]:
            for k in range(starts[record], starts[record + 1]):
                if owner.get(targets[k]) == large:
                    total += scores[k]
                    count += 1
                    blocked |= verdicts[k] == -1
        if blocked or (d != 1 and total / max(count, 1) < min_average):
            rejected.add(state)
            continue
        for record in members[small]:
            owner[record] = large
        members[large] += members.pop(small)
        identifiers[large] |= identifiers.pop(small)
    return [np.array(group) for group in members.values()], refused
