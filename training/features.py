"""As-of features and the one table of feature definitions.

A feature of an index offence is computed only from what the records showed at its decision
date T (../shared/DESIGN.md, "as of"): events with ``offense_date < T`` and ``recorded_at <= T``,
plus the index offence itself (whose disposition, like any other, counts only once recorded). A
conviction recorded after T is not a conviction at T.

:data:`FEATURES` is the single table of definitions (name, plain wording, monotone direction,
reason-code phrasing) read by the tiers, the model, the report and the service. Each computed
feature keeps its *provenance*: the source record ids (and their link probabilities) it rests
on, so tier reasons and reason codes can cite them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from ipvi.errors import IpviError
from ipvi.schema import PROTECTED_FIELDS

# Provenance column of the index offence's own records (cited by every tier reason).
INDEX_OFFENCE = "index_offence"
# "No prior IPV offence" is coded as this many days since the last one.
DAYS_CAP = 3650.0


@dataclass(frozen=True)
class FeatureDef:
    """One feature: its name, what it means, how it moves risk, and how a reason reads.

    ``direction`` is +1 when more means a higher likelihood of a recorded re-offence, -1 when
    less does, 0 when unknown (no monotone constraint). ``reason`` is a format string over
    ``value``. ``model`` is False for tier-only features; ``attribute`` names the configuration
    key (``sex``, ...) that excludes it as a proxy of a protected attribute.
    """

    name: str
    wording: str
    direction: int
    reason: str
    model: bool = True
    attribute: str | None = None


def _counts(stem: str, what: str, direction: int = 1) -> list[FeatureDef]:
    return [
        FeatureDef(
            f"{stem}_1y",
            f"{what} in the 12 months before the decision date",
            direction,
            f"{{value:g}} {what} in the last 12 months",
        ),
        FeatureDef(
            f"{stem}_3y",
            f"{what} in the 3 years before the decision date",
            direction,
            f"{{value:g}} {what} in the last 3 years",
        ),
        FeatureDef(stem, f"{what} ever recorded before", direction, f"{{value:g}} {what} ever"),
    ]


FEATURES: tuple[FeatureDef, ...] = (
    *_counts("prior_ipv_offences", "prior IPV offences"),
    *_counts("prior_ipv_charges", "prior IPV offences charged"),
    *_counts("prior_ipv_convictions", "prior IPV convictions"),
    FeatureDef(
        "days_since_last_ipv",
        f"days since the last prior IPV offence ({DAYS_CAP:g} when none)",
        -1,
        "last prior IPV offence {value:.0f} days before",
    ),
    FeatureDef(
        "protective_order_active",
        "a protective order entered within its term",
        1,
        "{value:g} protective order(s) in force",
    ),
    *_counts("po_violations", "protective-order violations")[::2],
    FeatureDef("index_strangulation", "strangulation at the index offence", 1, "strangulation now"),
    FeatureDef("index_weapon", "weapon at the index offence", 1, "weapon used now"),
    FeatureDef("index_injury", "victim injured at the index offence", 1, "victim injured now"),
    FeatureDef(
        "index_threat_to_kill", "threat to kill at the index offence", 1, "threat to kill now"
    ),
    FeatureDef(
        "index_children_present",
        "children present at the index offence",
        0,
        "children present now",
    ),
    FeatureDef(
        "strangulation_ever",
        "prior offences with strangulation",
        1,
        "{value:g} prior offence(s) with strangulation",
    ),
    FeatureDef(
        "weapon_ever", "prior offences with a weapon", 1, "{value:g} prior offence(s) with a weapon"
    ),
    FeatureDef(
        "injury_ever",
        "prior offences injuring a victim",
        1,
        "{value:g} prior offence(s) with injury",
    ),
    FeatureDef(
        "threat_to_kill_ever",
        "prior offences with a threat to kill",
        1,
        "{value:g} prior offence(s) with a threat to kill",
    ),
    FeatureDef(
        "prior_nonipv_offences",
        "prior offences not flagged IPV",
        1,
        "{value:g} prior non-IPV offence(s)",
    ),
    FeatureDef(
        "distinct_victims",
        "distinct IPV victims, index offence included",
        1,
        "{value:g} distinct IPV victim(s)",
    ),
    FeatureDef("on_probation", "on probation (a start within its term)", 1, "on probation"),
    FeatureDef(
        "probation_violations",
        "probation violations ever recorded",
        1,
        "{value:g} probation violation(s)",
    ),
    FeatureDef(
        "prior_custody", "prior offences with a jail booking", 1, "{value:g} prior jail booking(s)"
    ),
    FeatureDef(
        "in_custody", "in custody at the decision date", 0, "in custody at the decision date"
    ),
    FeatureDef(
        "prior_notifications",
        "prior IPVI notifications delivered",
        0,
        "{value:g} prior IPVI notification(s)",
    ),
    FeatureDef("age", "age in years at the decision date", -1, "age {value:.0f}"),
    FeatureDef("sex_male", "recorded sex is male", 0, "recorded male", attribute="sex"),
    FeatureDef(
        "ipv_charges",
        "IPV offences charged, index included, counted as the tier rules say",
        1,
        "{value:g} IPV offence(s) charged",
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


@dataclass
class AsOfFeatures:
    """Features of a set of index offences and the records each rests on.

    Attributes
    ----------
    X : DataFrame
        One row per index offence (positional, same order as the index), one column per feature.
    provenance : DataFrame
        ``row``, ``unit`` (an offence, or a single status event) and one boolean column per
        feature: True where that unit contributed to that feature of that row.
    history : History
        The person events behind the units, to turn them into record ids known at each row's
        decision date.
    """

    X: pd.DataFrame
    provenance: pd.DataFrame
    history: History

    def cite(self, pairs: pd.DataFrame) -> pd.DataFrame:
        """The records behind (row, feature) pairs.

        Parameters
        ----------
        pairs : DataFrame
            ``row`` and ``feature`` columns; a row may appear with several features.

        Returns
        -------
        DataFrame
            ``row``, ``feature``, ``record_ids`` (sorted list of the records known at the row's
            decision date) and ``weakest_link`` (their lowest link probability; NaN when the
            feature rests on no record).
        """
        parts = []
        for feature, group in pairs.groupby("feature", sort=False):
            if feature not in self.provenance.columns:
                continue
            hits = self.provenance[
                self.provenance[feature].to_numpy()
                & self.provenance["row"].isin(group["row"]).to_numpy()
            ]
            parts.append(hits[["row", "unit"]].assign(feature=feature))
        base = pairs[["row", "feature"]].drop_duplicates()
        if not parts:
            return base.assign(record_ids=[[] for _ in range(len(base))], weakest_link=np.nan)
        hits = pd.concat(parts, ignore_index=True)
        hits = self.history.records(hits)
        weakest = hits.groupby(["row", "feature"], sort=False)["link_probability"].min()
        cited = group_lists(hits, ["row", "feature"], "record_id").rename(
            columns={"record_id": "record_ids"}
        )
        cited = cited.merge(weakest.rename("weakest_link").reset_index(), on=["row", "feature"])
        out = base.merge(cited, on=["row", "feature"], how="left")
        missing = out["record_ids"].isna().to_numpy()
        out.loc[missing, "record_ids"] = pd.Series([[] for _ in range(missing.sum())]).values
        return out


def group_lists(frame: pd.DataFrame, keys: list[str], value: str) -> pd.DataFrame:
    """One row per distinct ``keys``, with the sorted unique ``value``s as a list.

    Vectorised (sort, de-duplicate, split) rather than a Python aggregation per group.
    """
    if frame.empty:
        return pd.DataFrame(columns=[*keys, value])
    ordered = frame[[*keys, value]].drop_duplicates().sort_values([*keys, value], kind="stable")
    change = np.zeros(len(ordered), dtype=bool)
    change[0] = True
    for key in keys:
        column = ordered[key].to_numpy()
        change[1:] |= column[1:] != column[:-1]
    starts = np.flatnonzero(change)
    values = ordered[value].to_numpy()
    lists = [chunk.tolist() for chunk in np.split(values, starts[1:])]
    out = ordered.iloc[starts][keys].reset_index(drop=True)
    out[value] = lists
    return out


def _count(rows: np.ndarray, mask, n: int) -> np.ndarray:
    return np.bincount(rows[np.asarray(mask)], minlength=n).astype(float)


# Dates as whole seconds, shifted positive, and a person stride: one sortable int64 key.
_SHIFT = 6 * 10**9
_STRIDE = 2 * 10**10


def _seconds(values) -> np.ndarray:
    return np.asarray(values, dtype="datetime64[s]").astype(np.int64) + _SHIFT


def expand(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ranges ``[lo, hi)`` as (range number, position) pairs, without a Python loop."""
    lengths = np.maximum(hi - lo, 0)
    owner = np.repeat(np.arange(len(lo)), lengths)
    offsets = np.cumsum(lengths) - lengths
    return owner, lo[owner] + np.arange(int(lengths.sum())) - offsets[owner]


def person_date_key(person_events: pd.DataFrame) -> tuple[np.ndarray, pd.Index]:
    """A sorted int64 key (person, offence date) of events sorted by person and date."""
    codes, persons = pd.factorize(person_events["person_id"], sort=False)
    key = codes.astype(np.int64) * _STRIDE + _seconds(person_events["offense_date"])
    return key, pd.Index(persons)


def person_ranges(
    key: np.ndarray, persons: pd.Index, person_id, start, end, *, right_closed: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Per query, the positions of its person's events dated in [start, end) (or (start, end])."""
    code = persons.get_indexer(person_id)
    base = np.where(code >= 0, code, 0).astype(np.int64) * _STRIDE
    side = "right" if right_closed else "left"
    lo = np.searchsorted(key, base + _seconds(start), side=side)
    hi = np.searchsorted(key, base + _seconds(end), side=side)
    return lo, np.where(code >= 0, hi, lo)


class History:
    """Person events as arrays, sorted by person and date, for as-of joins and citations.

    Parameters
    ----------
    person_events : DataFrame
        Person events with ``offence_id``.
    """

    def __init__(self, person_events: pd.DataFrame) -> None:
        pe = person_events.sort_values(["person_id", "offense_date"], kind="stable")
        self.events = pe.reset_index(drop=True)
        self.key, self.persons = person_date_key(self.events)
        self.offence = self.events["offence_id"].to_numpy()
        # A unit is an offence, or a status event on its own (after every offence id).
        self.unit = np.where(
            self.offence >= 0, self.offence, self.offence.max(initial=0) + 1 + np.arange(len(pe))
        )
        self.unit_order = np.argsort(self.unit, kind="stable")
        self.sorted_unit = self.unit[self.unit_order]
        self.date = self.events["offense_date"].to_numpy(dtype="datetime64[ns]")
        self.recorded = self.events["recorded_at"].to_numpy(dtype="datetime64[ns]")
        self.disposition = (self.events["event_type"] == "disposition").to_numpy()
        self.as_of: np.ndarray = np.array([], dtype="datetime64[ns]")
        self.index_offence: np.ndarray = np.array([], dtype=np.int64)

    def known(self, rows: np.ndarray, positions: np.ndarray) -> np.ndarray:
        """Whether each event was known at its row's decision date (../shared/DESIGN.md).

        Known: dated before and recorded by the decision date; or part of the index offence,
        except a disposition not yet recorded.
        """
        as_of = self.as_of[rows]
        recorded = self.recorded[positions] <= as_of
        is_index = self.offence[positions] == self.index_offence[rows]
        return ((self.date[positions] < as_of) & recorded) | (
            is_index & (~self.disposition[positions] | recorded)
        )

    def join(self, index: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """(index row, event position) of every event known at each index row's decision date."""
        self.as_of = index["as_of"].to_numpy(dtype="datetime64[ns]")
        self.index_offence = index["offence_id"].to_numpy()
        lo, hi = person_ranges(
            self.key,
            self.persons,
            index["person_id"],
            np.full(len(index), np.datetime64("1800-01-01", "s")),
            self.as_of,
        )
        rows, positions = expand(lo, hi)
        # The index offence's own events dated on or after the decision date.
        olo = np.searchsorted(self.sorted_unit, self.index_offence, side="left")
        ohi = np.searchsorted(self.sorted_unit, self.index_offence, side="right")
        late_rows, order = expand(olo, ohi)
        late = self.unit_order[order]
        after = self.date[late] >= self.as_of[late_rows]
        rows = np.concatenate([rows, late_rows[after]])
        positions = np.concatenate([positions, late[after]])
        keep = self.known(rows, positions)
        return rows[keep], positions[keep]

    def records(self, hits: pd.DataFrame) -> pd.DataFrame:
        """(row, unit, ...) hits spread onto the unit's records known at the row's date."""
        lo = np.searchsorted(self.sorted_unit, hits["unit"].to_numpy(), side="left")
        hi = np.searchsorted(self.sorted_unit, hits["unit"].to_numpy(), side="right")
        owner, order = expand(lo, hi)
        positions = self.unit_order[order]
        rows = hits["row"].to_numpy()[owner]
        keep = self.known(rows, positions)
        spread = hits.iloc[owner[keep]].reset_index(drop=True)
        spread["record_id"] = self.events["record_id"].to_numpy()[positions[keep]]
        spread["link_probability"] = self.events["link_probability"].to_numpy()[positions[keep]]
        return spread


def compute_features(
    index: pd.DataFrame,
    person_events: pd.DataFrame,
    *,
    persons: pd.DataFrame | None = None,
    count_charges: str = "pending_or_convicted",
    protective_order_days: int = 365,
    probation_days: int = 730,
) -> AsOfFeatures:
    """Compute every feature of :data:`FEATURES` for each index offence, as of its ``as_of``.

    Parameters
    ----------
    index : DataFrame
        ``person_id``, ``offence_id`` (the index offence) and ``as_of``.
    person_events : DataFrame
        Person events with ``offence_id`` (:func:`training.offences.assign_offences`).
    persons : DataFrame, optional
        ``person_id`` with ``dob`` and ``sex`` (for age and the optional sex feature).
    count_charges : {"all", "pending_or_convicted", "convicted"}
        Which charges the tier feature ``ipv_charges`` counts.
    """
    n = len(index)
    history = History(person_events)
    rows, positions = history.join(index)
    events = history.events
    etype = events["event_type"].to_numpy()
    disposition = events["disposition"].to_numpy()
    flags = ["strangulation", "weapon", "injury", "threat_to_kill", "children_present"]
    marks = ["ipv", "is_charge", "is_convicted", "is_dismissed", "is_violation", "is_custody"]
    per_event = {
        "ipv": events["ipv"].to_numpy(dtype=bool),
        **{flag: events[flag].to_numpy(dtype=bool) for flag in flags},
        "is_charge": etype == "charge",
        "is_convicted": disposition == "convicted",
        "is_dismissed": np.isin(disposition, ["dismissed", "acquitted"]),
        "is_violation": etype == "order_violation",
        "is_custody": etype == "custody_start",
    }
    joined = pd.DataFrame(
        {
            "row": rows,
            "offence_id": history.offence[positions],
            "unit": history.unit[positions],
            **{name: values[positions] for name, values in per_event.items()},
        }
    )
    joined["is_index"] = joined["offence_id"].to_numpy() == history.index_offence[rows]
    joined["days_before"] = (history.as_of[rows] - history.date[positions]) / np.timedelta64(1, "D")
    jtype = etype[positions]
    victim = events["victim_person_id"].to_numpy()[positions]

    acts = joined[joined["offence_id"] >= 0]
    flags = ["strangulation", "weapon", "injury", "threat_to_kill", "children_present"]
    marks = ["ipv", "is_charge", "is_convicted", "is_dismissed", "is_violation", "is_custody"]
    offences = (
        acts.groupby(["row", "offence_id"], sort=False)
        .agg(
            {
                **dict.fromkeys(marks + flags, "max"),
                "is_index": "first",
                "days_before": "max",
            }
        )
        .reset_index()
    )
    o = offences
    prior = ~o["is_index"]
    ipv = o["ipv"].astype(bool)
    convicted = o["is_convicted"].astype(bool)
    dismissed = o["is_dismissed"].astype(bool) & ~convicted
    charged = o["is_charge"].astype(bool)
    counted = {
        "all": charged,
        "pending_or_convicted": charged & ~dismissed,
        "convicted": charged & convicted,
    }[count_charges]
    within_1y = o["days_before"] <= 365
    within_3y = o["days_before"] <= 3 * 365
    indicators: dict[str, pd.Series] = {}
    for stem, base in (
        ("prior_ipv_offences", prior & ipv),
        ("prior_ipv_charges", prior & ipv & charged),
        ("prior_ipv_convictions", prior & ipv & convicted),
    ):
        indicators[f"{stem}_1y"] = base & within_1y
        indicators[f"{stem}_3y"] = base & within_3y
        indicators[stem] = base
    violation = prior & o["is_violation"].astype(bool)
    indicators["po_violations_1y"] = violation & within_1y
    indicators["po_violations"] = violation
    for flag in flags:
        indicators[f"index_{flag}"] = o["is_index"] & o[flag].astype(bool)
    for flag in ("strangulation", "weapon", "injury", "threat_to_kill"):
        indicators[f"{flag}_ever"] = prior & o[flag].astype(bool)
    indicators["prior_nonipv_offences"] = prior & ~ipv
    indicators["prior_custody"] = prior & o["is_custody"].astype(bool)
    indicators["ipv_charges"] = ipv & counted
    last_days = o.loc[prior & ipv].groupby("row")["days_before"].min().reindex(range(n)).to_numpy()
    last = o["days_before"].to_numpy() == last_days[o["row"].to_numpy()]
    indicators["days_since_last_ipv"] = prior & ipv & last

    # Columns gather in a dict and become one frame at the end: inserting columns one by one
    # costs more than the arithmetic on small batches.
    X: dict[str, np.ndarray] = {}
    o_rows = o["row"].to_numpy()
    for name, mask in indicators.items():
        X[name] = _count(o_rows, mask, n)
    for name in (f"index_{flag}" for flag in flags):
        X[name] = np.minimum(X[name], 1.0)
    X["days_since_last_ipv"] = np.minimum(np.nan_to_num(last_days, nan=DAYS_CAP), DAYS_CAP)

    # Row-level features of status events and victims.
    status: dict[str, np.ndarray] = {}
    days = joined["days_before"].to_numpy()
    status["protective_order_active"] = (jtype == "protective_order") & (
        days <= protective_order_days
    )
    status["on_probation"] = (jtype == "probation_start") & (days <= probation_days)
    status["probation_violations"] = jtype == "probation_violation"
    status["prior_notifications"] = jtype == "notification"
    for name in ("protective_order_active", "probation_violations", "prior_notifications"):
        X[name] = _count(rows, status[name], n)
    X["on_probation"] = np.minimum(_count(rows, status["on_probation"], n), 1.0)

    dates = pd.Series(history.date[positions])
    custody = joined["is_custody"].to_numpy()
    start = dates[custody].groupby(rows[custody]).max().reindex(range(n))
    released = jtype == "custody_end"
    end = dates[released].groupby(rows[released]).max().reindex(range(n))
    X["in_custody"] = (start.notna() & (end.isna() | (end < start))).astype(float).to_numpy()
    status["in_custody"] = custody & (dates.to_numpy() == start.to_numpy()[rows])

    victim_rows = (
        joined["ipv"].to_numpy() & (joined["offence_id"].to_numpy() >= 0) & pd.notna(victim)
    )
    X["distinct_victims"] = (
        pd.Series(victim[victim_rows])
        .groupby(rows[victim_rows])
        .nunique()
        .reindex(range(n))
        .fillna(0.0)
        .to_numpy()
    )
    status["distinct_victims"] = victim_rows

    X["age"] = np.full(n, np.nan)
    X["sex_male"] = np.full(n, np.nan)
    if persons is not None:
        people = index[["person_id", "as_of"]].merge(
            persons[["person_id", "dob", "sex"]], on="person_id", how="left"
        )
        dob = pd.to_datetime(people["dob"])
        X["age"] = ((people["as_of"] - dob) / pd.Timedelta(days=365.25)).to_numpy()
        X["sex_male"] = np.where(people["sex"].isna(), np.nan, people["sex"] == "male")
    X = pd.DataFrame({feature.name: X[feature.name] for feature in FEATURES})

    # Provenance at unit level: offence indicators, and status events on their own.
    offence_flags = {**indicators, INDEX_OFFENCE: o["is_index"]}
    cited = [n for n in [*X.columns, INDEX_OFFENCE] if n in offence_flags or n in status]
    parts = []
    for part_rows, units, masks in (
        (o_rows, o["offence_id"].to_numpy(), offence_flags),
        (rows, joined["unit"].to_numpy(), status),
    ):
        matrix = np.zeros((len(part_rows), len(cited)), dtype=bool)
        for column, name in enumerate(cited):
            if name in masks:
                matrix[:, column] = np.asarray(masks[name], dtype=bool)
        keep = matrix.any(axis=1)
        frame = pd.DataFrame(matrix[keep], columns=cited)
        frame.insert(0, "unit", units[keep])
        frame.insert(0, "row", part_rows[keep])
        parts.append(frame)
    prov = pd.concat(parts, ignore_index=True)
    return AsOfFeatures(X=X, provenance=prov, history=history)


def persons_table(mentions: pd.DataFrame, crosswalk: pd.DataFrame) -> pd.DataFrame:
    """One row per linked person: the most common date of birth and sex among its mentions.

    Used for age (and sex, only if configured); victims' mentions are included since a person
    may appear in both roles.
    """
    linked = mentions[["record_id", "dob", "sex"]].merge(
        crosswalk[["record_id", "person_id"]], on="record_id"
    )
    dob = (
        linked.dropna(subset=["dob"])
        .groupby(["person_id", "dob"])
        .size()
        .rename("n")
        .reset_index()
        .sort_values(["person_id", "n", "dob"], ascending=[True, False, True])
        .drop_duplicates("person_id")[["person_id", "dob"]]
    )
    known_sex = linked[linked["sex"].isin(["male", "female"])]
    sex = (
        known_sex.groupby(["person_id", "sex"])
        .size()
        .rename("n")
        .reset_index()
        .sort_values(["person_id", "n", "sex"], ascending=[True, False, True])
        .drop_duplicates("person_id")[["person_id", "sex"]]
    )
    people = pd.DataFrame({"person_id": linked["person_id"].unique()})
    return people.merge(dob, on="person_id", how="left").merge(sex, on="person_id", how="left")


def check_no_protected(columns: list[str]) -> None:
    """Refuse any model input named after a protected attribute."""
    bad = sorted(set(columns) & PROTECTED_FIELDS)
    if bad:
        raise IpviError(f"protected attribute(s) {', '.join(bad)} may never be model inputs")
