"""Stable person ids across runs, and linking one new record in memory.

Stable ids (:func:`assign_person_ids`): each new cluster inherits the person id its records
had. A cluster holding records of several old persons is a *merge*: the oldest id (smallest
``seq``) survives and the others retire, pointing to it. An old person whose records now lie
in several clusters is a *split*: its id retires and every part gets an id of its own (a new
one, unless the part also holds another surviving person). Ids are minted from one counter
(``seq``) under the run lock, so they never collide.

One record (:class:`LinkIndex`): an in-memory index of every current mention (standardised
values, blocking keys as sorted integers for binary search, the model its linkage run stored)
links one new record against all of them without re-running anything: look up its blocking
keys, compare with the few candidates, score, and return the best person above the link
threshold. Each candidate person carries the agreement level label of every compared field for
its best-matching record (never a stored value). The registry's index
(:func:`linkage.run.load_link_index`) holds a confidential address as missing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ipvi.arrays import unique_sorted
from ipvi.errors import IpviError
from linkage.compare import Vocabulary
from linkage.fellegi_sunter import FellegiSunter, probability
from linkage.settings import LinkageSettings
from linkage.standardize import MISSING, standardize_record


def format_person_id(prefix: str, seq: int) -> str:
    """``P00000042``: the prefix and the zero-padded mint counter."""
    return f"{prefix}{seq:08d}"


@dataclass
class IdAssignment:
    """Person id per record, and what changed: new, merged and split ids."""

    person_ids: np.ndarray
    minted: list[tuple[str, int]] = field(default_factory=list)  # (person_id, seq)
    changes: list[tuple[str, str, str]] = field(default_factory=list)  # (retired, successor, kind)

    @property
    def retired(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for retired, successor, _ in self.changes:
            out.setdefault(retired, []).append(successor)
        return out


def assign_person_ids(
    record_ids: np.ndarray,
    labels: np.ndarray,
    previous: pd.Series,
    seq_of: pd.Series,
    next_seq: int,
    prefix: str,
) -> IdAssignment:
    """Person id of each record from its cluster label and the previous crosswalk.

    Parameters
    ----------
    record_ids, labels : array
        Each record and its new cluster.
    previous : Series
        record_id -> person id of the last crosswalk (records absent there are new).
    seq_of : Series
        active person id -> its mint counter (smaller is older).
    next_seq : int
        The next free counter value.
    prefix : str
        Prefix of minted ids.

    Examples
    --------
    >>> previous = pd.Series({"a": "P1", "b": "P2", "c": "P3", "d": "P3"})
    >>> seq_of = pd.Series({"P1": 1, "P2": 2, "P3": 3})
    >>> out = assign_person_ids(np.array(["a", "b", "c", "d", "e"]), np.array([0, 0, 1, 2, 2]),
    ...                         previous, seq_of, next_seq=4, prefix="P")
    >>> out.person_ids.tolist()
    ['P1', 'P1', 'P00000004', 'P00000005', 'P00000005']
    >>> sorted(out.changes)
    [('P2', 'P1', 'merge'), ('P3', 'P00000004', 'split'), ('P3', 'P00000005', 'split')]
    """
    frame = pd.DataFrame(
        {"record": record_ids, "label": labels, "old": previous.reindex(record_ids).to_numpy()}
    )
    frame["old"] = frame["old"].where(frame["old"].isin(seq_of.index))
    known = frame.dropna(subset=["old"])
    parts = known.groupby("old")["label"].nunique()
    split_ids = set(parts.index[parts > 1])
    # Surviving candidates per cluster: its old ids that were not split, oldest first.
    candidates = known[~known["old"].isin(split_ids)][["label", "old"]].drop_duplicates()
    candidates = candidates.assign(seq=candidates["old"].map(seq_of)).sort_values(["label", "seq"])
    keeper = candidates.drop_duplicates("label").set_index("label")["old"]
    changes: list[tuple[str, str, str]] = []
    for label, old in candidates[["label", "old"]].itertuples(index=False):
        if keeper[label] != old:
            changes.append((old, keeper[label], "merge"))
    minted: list[tuple[str, int]] = []
    cluster_ids = keeper.to_dict()
    for label in pd.unique(frame["label"]):
        if label not in cluster_ids:
            cluster_ids[label] = format_person_id(prefix, next_seq)
            minted.append((cluster_ids[label], next_seq))
            next_seq += 1
    # Each split id with its parts in order of appearance (one pass, not one per split id).
    parts_of = known[known["old"].isin(split_ids)][["old", "label"]].drop_duplicates()
    for old, label in parts_of.sort_values("old", kind="stable").itertuples(index=False):
        changes.append((old, cluster_ids[label], "split"))
    person_ids = frame["label"].map(cluster_ids).to_numpy(dtype=object)
    return IdAssignment(person_ids=person_ids, minted=minted, changes=changes)


@dataclass
class LinkMatch:
    """The answer for one record: the best person, its probability, and the candidates.

    Each candidate is ``{"person_id", "probability", "agreement"}``, ``agreement`` mapping every
    comparison to its level label (``"exact"``, ``"day and month swapped"``...).
    """

    person_id: str | None
    probability: float
    candidates: list[dict]
    elapsed_ms: float


class LinkIndex:
    """In-memory index of current mentions for linking one record at a time.

    Parameters
    ----------
    settings : LinkageSettings
        Comparisons, blocking rules and link threshold (the same as the batch run).
    prepare : callable, optional
        ``prepare(mention: dict) -> dict`` adds the linker's input fields to a new mention
        (the registry passes :func:`linkage.run.registry_record_keys`).

    Attributes
    ----------
    codes_ : dict of str -> (ndarray, Index)
        Per compared or blocking column: each indexed mention's standardised value as a code
        (-1 missing) and the distinct values. Codes, not one string object per mention, keep a
        million-mention index small enough for every service worker to hold one.
    keys_ : list of (ndarray, ndarray)
        Per blocking rule: the sorted joint keys (integers) and the mention position of each.
    person_codes_ : ndarray of int
        Each indexed mention's person, as a position in ``persons_`` (the distinct person ids).
    level_labels_ : list of list of str
        Per comparison, the label of each level without the comparison-name prefix.
    rules_ : list of list of str
        The blocking rules of the run that fitted the model.
    link_threshold_ : float
        The link threshold of that run.
    model_ : FellegiSunter
        The fitted model.
    run_id_ : str or None
        The linkage run whose crosswalk and model the index holds.
    """

    def __init__(self, settings: LinkageSettings, prepare=None):
        self.settings = settings
        self.prepare = prepare

    def fit(
        self,
        standardized: pd.DataFrame,
        person_ids,
        model: FellegiSunter,
        run_id: str | None = None,
    ) -> LinkIndex:
        """Index ``standardized`` mentions (from :meth:`Linker.standardize`) and their persons.

        ``model`` is already fitted (by the run that made ``person_ids``): nothing is learned
        here but the lookup structures.
        """
        self.run_id_ = run_id
        standardized = standardized.reset_index(drop=True)
        # The rules and threshold of the run that fitted the model (stored with it): its
        # scores are per rule, and `auto` chose both from the data.
        rules = model.blocking_rules_
        self.rules_ = [list(rule) for rule in rules]
        self.link_threshold_ = model.link_threshold_
        needed = set(self.settings.columns) | {c for rule in rules for c in rule}
        self.codes_: dict[str, tuple[np.ndarray, pd.Index]] = {}
        for column in needed:
            values = (
                standardized[column].to_numpy(dtype=object)
                if column in standardized
                else np.full(len(standardized), MISSING, dtype=object)
            )
            codes, uniques = pd.factorize(np.where(values == MISSING, None, values))
            self.codes_[column] = (codes.astype(np.int32), pd.Index(uniques, dtype=object))
        # Per column, the value of each code shifted by one: position 0 is "missing".
        self._labels = {
            column: np.concatenate([np.array([MISSING], dtype=object), uniques.to_numpy()])
            for column, (_, uniques) in self.codes_.items()
        }
        person_codes, persons = pd.factorize(np.asarray(person_ids, dtype=object))
        self.person_codes_ = person_codes.astype(np.int32)
        self.persons_ = np.asarray(persons, dtype=object)
        self.level_labels_ = [
            [label.removeprefix(f"{c.name}: ") for label in c.level_labels()]
            for c in self.settings.comparisons
        ]
        self._check_radix(rules)
        self.keys_ = [self._sorted_keys(rule) for rule in rules]
        self.model_ = model
        return self

    def _sorted_keys(self, rule: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """The rule's joint key of every mention as one integer, sorted, and its positions.

        Each column is factorised once (:meth:`_column_codes`); a joint key is the mixed-radix
        number of its columns' codes, so sorting and searching work on integers, not strings.
        """
        codes = np.zeros(len(self.person_codes_), dtype=np.int64)
        valid = np.ones(len(codes), dtype=bool)
        for column in rule:
            column_codes, uniques = self._column_codes(column)
            codes = codes * len(uniques) + column_codes
            valid &= column_codes >= 0
        present = np.flatnonzero(valid)
        order = present[np.argsort(codes[present], kind="stable")]
        return codes[order], order

    def _column_codes(self, column: str) -> tuple[np.ndarray, pd.Index]:
        return self.codes_[column]

    def _values(self, column: str, positions: np.ndarray) -> np.ndarray:
        """Standardised values of the mentions at ``positions`` (``MISSING`` where missing)."""
        return self._labels[column][self.codes_[column][0][positions] + 1]

    def _check_radix(self, rules: list[list[str]]) -> None:
        for rule in rules:
            product = 1
            for column in rule:
                product *= max(len(self._column_codes(column)[1]), 1)
            if product >= 2**62:
                raise IpviError(
                    f"config key 'linkage.blocking_rules': rule {rule} has too many distinct "
                    "keys for the link index; use fewer or coarser columns"
                )

    def candidates(self, record: dict[str, str]) -> tuple[np.ndarray, list[np.ndarray]]:
        """Positions of indexed mentions sharing a blocking key with the one ``record``, and
        per blocking rule which of those positions (indices into the first array) it found."""
        found: list[np.ndarray] = []
        config = self.settings.config
        for rule, limit, (keys, order) in zip(
            self.rules_, config.block_limits(self.rules_), self.keys_, strict=True
        ):
            key = 0
            for column in rule:
                _, uniques = self.codes_[column]
                value = record.get(column, MISSING)
                if value == MISSING or value not in uniques:  # no indexed mention shares it
                    break
                key = key * len(uniques) + uniques.get_loc(value)
            else:
                low = np.searchsorted(keys, key, side="left")
                high = np.searchsorted(keys, key, side="right")
                if 0 < high - low <= limit:
                    found.append(np.sort(order[low:high]))
                    continue
            found.append(np.zeros(0, dtype=np.int64))
        positions = unique_sorted(np.concatenate(found)) if found else np.zeros(0, np.int64)
        return positions, [np.searchsorted(positions, rule_found) for rule_found in found]

    def link(self, mention: dict) -> LinkMatch:
        """Link one canonical mention (a dict of canonical fields) to the indexed persons."""
        if not hasattr(self, "model_"):
            raise IpviError("the link index is not fitted: call fit() first")
        start = time.perf_counter()
        if self.prepare is not None:
            mention = self.prepare(dict(mention))
        record = standardize_record(mention, self.settings.columns)
        positions, rule_rows = self.candidates(record)
        if len(positions) == 0:
            return LinkMatch(None, 0.0, [], (time.perf_counter() - start) * 1000)
        comparisons = self.settings.comparisons
        n = len(positions)
        columns = self.settings.columns
        old = {c: self._values(c, positions) for c in columns}
        new = {c: np.full(n, record.get(c, MISSING), dtype=object) for c in columns}
        vocabulary, codes_new, codes_old = Vocabulary.encode_arrays(new, old)
        levels = np.column_stack(
            [c.levels_from_codes(codes_new, codes_old, vocabulary) for c in comparisons]
        )
        tf_left = {c.column: new[c.column] for c in comparisons if c.tf_level() is not None}
        match = probability(self.model_.match_weight(levels, tf_left, rule_rows))
        persons = self.persons_[self.person_codes_[positions]]
        order = np.argsort(-match, kind="stable")
        _, first = np.unique(persons[order], return_index=True)
        rows = order[first]  # each person's best-matching candidate, by person id
        rows = rows[np.argsort(-match[rows], kind="stable")][:5]  # best first
        top = [
            {
                "person_id": persons[row],
                "probability": round(float(match[row]), 6),
                "agreement": self._agreement(levels[row]),
            }
            for row in rows
        ]
        threshold = self.link_threshold_
        best = float(match[rows[0]])
        person = persons[rows[0]] if best >= threshold else None
        return LinkMatch(person, best, top, (time.perf_counter() - start) * 1000)

    def _agreement(self, levels: np.ndarray) -> dict[str, str]:
        """Level label per comparison of one pair."""
        return {
            c.name: labels[level]
            for c, labels, level in zip(
                self.settings.comparisons, self.level_labels_, levels, strict=True
            )
        }
