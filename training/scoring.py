"""Scoring: the one code path from canonical histories to a score, for training and serving.

``ipvi train`` writes ``evaluation_predictions`` with :func:`score_index`; the service and
``ipvi score`` call the same function through :class:`RiskScorer`, so a score computed by the
service for an evaluation row equals the stored prediction (parity to 1e-9).

API used by the service
-----------------------
>>> scorer = RiskScorer.from_registry(tracking_uri, "ipvi-risk", "champion")  # doctest: +SKIP
>>> result = scorer.score(events, mentions, crosswalk, person_id="P1",
...                       as_of="2024-05-01")                                 # doctest: +SKIP
>>> result = scorer.score_from_db(engine, person_id="P1", as_of="2024-05-01")  # doctest: +SKIP

``events``/``mentions`` are canonical frames (:mod:`ipvi.schema`) holding at least the
person's events and the mentions of those events (victims included); ``crosswalk`` maps their
record ids to person ids with link probabilities. ``as_of`` is the decision date: only events
with ``offense_date < as_of`` and ``recorded_at <= as_of`` count. The index offence is the
person's latest IPV offence known at ``as_of``; pass ``index_event_id`` to name it (as the
evaluation does, with ``as_of`` = index date + decision lag). The result is a dict: ``person_id``,
``as_of``, ``index_event_id``, ``probability``, ``band``, ``band_use``, ``tier``,
``provisional``, ``identity_review_required``, ``possible_dual_arrest``, ``tier_reasons``,
``reason_codes``, ``lethality_flags``, ``scorecard_points``, ``odara_count``,
``prior_ipv_offences``, ``age``, ``model_name``, ``model_version``, ``mlflow_run_id``,
``linkage_run_id``. :meth:`RiskScorer.score_many` scores many persons at once (a DataFrame).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ipvi.columns import Table, factorize, get_indexer, isin, like
from ipvi.errors import IpviError
from training.bands import assign_bands
from training.baselines import odara_count
from training.bundle import ModelBundle
from training.features import AsOfFeatures, compute_features, persons_table
from training.lethality import lethality_flags
from training.offences import assign_offences, index_offences, person_events
from training.reasons import reason_codes
from training.tiers import assign_tiers, possible_dual_arrests

# The tier columns of every answer, in order.
TIER_KEYS = (
    "tier",
    "provisional",
    "identity_review_required",
    "possible_dual_arrest",
    "tier_reasons",
)


def _features_and_tiers(
    bundle: ModelBundle, index: Table, events_by_person: Table, persons: Table | None
) -> tuple[AsOfFeatures, Table]:
    """As-of features and rule tiers of index offences: the part shared by scores and tiers."""
    settings = bundle.settings
    tier_config = bundle.tier_config
    features = compute_features(
        index,
        events_by_person,
        persons=persons,
        count_charges=tier_config.count_charges,
        protective_order_days=settings["protective_order_days"],
        probation_days=settings["probation_days"],
    )
    dual = possible_dual_arrests(index, events_by_person, days=tier_config.dual_arrest_days)
    return features, assign_tiers(features, tier_config, dual_arrest=dual)


def _tier_columns(
    bundle: ModelBundle, index: Table, features: AsOfFeatures, tiers: Table
) -> dict[str, np.ndarray | list]:
    """The columns every answer carries: the index, the tier with its reasons, the markers."""
    return {
        **{key: np.asarray(index[key]) for key in ("index_event_id", "person_id", "as_of")},
        **{key: np.asarray(tiers[key]) for key in TIER_KEYS},
        "lethality_flags": lethality_flags(features.X, bundle.lethality),
    }


def tier_index(
    bundle: ModelBundle, index: Table, events_by_person: Table, persons: Table | None
) -> Table:
    """Rule tiers (with reasons) and lethality markers of index offences, without the model.

    Uses the tier rules, charge counting and markers frozen in ``bundle``; the columns and
    values are those of :func:`score_index` (which calls the same code).

    Parameters
    ----------
    bundle, index, events_by_person, persons
        As for :func:`score_index`.

    Returns
    -------
    DataFrame or Columns (as ``index``)
        One row per index row, in order: ``index_event_id``, ``person_id``, ``as_of``,
        ``tier``, ``provisional``, ``identity_review_required``, ``possible_dual_arrest``,
        ``tier_reasons``, ``lethality_flags``.
    """
    features, tiers = _features_and_tiers(bundle, index, events_by_person, persons)
    return like(index, _tier_columns(bundle, index, features, tiers))


def score_index(
    bundle: ModelBundle,
    index: Table,
    events_by_person: Table,
    persons: Table | None,
    stamp: dict | None = None,
) -> Table:
    """Score index offences: probability, band, tier with reasons, reason codes, markers.

    Parameters
    ----------
    bundle : ModelBundle
    index : DataFrame or Columns
        ``index_event_id``, ``person_id``, ``offence_id``, ``index_date``, ``as_of``.
    events_by_person : DataFrame or Columns
        Person events with offence ids (:func:`training.offences.assign_offences`).
    persons : DataFrame or Columns, optional
        ``person_id``, ``dob``, ``sex`` (:func:`training.features.persons_table`).
    stamp : dict, optional
        Further columns (one value per row), such as the model version, added in the
        same table.

    Returns
    -------
    DataFrame or Columns (as ``index``)
        One row per index row, in order.
    """
    settings = bundle.settings
    features, tiers = _features_and_tiers(bundle, index, events_by_person, persons)
    X = features.X
    # The model picks its own inputs (bundle.features) from the full feature table, once.
    matrix = bundle.model.feature_matrix(X)
    probability = bundle.model.predict_proba(matrix)
    band, band_use = assign_bands(probability, settings["bands"])
    columns = _tier_columns(bundle, index, features, tiers)
    return like(
        index,
        {
            **{key: columns[key] for key in ("index_event_id", "person_id", "as_of")},
            "probability": probability,
            "band": band,
            "band_use": band_use,
            **{key: columns[key] for key in TIER_KEYS},
            "reason_codes": reason_codes(
                bundle.model, features, k=settings["reason_codes"], matrix=matrix
            ),
            "lethality_flags": columns["lethality_flags"],
            "scorecard_points": bundle.scorecard.score(X),
            "odara_count": odara_count(X),
            "prior_ipv_offences": np.asarray(X["prior_ipv_offences"], dtype=int),
            "age": np.asarray(X["age"]),
            **(stamp or {}),
        },
    )


class RiskScorer:
    """A registered model version, ready to score canonical histories.

    Parameters
    ----------
    bundle : ModelBundle
    model_name, model_version, mlflow_run_id : str
        Stamped on every score.
    """

    def __init__(
        self,
        bundle: ModelBundle,
        *,
        model_name: str,
        model_version: str,
        mlflow_run_id: str | None = None,
    ) -> None:
        self.bundle = bundle
        self.model_name = model_name
        self.model_version = model_version
        self.mlflow_run_id = mlflow_run_id

    @classmethod
    def from_registry(cls, tracking_uri: str, name: str, alias_or_version: str) -> RiskScorer:
        """Load a registered version by alias (``champion``, ``challenger``) or number."""
        from training.registry import load_bundle

        bundle, info = load_bundle(tracking_uri, name, alias_or_version)
        return cls(
            bundle,
            model_name=name,
            model_version=info["version"],
            mlflow_run_id=info["run_id"],
        )

    def _index(
        self,
        events: Table,
        mentions: Table,
        crosswalk: Table,
        *,
        as_of,
        person_ids: list[str] | None,
        index_event_ids: list[str] | None,
    ) -> tuple[Table, Table]:
        """(index offences to answer for, person events with offence ids)."""
        lag = self.bundle.settings["decision_lag_days"]
        by_person = assign_offences(
            person_events(events, mentions, crosswalk),
            window_days=self.bundle.settings["offence_window_days"],
        )
        if index_event_ids is not None:
            index = index_offences(by_person, lag)
            named = isin(index["index_event_id"], index_event_ids)
            index = index.take(np.flatnonzero(named)).reset_index(drop=True)
            stamp = pd.Timestamp(as_of).as_unit("ns").to_datetime64()
            index = index.assign(as_of=np.full(len(index), stamp, dtype="datetime64[ns]"))
        else:
            index = index_offences(by_person, lag, latest_known_at=as_of)
        if person_ids is not None:
            wanted = isin(index["person_id"], person_ids)
            if not wanted.all():
                index = index.take(np.flatnonzero(wanted)).reset_index(drop=True)
        return index, by_person

    def score_many(
        self,
        events: Table,
        mentions: Table,
        crosswalk: Table,
        *,
        as_of,
        person_ids: list[str] | None = None,
        index_event_ids: list[str] | None = None,
    ) -> Table:
        """Score persons as of ``as_of``: by their latest IPV offence, or by named index events.

        Persons with no IPV offence known at ``as_of`` are left out. Answers in the kind of
        table it is given (DataFrames, or :class:`~ipvi.columns.Columns`).
        """
        index, by_person = self._index(
            events,
            mentions,
            crosswalk,
            as_of=as_of,
            person_ids=person_ids,
            index_event_ids=index_event_ids,
        )
        if index.empty:
            return like(events, {})
        n = len(index)
        return score_index(
            self.bundle,
            index,
            by_person,
            persons_table(mentions, crosswalk),
            stamp={
                "model_name": np.full(n, self.model_name, dtype=object),
                "model_version": np.full(n, self.model_version, dtype=object),
                "mlflow_run_id": np.full(n, self.mlflow_run_id, dtype=object),
                "linkage_run_id": _linkage_run(crosswalk, index["person_id"]),
            },
        )

    def tier_many(
        self,
        events: Table,
        mentions: Table,
        crosswalk: Table,
        *,
        as_of,
        person_ids: list[str] | None = None,
    ) -> Table:
        """Rule tiers of persons' latest IPV offence as of ``as_of``, without the model.

        The same selection and columns as :meth:`score_many` minus the model's (probability,
        band, reason codes, ...); persons with no IPV offence known at ``as_of`` are left out.
        """
        index, by_person = self._index(
            events, mentions, crosswalk, as_of=as_of, person_ids=person_ids, index_event_ids=None
        )
        if index.empty:
            return like(events, {})
        tiered = tier_index(self.bundle, index, by_person, persons_table(mentions, crosswalk))
        return tiered.assign(linkage_run_id=_linkage_run(crosswalk, tiered["person_id"]))

    def score(
        self,
        events: pd.DataFrame,
        mentions: pd.DataFrame,
        crosswalk: pd.DataFrame,
        *,
        person_id: str,
        as_of,
        index_event_id: str | None = None,
    ) -> dict:
        """Score one person as of ``as_of`` (see the module docstring)."""
        scored = self.score_many(
            events,
            mentions,
            crosswalk,
            as_of=as_of,
            person_ids=[person_id],
            index_event_ids=None if index_event_id is None else [index_event_id],
        )
        if scored.empty:
            raise IpviError(f"person {person_id} has no IPV offence known as of {as_of}")
        return scored.iloc[0].to_dict()

    def score_from_db(self, engine, *, person_id: str, as_of, index_event_id=None) -> dict:
        """Score one person straight from the registry tables (events, mentions, crosswalk)."""
        from training.data import load_history

        events, mentions, crosswalk = load_history(engine, person_ids=[person_id])
        return self.score(
            events,
            mentions,
            crosswalk,
            person_id=person_id,
            as_of=as_of,
            index_event_id=index_event_id,
        )


def _linkage_run(crosswalk: Table, persons) -> np.ndarray:
    """The latest linkage run id among each person's crosswalk rows (None when unknown)."""
    out = np.full(len(persons), None, dtype=object)
    if "linkage_run_id" not in crosswalk.columns:
        return out
    runs = np.asarray(crosswalk["linkage_run_id"], dtype=object)
    known = np.flatnonzero(pd.notna(runs))
    if not len(known):
        return out
    # Run ids coded in sorted order, so the latest (largest) id is the largest code.
    codes, labels = factorize(runs[known], sort=True)
    owner, people = factorize(np.asarray(crosswalk["person_id"], dtype=object)[known])
    latest = np.full(len(people), -1)
    np.maximum.at(latest, owner, codes)
    at = get_indexer(people, np.asarray(persons, dtype=object))
    found = at >= 0
    out[found] = np.asarray(labels, dtype=object)[latest[at[found]]]
    return out
