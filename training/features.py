"""As-of features and the one table of feature definitions.

A feature of an index offence is computed only from what the records showed at its decision
date T (docs/ARCHITECTURE.md, "as of"): events with ``offense_date < T`` and ``recorded_at <= T``,
plus the index offence itself (whose disposition, like any other, counts only once recorded). A
conviction recorded after T is not a conviction at T.

:data:`FEATURES` is the single table of definitions (name, plain wording, monotone direction,
reason-code phrasing) read by the tiers, the model, the report and the service. Each computed
feature keeps its *provenance*: the source record ids (and their link probabilities) it rests
on, so tier reasons and reason codes can cite them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np
import pandas as pd

from ipvi.arrays import factorize, positions_in, run_starts, unique_counts, unique_sorted
from ipvi.columns import Columns
from ipvi.errors import IpviError
from ipvi.schema import PROTECTED_FIELDS
from training.offences import as_datetime, lookup

# Provenance column of the index offence's own records (cited by every tier reason).
INDEX_OFFENCE = "index_offence"
# "No prior IPV offence" is coded as this many days since the last one.
DAYS_CAP = 3650.0


@dataclass(frozen=True)
class FeatureDef:
    """One feature: its name, what it means, how it moves risk, and how a reason reads.

    ``direction`` is +1 when more means a higher likelihood of a recorded re-offence, -1 when
    less does, 0 when unknown (no monotone constraint). ``reason`` is a format string over
    ``value`` (and ``s``, the plural ending); a feature whose ``absent_value`` means "none"
    (a yes/no feature's 0) says so in ``absent``. ``model`` is False for tier-only features;
    ``attribute`` names the configuration key (``sex``, ...) that excludes it as a proxy of a
    protected attribute.
    """

    name: str
    wording: str
    direction: int
    reason: str
    model: bool = True
    attribute: str | None = None
    absent: str | None = None
    absent_value: float = 0.0

    def reason_text(self, value: float) -> str:
        """How a reason code reads for ``value``: "1 prior IPV offence ...", "2 ... offences",
        "no strangulation now"."""
        if self.absent is not None and value == self.absent_value:
            return self.absent
        return self.reason.format(value=value, s="" if value == 1 else "s")


def _counts(stem: str, what: str, counted: str, direction: int = 1) -> list[FeatureDef]:
    """Counts over 1 year, 3 years and ever; ``counted`` is the reason's wording, with
    ``{s}`` where the plural takes an s."""
    return [
        FeatureDef(
            f"{stem}_1y",
            f"{what} in the 12 months before the decision date",
            direction,
            f"{{value:g}} {counted} in the last 12 months",
        ),
        FeatureDef(
            f"{stem}_3y",
            f"{what} in the 3 years before the decision date",
            direction,
            f"{{value:g}} {counted} in the last 3 years",
        ),
        FeatureDef(stem, f"{what} ever recorded before", direction, f"{{value:g}} {counted} ever"),
    ]


FEATURES: tuple[FeatureDef, ...] = (
    *_counts("prior_ipv_offences", "prior IPV offences", "prior IPV offence{s}"),
    *_counts("prior_ipv_charges", "prior IPV offences charged", "prior IPV offence{s} charged"),
    *_counts("prior_ipv_convictions", "prior IPV convictions", "prior IPV conviction{s}"),
    FeatureDef(
        "days_since_last_ipv",
        f"days since the last prior IPV offence ({DAYS_CAP:g} when none)",
        -1,
        "last prior IPV offence {value:.0f} day{s} before",
        absent=f"no prior IPV offence in the last {DAYS_CAP:g} days",
        absent_value=DAYS_CAP,
    ),
    FeatureDef(
        "protective_order_active",
        "a protective order entered within its term",
        1,
        "{value:g} protective order{s} in force",
    ),
    *_counts("po_violations", "protective-order violations", "protective-order violation{s}")[::2],
    FeatureDef(
        "index_strangulation",
        "strangulation at the index offence",
        1,
        "strangulation now",
        absent="no strangulation now",
    ),
    FeatureDef(
        "index_weapon", "weapon at the index offence", 1, "weapon used now", absent="no weapon now"
    ),
    FeatureDef(
        "index_injury",
        "victim injured at the index offence",
        1,
        "victim injured now",
        absent="no injury now",
    ),
    FeatureDef(
        "index_threat_to_kill",
        "threat to kill at the index offence",
        1,
        "threat to kill now",
        absent="no threat to kill now",
    ),
    FeatureDef(
        "index_children_present",
        "children present at the index offence",
        0,
        "children present now",
        absent="no children present now",
    ),
    FeatureDef(
        "strangulation_ever",
        "prior offences with strangulation",
        1,
        "{value:g} prior offence{s} with strangulation",
    ),
    FeatureDef(
        "weapon_ever", "prior offences with a weapon", 1, "{value:g} prior offence{s} with a weapon"
    ),
    FeatureDef(
        "injury_ever",
        "prior offences injuring a victim",
        1,
        "{value:g} prior offence{s} with injury",
    ),
    FeatureDef(
        "threat_to_kill_ever",
        "prior offences with a threat to kill",
        1,
        "{value:g} prior offence{s} with a threat to kill",
    ),
    FeatureDef(
        "prior_nonipv_offences",
        "prior offences not flagged IPV",
        1,
        "{value:g} prior non-IPV offence{s}",
    ),
    FeatureDef(
        "distinct_victims",
        "distinct IPV victims, index offence included",
        1,
        "{value:g} distinct IPV victim{s}",
    ),
    FeatureDef(
        "distinct_victims_3y",
        "distinct IPV victims in the 3 years before the decision date, index offence included",
        1,
        "{value:g} distinct IPV victim{s} in the last 3 years",
    ),
    FeatureDef(
        "on_probation",
        "on probation (a start within its term)",
        1,
        "on probation",
        absent="not on probation",
    ),
    FeatureDef(
        "probation_violations",
        "probation violations ever recorded",
        1,
        "{value:g} probation violation{s}",
    ),
    FeatureDef(
        "prior_custody", "prior offences with a jail booking", 1, "{value:g} prior jail booking{s}"
    ),
    FeatureDef(
        "in_custody",
        "in custody at the decision date",
        0,
        "in custody at the decision date",
        absent="not in custody at the decision date",
    ),
    FeatureDef(
        "prior_notifications",
        "prior IPVI notifications delivered",
        0,
        "{value:g} prior IPVI notification{s}",
    ),
    FeatureDef("age", "age in years at the decision date", -1, "age {value:.0f}"),
    FeatureDef(
        "sex_male",
        "recorded sex is male",
        0,
        "recorded male",
        attribute="sex",
        absent="not recorded male",
    ),
    FeatureDef(
        "ipv_charges",
        "IPV offences charged, index included, counted as the tier rules say",
        1,
        "{value:g} IPV offence{s} charged",
        model=False,
    ),
)
FEATURE_BY_NAME: dict[str, FeatureDef] = {feature.name: feature for feature in FEATURES}

# Configuration keys that may name excluded attributes without being feature names: proxies
# the data do not turn into features at all.
PROXY_KEYS: frozenset[str] = frozenset({"sex", "zip", "neighbourhood"})


def feature_table() -> pd.DataFrame:
    """The feature definitions as a table (for the model card, report and service)."""
    return pd.DataFrame([asdict(feature) for feature in FEATURES])


def model_features(excluded: list[str]) -> list[str]:
    """Model inputs: every model feature not excluded by name or by its attribute.

    Raises
    ------
    IpviError
        When ``excluded`` names something that is neither a feature nor a known proxy.
    """
    unknown = sorted(set(excluded) - set(FEATURE_BY_NAME) - PROXY_KEYS - PROTECTED_FIELDS)
    if unknown:
        raise IpviError(
            f"config key 'training.excluded_features': unknown feature(s) {', '.join(unknown)}"
        )
    drop = set(excluded)
    return [f.name for f in FEATURES if f.model and f.name not in drop and f.attribute not in drop]


def group_lists(
    groups: np.ndarray, codes: np.ndarray, labels: np.ndarray, n_groups: int
) -> list[list]:
    """Per group ``0 .. n_groups - 1``, the sorted distinct ``labels[codes]`` as a list.

    ``labels`` must be sorted (as :func:`pandas.factorize` with ``sort=True`` gives them), so
    sorting codes sorts values. Vectorised (one integer sort) rather than a Python
    aggregation per group; groups with no value get an empty list.
    """
    width = max(len(labels), 1)
    keys = unique_sorted(np.asarray(groups, dtype=np.int64) * width + np.asarray(codes))
    bounds = np.searchsorted(keys // width, np.arange(n_groups + 1))
    values = np.asarray(labels, dtype=object)[keys % width].tolist()
    # Slices of one list: a numpy slice and its tolist per group cost several times more.
    return list(map(values.__getitem__, map(slice, bounds[:-1].tolist(), bounds[1:].tolist())))


def lists_of(groups: np.ndarray, values, n_groups: int) -> list[list]:
    """Per group, the sorted distinct ``values`` (:func:`group_lists` over raw values)."""
    codes, labels = factorize(np.asarray(values, dtype=object), sort=True)
    return group_lists(groups, codes, np.asarray(labels, dtype=object), n_groups)


def _count(rows: np.ndarray, mask, n: int) -> np.ndarray:
    """How many of the entries selected by ``mask`` each row ``0 .. n - 1`` holds (floats)."""
    return np.bincount(rows[np.asarray(mask)], minlength=n).astype(float)


YEAR = np.timedelta64(int(365.25 * 24 * 3600), "s")  # a mean calendar year, for ages


def expand(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ranges ``[lo, hi)`` as (range number, position) pairs, without a Python loop."""
    lengths = np.maximum(hi - lo, 0)
    owner = np.repeat(np.arange(len(lo)), lengths)
    offsets = np.cumsum(lengths) - lengths
    return owner, lo[owner] + np.arange(int(lengths.sum())) - offsets[owner]


@dataclass(frozen=True)
class PersonDates:
    """Dated rows (events, custody spells) keyed by (person, date) as one sortable integer.

    A row's key is its person's code (persons in sorted order) times ``len(dates) + 1`` plus
    the rank of its date among the distinct ``dates`` (whole seconds), so rows sorted by
    person and date have ascending keys and a person's rows in a date range are one
    ``searchsorted`` away, for any dates numpy can hold.
    """

    persons: np.ndarray
    dates: np.ndarray
    key: np.ndarray

    @classmethod
    def of(cls, person_id, date) -> PersonDates:
        codes, persons = factorize(np.asarray(person_id, dtype=object), sort=True)
        seconds = np.asarray(date, dtype="datetime64[s]")
        dates = unique_sorted(seconds)
        key = codes.astype(np.int64) * (len(dates) + 1) + np.searchsorted(dates, seconds)
        return cls(persons=persons, dates=dates, key=key)

    def ranges(self, person_id, start=None, end=None) -> tuple[np.ndarray, np.ndarray]:
        """Per query, the positions ``[lo, hi)`` of its person's rows dated in [start, end)
        (unbounded where ``start`` or ``end`` is None); the rows must be sorted by key."""
        code = positions_in(person_id, self.persons)
        base = np.maximum(code, 0).astype(np.int64) * (len(self.dates) + 1)
        first = 0 if start is None else self._rank(start)
        last = len(self.dates) if end is None else self._rank(end)
        lo = np.searchsorted(self.key, base + first)
        hi = np.searchsorted(self.key, base + last)
        return lo, np.where(code >= 0, hi, lo)

    def _rank(self, dates) -> np.ndarray:
        """How many distinct dates lie before each of ``dates``."""
        return np.searchsorted(self.dates, np.asarray(dates, dtype="datetime64[s]"))


class History:
    """Person events as arrays, sorted by person and date, for as-of joins and citations.

    Parameters
    ----------
    person_events : Columns
        Person events with ``offence_id``.
    """

    def __init__(self, person_events: Columns) -> None:
        dated = PersonDates.of(person_events["person_id"], person_events["offense_date"])
        order = np.argsort(dated.key, kind="stable")
        self.events = person_events.take(order)
        self.dated = replace(dated, key=dated.key[order])
        self.offence = np.asarray(self.events["offence_id"])
        # A unit is an offence, or a status event on its own (after every offence id).
        self.unit = np.where(
            self.offence >= 0,
            self.offence,
            self.offence.max(initial=0) + 1 + np.arange(len(self.offence)),
        )
        self.unit_order = np.argsort(self.unit, kind="stable")
        self.sorted_unit = self.unit[self.unit_order]
        self.date = np.asarray(self.events["offense_date"], dtype="datetime64[ns]")
        self.recorded = np.asarray(self.events["recorded_at"], dtype="datetime64[ns]")
        self.type = np.asarray(self.events["event_type"])
        self.disposition = self.type == "disposition"
        # Record ids coded in sorted order: citations sort integers, not strings.
        codes, labels = factorize(np.asarray(self.events["record_id"], dtype=object), sort=True)
        self.record_code = codes
        self.record_labels = np.asarray(labels, dtype=object)
        self.link = np.asarray(self.events["link_probability"], dtype=float)
        self.as_of: np.ndarray = np.array([], dtype="datetime64[ns]")
        self.index_offence: np.ndarray = np.array([], dtype=np.int64)

    def known(self, rows: np.ndarray, positions: np.ndarray) -> np.ndarray:
        """Whether each event was known at its row's decision date (docs/ARCHITECTURE.md).

        Known: dated before and recorded by the decision date; or part of the index offence,
        except a disposition not yet recorded.
        """
        as_of = self.as_of[rows]
        recorded = self.recorded[positions] <= as_of
        is_index = self.offence[positions] == self.index_offence[rows]
        return ((self.date[positions] < as_of) & recorded) | (
            is_index & (~self.disposition[positions] | recorded)
        )

    def join(self, index: Columns) -> tuple[np.ndarray, np.ndarray]:
        """(index row, event position) of every event known at each index row's decision date."""
        self.as_of = np.asarray(index["as_of"], dtype="datetime64[ns]")
        self.index_offence = np.asarray(index["offence_id"])
        lo, hi = self.dated.ranges(index["person_id"], end=self.as_of)
        rows, positions = expand(lo, hi)
        # The index offence's own events dated on or after the decision date.
        late_rows, late = self.unit_events(self.index_offence)
        after = self.date[late] >= self.as_of[late_rows]
        rows = np.concatenate([rows, late_rows[after]])
        positions = np.concatenate([positions, late[after]])
        keep = self.known(rows, positions)
        return rows[keep], positions[keep]

    def unit_events(self, units: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(query number, event position) of every event of each queried unit."""
        lo = np.searchsorted(self.sorted_unit, units, side="left")
        hi = np.searchsorted(self.sorted_unit, units, side="right")
        owner, order = expand(lo, hi)
        return owner, self.unit_order[order]


@dataclass
class Provenance:
    """Which units (offences, or single status events) each feature of each row rests on.

    ``rows`` and ``units`` are sorted by row; ``matrix[i, j]`` says whether unit ``i``
    contributed to feature ``columns[j]`` of its row.
    """

    rows: np.ndarray
    units: np.ndarray
    matrix: np.ndarray
    columns: list[str]

    @classmethod
    def from_parts(
        cls, columns: list[str], parts: list[tuple[np.ndarray, np.ndarray, dict]]
    ) -> Provenance:
        """Stack (rows, units, {feature: mask}) parts, keeping the units that count."""
        rows, units, matrices = [], [], []
        column_of = {name: column for column, name in enumerate(columns)}
        for part_rows, part_units, masks in parts:
            matrix = np.zeros((len(part_rows), len(columns)), dtype=bool)
            for name, mask in masks.items():
                if name in column_of:
                    matrix[:, column_of[name]] = mask
            keep = matrix.any(axis=1)
            rows.append(part_rows[keep])
            units.append(part_units[keep])
            matrices.append(matrix[keep])
        all_rows = np.concatenate(rows)
        order = np.argsort(all_rows, kind="stable")
        return cls(
            all_rows[order], np.concatenate(units)[order], np.vstack(matrices)[order], columns
        )


@dataclass
class AsOfFeatures:
    """Features of a set of index offences and the records each rests on.

    Attributes
    ----------
    X : Columns
        One row per index offence (positional, same order as the index), one column per feature.
    provenance : Provenance
        The units behind each (row, feature).
    history : History
        The person events behind the units, to turn them into record ids known at each row's
        decision date.
    """

    X: Columns
    provenance: Provenance
    history: History

    def cite(
        self, rows: np.ndarray, features, groups: np.ndarray, n_groups: int
    ) -> tuple[list[list[str]], np.ndarray]:
        """The records behind (row, feature) pairs, gathered by group.

        Parameters
        ----------
        rows, features : array-like
            The pairs: an index row and a feature name each.
        groups : ndarray of int
            The group (``0 .. n_groups - 1``) each pair's records go to: the row, to gather
            all of a row's reasons, or the pair's own number.

        Returns
        -------
        (list of list of str, ndarray)
            Per group, the sorted record ids known at the rows' decision dates, and their
            lowest link probability (NaN when the group rests on no record).
        """
        prov, history = self.provenance, self.history
        rows = np.asarray(rows, dtype=np.int64)
        column_of = {name: j for j, name in enumerate(prov.columns)}
        names = np.asarray(features, dtype=object).tolist()  # not one numpy scalar at a time
        columns = np.array([column_of.get(name, -1) for name in names], dtype=np.int64)
        lo = np.searchsorted(prov.rows, rows, side="left")
        hi = np.where(columns >= 0, np.searchsorted(prov.rows, rows, side="right"), lo)
        pair, unit = expand(lo, hi)
        hit = prov.matrix[unit, columns[pair]]
        pair, unit = pair[hit], unit[hit]
        owner, positions = history.unit_events(prov.units[unit])
        pair = pair[owner]
        known = history.known(rows[pair], positions)
        pair, positions = pair[known], positions[known]
        group = np.asarray(groups, dtype=np.int64)[pair]
        weakest = np.full(n_groups, np.nan)
        np.fmin.at(weakest, group, history.link[positions])
        records = group_lists(
            group, history.record_code[positions], history.record_labels, n_groups
        )
        return records, weakest


def _offences(
    rows: np.ndarray, offence: np.ndarray, index_offence: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The distinct (row, offence) pairs of joined act events.

    Returns the pairs' rows, offence ids, whether each is its row's index offence, and each
    joined event's pair number.
    """
    width = np.int64(max(offence.max(initial=0), 0) + 1)
    keys, pair = np.unique(rows.astype(np.int64) * width + offence, return_inverse=True)
    o_rows, o_offence = keys // width, keys % width
    return o_rows, o_offence, o_offence == index_offence[o_rows], pair


def compute_features(
    index: Columns,
    person_events: Columns,
    *,
    persons: Columns | None = None,
    count_charges: str,
    protective_order_days: int,
    probation_days: int,
) -> AsOfFeatures:
    """Compute every feature of :data:`FEATURES` for each index offence, as of its ``as_of``.

    Parameters
    ----------
    index : Columns
        ``person_id``, ``offence_id`` (the index offence) and ``as_of``.
    person_events : Columns
        Person events with ``offence_id`` (:func:`training.offences.assign_offences`).
    persons : Columns, optional
        ``person_id`` with ``dob`` and ``sex`` (for age and the optional sex feature).
    count_charges : {"all", "pending_or_convicted", "convicted"}
        Which charges the tier feature ``ipv_charges`` counts (``training.tiers.count_charges``).
    protective_order_days, probation_days : int
        How long an order or a probation term counts as active (``training.*`` in the
        configuration; a model version uses the values frozen in its bundle).
    """
    n = len(index)
    history = History(person_events)
    rows, positions = history.join(index)
    events = history.events
    etype = history.type[positions]
    disposition = np.asarray(events["disposition"])[positions]
    flags = ["strangulation", "weapon", "injury", "threat_to_kill", "children_present"]
    offence = history.offence[positions]
    days = (history.as_of[rows] - history.date[positions]) / np.timedelta64(1, "D")
    victim = np.asarray(events["victim_person_id"])[positions]

    # Offences: each (row, offence) pair of act events, its marks the "any" over its events.
    act = offence >= 0
    o_rows, o_offence, is_index, pair = _offences(rows[act], offence[act], history.index_offence)
    n_offences = len(o_rows)

    def any_event(mask) -> np.ndarray:
        out = np.zeros(n_offences, dtype=bool)
        out[pair[np.asarray(mask)[act]]] = True
        return out

    o_days = np.full(n_offences, -np.inf)
    np.maximum.at(o_days, pair, days[act])
    event_ipv = np.asarray(events["ipv"], dtype=bool)[positions]
    ipv = any_event(event_ipv)
    o_flags = {flag: any_event(np.asarray(events[flag], dtype=bool)[positions]) for flag in flags}
    convicted = any_event(disposition == "convicted")
    dismissed = any_event(np.isin(disposition, ["dismissed", "acquitted"])) & ~convicted
    charged = any_event(etype == "charge")
    custody = etype == "custody_start"
    prior = ~is_index
    counted = {
        "all": charged,
        "pending_or_convicted": charged & ~dismissed,
        "convicted": charged & convicted,
    }[count_charges]
    within_1y = o_days <= 365
    within_3y = o_days <= 3 * 365
    indicators: dict[str, np.ndarray] = {}
    for stem, base in (
        ("prior_ipv_offences", prior & ipv),
        ("prior_ipv_charges", prior & ipv & charged),
        ("prior_ipv_convictions", prior & ipv & convicted),
    ):
        indicators[f"{stem}_1y"] = base & within_1y
        indicators[f"{stem}_3y"] = base & within_3y
        indicators[stem] = base
    violation = prior & any_event(etype == "order_violation")
    indicators["po_violations_1y"] = violation & within_1y
    indicators["po_violations"] = violation
    for flag in flags:
        indicators[f"index_{flag}"] = is_index & o_flags[flag]
    for flag in ("strangulation", "weapon", "injury", "threat_to_kill"):
        indicators[f"{flag}_ever"] = prior & o_flags[flag]
    indicators["prior_nonipv_offences"] = prior & ~ipv
    indicators["prior_custody"] = prior & any_event(custody)
    indicators["ipv_charges"] = ipv & counted
    last_days = np.full(n, np.inf)
    np.minimum.at(last_days, o_rows[prior & ipv], o_days[prior & ipv])
    indicators["days_since_last_ipv"] = prior & ipv & (o_days == last_days[o_rows])

    X = {name: _count(o_rows, mask, n) for name, mask in indicators.items()}
    for name in (f"index_{flag}" for flag in flags):
        X[name] = np.minimum(X[name], 1.0)
    X["days_since_last_ipv"] = np.minimum(last_days, DAYS_CAP)

    # Row-level features of status events and victims.
    status: dict[str, np.ndarray] = {
        "protective_order_active": (etype == "protective_order") & (days <= protective_order_days),
        "on_probation": (etype == "probation_start") & (days <= probation_days),
        "probation_violations": etype == "probation_violation",
        "prior_notifications": etype == "notification",
    }
    for name in ("protective_order_active", "probation_violations", "prior_notifications"):
        X[name] = _count(rows, status[name], n)
    X["on_probation"] = np.minimum(_count(rows, status["on_probation"], n), 1.0)

    dates = history.date[positions]
    start = _latest(rows[custody], dates[custody], n)
    released = etype == "custody_end"
    end = _latest(rows[released], dates[released], n)
    X["in_custody"] = (~np.isnat(start) & (np.isnat(end) | (end < start))).astype(float)
    status["in_custody"] = custody & (dates == start[rows])

    status["distinct_victims"] = event_ipv & act & pd.notna(victim)
    status["distinct_victims_3y"] = status["distinct_victims"] & (days <= 3 * 365)
    for name in ("distinct_victims", "distinct_victims_3y"):
        X[name] = _distinct_by_row(rows[status[name]], victim[status[name]], n)

    X["age"], X["sex_male"] = _age_and_sex(index, persons)
    X = Columns({feature.name: X[feature.name] for feature in FEATURES})

    # Provenance at unit level: offence indicators, and status events on their own.
    offence_flags = {**indicators, INDEX_OFFENCE: is_index}
    cited = [
        name for name in [*X.columns, INDEX_OFFENCE] if name in offence_flags or name in status
    ]
    provenance = Provenance.from_parts(
        cited,
        [(o_rows, o_offence, offence_flags), (rows, history.unit[positions], status)],
    )
    return AsOfFeatures(X=X, provenance=provenance, history=history)


def _distinct_by_row(rows: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    """How many distinct ``values`` each row ``0 .. n - 1`` holds (as floats)."""
    codes = pd.factorize(values)[0].astype(np.int64)
    width = len(codes) + 1
    distinct = unique_sorted(rows * width + codes) // width
    return np.bincount(distinct, minlength=n).astype(float)


def _latest(rows: np.ndarray, dates: np.ndarray, n: int) -> np.ndarray:
    """Per row ``0 .. n - 1``, the latest of its ``dates`` (NaT when it has none)."""
    latest = np.full(n, np.datetime64("NaT"), dtype="datetime64[ns]")
    np.fmax.at(latest, rows, dates)
    return latest


def _age_and_sex(index: Columns, persons: Columns | None) -> tuple[np.ndarray, np.ndarray]:
    """Age in years at each row's decision date, and 1.0 where recorded male (NaN unknown)."""
    n = len(index)
    if persons is None:
        return np.full(n, np.nan), np.full(n, np.nan)
    where = positions_in(index["person_id"], persons["person_id"])
    dob = lookup(as_datetime(persons["dob"]), where, np.datetime64("NaT")).astype("datetime64[ns]")
    as_of = np.asarray(index["as_of"], dtype="datetime64[ns]")
    age = (as_of - dob) / YEAR
    sex = lookup(np.asarray(persons["sex"], dtype=object), where)
    return age, np.where(pd.isna(sex), np.nan, sex == "male")


def persons_table(mentions: Columns, crosswalk: Columns) -> Columns:
    """One row per linked person: the most common date of birth and sex among its mentions.

    Used for age (and sex, only if configured); victims' mentions are included since a person
    may appear in both roles. Ties go to the earliest date of birth, and to "female" before
    "male".
    """
    where = positions_in(mentions["record_id"], crosswalk["record_id"])
    linked = where >= 0
    person = np.asarray(crosswalk["person_id"], dtype=object)[where[linked]]
    person_code, people = factorize(person, sort=True)
    n = len(people)
    dob = as_datetime(mentions["dob"])[linked]
    sex = np.asarray(mentions["sex"], dtype=object)[linked]
    known_sex = np.isin(sex, ["male", "female"])
    return Columns(
        {
            "person_id": np.asarray(people, dtype=object),
            "dob": _most_common(person_code, dob, ~np.isnat(dob), n),
            "sex": _most_common(person_code, sex, known_sex, n),
        },
    )


def _most_common(groups: np.ndarray, values: np.ndarray, present: np.ndarray, n: int) -> np.ndarray:
    """Per group, its most frequent present value (ties: the smallest); missing when none."""
    codes, labels = factorize(values[present], sort=True)
    width = max(len(labels), 1)
    keys, counts = unique_counts(groups[present] * width + codes)
    group, code = keys // width, keys % width
    # Most frequent first, then the smallest value: the first row of each group wins.
    order = np.lexsort((code, -counts, group))
    first = order[run_starts(group[order])]
    missing = np.datetime64("NaT") if values.dtype.kind == "M" else None
    out = np.full(n, missing, dtype=values.dtype if values.dtype.kind == "M" else object)
    out[group[first]] = np.asarray(labels)[code[first]]
    return out


def check_no_protected(columns: list[str]) -> None:
    """Refuse any model input named after a protected attribute."""
    bad = sorted(set(columns) & PROTECTED_FIELDS)
    if bad:
        raise IpviError(f"protected attribute(s) {', '.join(bad)} may never be model inputs")
