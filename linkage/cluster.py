"""Clustering that resists chaining.

Connected components over links merge whole populations through a few weak or wrong links.
Here components are only a first cut:

* a component is accepted as is when every scored pair inside it links and no two of its
  records conflict on the hard identifiers (those the model found reliable in this data, see
  :class:`HardIdentifiers`);
* otherwise it is rebuilt by average-link merging: links in decreasing probability, two groups
  merge only if the mean log-odds over all their scored cross pairs reaches the log-odds of
  ``min_average_probability``, no cannot-link separates them, and no record of one conflicts
  with a record of the other (every hard identifier both hold disagrees beyond a near miss).
  Links refused for a conflict are returned for clerical review.

Review decisions bind: a "match" is a must-link, a "non-match" a cannot-link.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass
from itertools import chain

import numpy as np
import pandas as pd
from rapidfuzz import process
from rapidfuzz.distance import DamerauLevenshtein

from ipvi.arrays import connected_labels, unique_sorted
from linkage.blocking import within_block_pairs
from linkage.compare import NO_DATE, day_numbers
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


# Days within which two dates of birth are a near miss (a year, leap day included).
A_YEAR = 366


@dataclass
class HardIdentifiers:
    """The identifiers that forbid a merge, as codes per record, and what a near miss is.

    Two present values *disagree* when they are more than a near miss apart: not one edit
    apart (a digit or letter typo, two neighbours transposed) and, for dates, not within a
    year of each other, with or without day and month swapped. A near miss never blocks a
    merge.
    """

    codes: np.ndarray  # (records, identifiers), -1 missing
    values: list[np.ndarray]  # per identifier: the value of each code
    days: list[np.ndarray]  # per identifier: the day number of each code's value (or NO_DATE)
    swapped_days: list[np.ndarray]  # per identifier: the day number with day and month
    # exchanged (or NO_DATE)

    @classmethod
    def from_values(cls, values: np.ndarray) -> HardIdentifiers:
        codes = np.full(values.shape, -1, dtype=np.int64)
        distinct, days, swapped_days = [], [], []
        for k in range(values.shape[1]):
            column = values[:, k]
            part, uniques = pd.factorize(column)
            codes[:, k] = np.where(column == MISSING, -1, part)
            text = pd.Series(np.asarray(uniques, dtype=object), dtype=object)
            distinct.append(text.to_numpy(dtype=object))
            days.append(np.asarray(day_numbers(text), dtype=np.int64))
            exchanged = text.str[:5] + text.str[8:10] + "-" + text.str[5:7]
            exchanged = exchanged.where(days[-1] != NO_DATE, "")
            swapped_days.append(np.asarray(day_numbers(exchanged), dtype=np.int64))
        return cls(codes=codes, values=distinct, days=days, swapped_days=swapped_days)

    @property
    def n_fields(self) -> int:
        return self.codes.shape[1]

    def disagree(self, k: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Codes ``a`` and ``b`` of identifier ``k`` both present and more than a near miss
        apart."""
        out = (a >= 0) & (b >= 0) & (a != b)
        rows = np.flatnonzero(out)
        if not len(rows):
            return out
        ca, cb = a[rows], b[rows]
        values, days, swapped_days = self.values[k], self.days[k], self.swapped_days[k]
        edits = process.cpdist(
            list(values[ca]), list(values[cb]), scorer=DamerauLevenshtein.distance, workers=1
        )
        near = np.asarray(edits) <= 1
        dated = (days[ca] != NO_DATE) & (days[cb] != NO_DATE)
        near |= dated & (np.abs(days[ca] - days[cb]) <= A_YEAR)
        # Day and month swapped, with the year a near miss too (two slips of one person).
        near |= (
            dated & (swapped_days[cb] != NO_DATE) & (np.abs(days[ca] - swapped_days[cb]) <= A_YEAR)
        )
        out[rows] = ~near
        return out

    def conflict(self, left: np.ndarray, right: np.ndarray) -> np.ndarray:
        """True where some identifier is present on both records and every such identifier
        disagrees (a differing SSN-4 with an equal date of birth is a typo, not a conflict)."""
        if not self.n_fields:
            return np.zeros(len(left), dtype=bool)
        a, b = self.codes[left], self.codes[right]
        present = (a >= 0) & (b >= 0)
        disagree = np.column_stack(
            [self.disagree(k, a[:, k], b[:, k]) for k in range(self.n_fields)]
        )
        return present.any(axis=1) & (disagree | ~present).all(axis=1)


def conflicts(
    strong: HardIdentifiers,
    left: np.ndarray,
    right: np.ndarray,
    exclusive: np.ndarray | None = None,
) -> np.ndarray:
    """True where two records conflict on the hard identifiers (see
    :meth:`HardIdentifiers.conflict`), or differ on any exclusive one (a JR and a SR).

    ``exclusive`` holds (records, identifiers) codes of :func:`identifier_codes` (-1 missing).
    """
    out = strong.conflict(left, right)
    if exclusive is not None and exclusive.shape[1]:
        a, b = exclusive[left], exclusive[right]
        out |= ((a >= 0) & (b >= 0) & (a != b)).any(axis=1)
    return out


# Scored pairs per chunk of components rebuilt together (bounds the memory of large runs).
CHUNK_PAIRS = 500_000


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
    strong, exclusive = HardIdentifiers.from_values(strong), identifier_codes(exclusive)
    probability = np.asarray(probability, dtype=float)
    decided = _decision_overrides(left, right, must_link, cannot_link)
    if must_link or cannot_link:
        probability = np.where(decided == 1, 1.0, np.where(decided == -1, 0.0, probability))
    extra = list(must_link)
    link = probability >= link_threshold
    edge_left = np.r_[left[link], [a for a, _ in extra]].astype(np.int64)
    edge_right = np.r_[right[link], [b for _, b in extra]].astype(np.int64)
    components = connected_labels(n_records, edge_left, edge_right)

    # Components needing a rebuild: a scored pair inside that does not link, or a conflict.
    # Only pairs inside a component are tested (a minority of the candidate pairs).
    inside = np.flatnonzero(components[left] == components[right])
    inside_left, inside_right = left[inside], right[inside]
    dirty = ~link[inside]
    # In chunks, so the identifier codes gathered per pair do not grow with the pairs.
    for start in range(0, len(inside), CHUNK_PAIRS):
        rows = slice(start, start + CHUNK_PAIRS)
        clash = conflicts(strong, inside_left[rows], inside_right[rows], exclusive)
        dirty[rows] |= clash & (decided[inside[rows]] != 1)
    dirty_components = unique_sorted(components[inside_left[dirty]])
    labels = components.copy()
    refused: list[tuple[int, int]] = []
    if len(dirty_components):
        next_label = components.max() + 1
        inside = inside[np.isin(components[inside_left], dirty_components)]
        del inside_left, inside_right, dirty
        order = inside[np.lexsort((-probability[inside], components[left[inside]]))]
        component_of = components[left[order]]
        bounds = np.flatnonzero(np.r_[True, component_of[1:] != component_of[:-1], True])
        identity, conflict = _identities(strong, exclusive)
        # Conflict tests only where two records of the component can conflict at all.
        in_dirty = np.flatnonzero(np.isin(components, dirty_components))
        checked = _conflicting_components(components, in_dirty, identity, strong, exclusive)
        # Groups are compared on their mean log-odds: n cross pairs weigh as the product of
        # their odds, so one hopeless pair among several sure ones does not cancel them, as it
        # does in a mean of probabilities (and pairs added by iterative blocking are many).
        log_odds = _log_odds(probability[order])  # aligned with ``order``
        thresholds = float(_log_odds(link_threshold)), float(_log_odds(min_average_probability))
        # Whole components in chunks of about CHUNK_PAIRS pairs: the Python lists below cost
        # about 40 bytes a value, so they are built for one chunk at a time, never every pair.
        local_of = np.zeros(n_records, dtype=np.int64)  # record -> its number in its chunk
        chunk = bounds[:-1] // CHUNK_PAIRS
        edges = np.r_[np.flatnonzero(np.r_[True, chunk[1:] != chunk[:-1]]), len(chunk)]
        for first, last in zip(edges[:-1].tolist(), edges[1:].tolist(), strict=True):
            span = slice(bounds[first], bounds[last])
            part = order[span]
            # Records renumbered 0 .. m-1 within the chunk: lists of the chunk's size only.
            records = unique_sorted(np.r_[left[part], right[part]])
            local_of[records] = np.arange(len(records))
            lefts, rights = local_of[left[part]], local_of[right[part]]
            scores, verdicts = log_odds[span], decided[part]
            # Large chunks (the giant component) in compact arrays, the rest in faster lists.
            sequence = _compact if len(part) > COMPACT_PAIRS else _as_list
            adjacency = _adjacency(len(records), lefts, rights, scores, verdicts, sequence)
            # Only links can merge groups; pairs are sorted by component, then score
            # (descending), so a component's links are the first pairs of its run.
            links = np.flatnonzero(scores >= thresholds[0])
            owner, refused_here = _average_link(
                sequence(lefts[links], "q"),
                sequence(rights[links], "q"),
                sequence(verdicts[links], "b"),
                adjacency,
                sequence(identity[records], "q") if identity is not None else None,
                sequence(checked[components[records]], "b"),
                conflict,
                thresholds[1],
            )
            refused += [(int(records[a]), int(records[b])) for a, b in refused_here]
            labels[records] = next_label + owner
            next_label += len(records)
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
    # Pairs as one integer each, either orientation (no index over millions of pairs).
    width = int(max(left.max(), right.max(), *chain(*must_link, *cannot_link))) + 1
    codes = np.minimum(left, right) * width + np.maximum(left, right)
    for pairs, value in ((must_link, 1), (cannot_link, -1)):
        if pairs:
            a, b = np.asarray(pairs, dtype=np.int64).T
            decided[np.isin(codes, np.minimum(a, b) * width + np.maximum(a, b))] = value
    return decided


def _identities(strong: HardIdentifiers, exclusive: np.ndarray):
    """Per record an integer naming its (hard, exclusive) identifier codes, and a cached
    conflict test on two such integers (:func:`conflicts` of one representative record each).

    Records of one person mostly share their identifiers, so a group holds few distinct
    ones and each distinct couple is tested once per run.
    """
    if not strong.n_fields and not exclusive.shape[1]:
        return None, None
    # Rows of codes numbered by hashing (np.unique over rows sorts them: seconds at 1M):
    # mixed radix, re-factorised after each column so that the numbers never overflow.
    identity = np.zeros(len(strong.codes), dtype=np.int64)
    for column in np.hstack([strong.codes, exclusive]).T:
        identity = pd.factorize(identity * (int(column.max()) + 2) + column + 1)[0]
    first = np.zeros(identity.max() + 1 if len(identity) else 0, dtype=np.int64)
    first[identity[::-1]] = np.arange(len(identity))[::-1]
    cache: dict[tuple[int, int], bool] = {}

    def conflict(i: int, j: int) -> bool:
        key = (i, j) if i < j else (j, i)
        if key not in cache:
            pair = np.array([first[i]]), np.array([first[j]])
            cache[key] = bool(conflicts(strong, *pair, exclusive)[0])
        return cache[key]

    return identity, conflict


# Components with more distinct identifiers than this are conflict-tested link by link.
MAX_PRECHECK_IDENTITIES = 300


def _conflicting_components(components, records, identity, strong, exclusive) -> np.ndarray:
    """Per component label: may two of its records conflict (see :func:`conflicts`)?

    Tested once per component of ``records`` on its distinct identifiers (usually one or
    two): a component without a conflicting couple needs no conflict test per merge.
    Components with more than MAX_PRECHECK_IDENTITIES distinct identifiers are marked
    without testing.
    """
    checked = np.zeros(len(components), dtype=bool)
    if identity is None or not len(records):
        return checked
    distinct = pd.DataFrame(
        {"component": components[records], "identity": identity[records], "record": records}
    ).drop_duplicates(["component", "identity"])
    codes = pd.factorize(distinct["component"])[0]
    crowded = np.bincount(codes)[codes] > MAX_PRECHECK_IDENTITIES
    checked[distinct["component"].to_numpy()[crowded]] = True
    a, b, _ = within_block_pairs(np.where(crowded, -1, codes), MAX_PRECHECK_IDENTITIES)
    record = distinct["record"].to_numpy()
    clash = conflicts(strong, record[a], record[b], exclusive)
    checked[components[record[a[clash]]]] = True
    return checked


# Chunks with more scored pairs than this are held in stdlib arrays, not lists.
COMPACT_PAIRS = 2_000_000


def _compact(values: np.ndarray, typecode: str) -> array:
    """``values`` as a stdlib array: 8 bytes or fewer a value instead of a list's ~40 (for
    the giant component of a large run), but slower to index from Python."""
    return array(typecode, np.ascontiguousarray(values, dtype=np.dtype(typecode)).tobytes())


def _as_list(values: np.ndarray, typecode: str) -> list:
    """``values`` as a list (``typecode`` unused): the fastest to index from Python."""
    return values.tolist()


def _adjacency(n_records, lefts, rights, ps, decisions, sequence=_as_list):
    """The scored pairs as each record's neighbour lists (CSR as ``sequence`` containers,
    :func:`_as_list` or :func:`_compact`).

    Built with numpy once, not appended pair by pair; each record's neighbours keep the
    order of the pairs given.
    """
    source = np.r_[lefts, rights]
    # A stable sort by record, as one sort of distinct keys (faster than kind="stable").
    order = np.argsort(source * len(source) + np.arange(len(source)))
    target = np.r_[rights, lefts][order]
    starts = np.r_[0, np.cumsum(np.bincount(source, minlength=n_records))]
    return (
        sequence(starts, "q"),
        sequence(target, "q"),
        sequence(np.r_[ps, ps][order], "d"),
        sequence(np.r_[decisions, decisions][order], "b"),
    )


def _average_link(lefts, rights, decisions, adjacency, identity, checked, conflict, min_average):
    """Greedy average-link merging of records ``0 .. m-1`` along their links.

    ``lefts`` / ``rights`` are the links (pairs at or above the link threshold), sorted by
    component and, within one, by score (descending); ``adjacency`` (see :func:`_adjacency`)
    holds every scored pair, links or not, as log-odds (``min_average`` is one too). Two
    groups merge when their scored cross pairs average at least ``min_average``, no
    cannot-link lies between them, and no two of their records conflict on every strong
    identifier (a reviewer's "match" overrides the last two checks for its own pair). Each
    group keeps its distinct identifiers and each record its scored neighbours, so a check
    costs the smaller group's links, not the product of the two groups' sizes. ``checked``
    marks the records of components where a conflict is possible (the others skip the test).

    Returns
    -------
    owner : ndarray
        The group of each record (the record id of one of its members).
    refused : list of (int, int)
        Links refused for a conflict.
    """
    starts, targets, scores, verdicts = adjacency
    n_records = len(starts) - 1
    owner = list(range(n_records)) if isinstance(starts, list) else array("q", range(n_records))
    members: dict[int, list[int]] = {}
    identifiers: dict[int, set] = {}
    refused = []
    rejected: set[tuple[int, int, int, int]] = set()
    for a, b, d in zip(lefts, rights, decisions, strict=True):
        ga, gb = owner[a], owner[b]
        if ga == gb:
            continue
        members_a, members_b = members.get(ga, [ga]), members.get(gb, [gb])
        state = (min(ga, gb), max(ga, gb), len(members_a), len(members_b))
        if d != 1 and state in rejected:
            continue
        if d != 1 and checked[a]:
            ids_a = identifiers.get(ga) or {identity[ga]}
            ids_b = identifiers.get(gb) or {identity[gb]}
            if any(x != y and conflict(x, y) for x in ids_a for y in ids_b):
                refused.append((a, b))
                rejected.add(state)
                continue
        if len(members_b) < len(members_a):
            small, large, members_small = gb, ga, members_b
        else:
            small, large, members_small = ga, gb, members_a
        total, count, blocked = 0.0, 0, False
        for record in members_small:
            for k in range(starts[record], starts[record + 1]):
                if owner[targets[k]] == large:
                    total += scores[k]
                    count += 1
                    blocked |= verdicts[k] == -1
        if blocked or (d != 1 and total / max(count, 1) < min_average):
            rejected.add(state)
            continue
        for record in members_small:
            owner[record] = large
        members.setdefault(large, [large]).extend(members_small)
        members.pop(small, None)
        if checked[a]:
            identifiers[large] = (identifiers.get(large) or {identity[large]}) | (
                identifiers.pop(small, None) or {identity[small]}
            )
    return np.asarray(owner, dtype=np.int64), refused
