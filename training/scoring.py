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

``events``/``mentions`` are canonical tables (:class:`~ipvi.columns.Columns` with the columns of
:mod:`ipvi.schema`) holding at least the person's events and the mentions of those events
(victims included); ``crosswalk`` maps their record ids to person ids with link probabilities.
``as_of`` is the decision date: only events with ``offense_date < as_of`` and
``recorded_at <= as_of`` count. The index offence is the
person's latest IPV offence known at ``as_of``; pass ``index_event_id`` to name it (as the
evaluation does, with ``as_of`` = index date + decision lag). The result is a dict: ``person_id``,
``as_of``, ``index_event_id``, ``probability``, ``band``, ``band_use``, ``tier``,
``provisional``, ``identity_review_required``, ``possible_dual_arrest``, ``tier_reasons``,
``reason_codes``, ``lethality_flags``, ``scorecard_points``, ``odara_count``,
``prior_ipv_offences``, ``age``, ``model_inputs``, ``model_name``, ``model_version``,
``mlflow_run_id``, ``linkage_run_id``. :meth:`RiskScorer.score_many` scores many persons at
once (a table).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ipvi.arrays import factorize, is_in, object_array, positions_in
from ipvi.columns import Columns
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
    bundle: ModelBundle, index: Columns, events_by_person: Columns, persons: Columns | None
) -> tuple[AsOfFeatures, Columns]:
    """As-of features and rule tiers of index offences: the part shared by scores and tiers."""
    settings = bundle.settings
    tier_config = settings.tiers
    features = compute_features(
        index,
        events_by_person,
        persons=persons,
        count_charges=tier_config.count_charges,
        protective_order_days=settings.protective_order_days,
        probation_days=settings.probation_days,
    )
    dual = possible_dual_arrests(index, events_by_person, days=tier_config.dual_arrest_days)
    return features, assign_tiers(features, tier_config, dual_arrest=dual)


def _tier_columns(
    bundle: ModelBundle, index: Columns, features: AsOfFeatures, tiers: Columns
) -> dict[str, np.ndarray | list]:
    """The columns every answer carries: the index, the tier with its reasons, the markers."""
    return {
        **{key: np.asarray(index[key]) for key in ("index_event_id", "person_id", "as_of")},
        **{key: np.asarray(tiers[key]) for key in TIER_KEYS},
        "lethality_flags": lethality_flags(features.X, bundle.settings.lethality),
    }


def tier_index(
    bundle: ModelBundle, index: Columns, events_by_person: Columns, persons: Columns | None
) -> Columns:
    """Rule tiers (with reasons) and lethality markers of index offences, without the model.

    Uses the tier rules, charge counting and markers frozen in ``bundle``; the columns and
    values are those of :func:`score_index` (which calls the same code).

    Parameters
    ----------
    bundle, index, events_by_person, persons
        As for :func:`score_index`.

    Returns
    -------
    Columns
        One row per index row, in order: ``index_event_id``, ``person_id``, ``as_of``,
        ``tier``, ``provisional``, ``identity_review_required``, ``possible_dual_arrest``,
        ``tier_reasons``, ``lethality_flags``.
    """
    features, tiers = _features_and_tiers(bundle, index, events_by_person, persons)
    return Columns(_tier_columns(bundle, index, features, tiers))


def score_index(
    bundle: ModelBundle,
    index: Columns,
    events_by_person: Columns,
    persons: Columns | None,
    stamp: dict | None = None,
) -> Columns:
    """Score index offences: probability, band, tier with reasons, reason codes, markers.

    Parameters
    ----------
    bundle : ModelBundle
    index : Columns
        ``index_event_id``, ``person_id``, ``offence_id``, ``index_date``, ``as_of``.
    events_by_person : Columns
        Person events with offence ids (:func:`training.offences.assign_offences`).
    persons : Columns, optional
        ``person_id``, ``dob``, ``sex`` (:func:`training.features.persons_table`).
    stamp : dict, optional
        Further columns (one value per row), such as the model version, added in the
        same table.

    Returns
    -------
    Columns
        One row per index row, in order; ``model_inputs`` holds each row's input vector as
        the model saw it (``bundle.features`` in order), which issued scores keep.
    """
    settings = bundle.settings
    features, tiers = _features_and_tiers(bundle, index, events_by_person, persons)
    X = features.X
    # The model picks its own inputs (bundle.features) from the full feature table, once.
    matrix = bundle.model.feature_matrix(X)
    probability = bundle.model.predict_proba(matrix)
    band, band_use = assign_bands(probability, settings.bands)
    columns = _tier_columns(bundle, index, features, tiers)
    return Columns(
        {
            **{key: columns[key] for key in ("index_event_id", "person_id", "as_of")},
            "probability": probability,
            "band": band,
            "band_use": band_use,
            **{key: columns[key] for key in TIER_KEYS},
            "reason_codes": reason_codes(
                bundle.model, features, k=settings.reason_codes, matrix=matrix
            ),
            "lethality_flags": columns["lethality_flags"],
            "scorecard_points": bundle.scorecard.score(X),
            "odara_count": odara_count(X),
            "prior_ipv_offences": np.asarray(X["prior_ipv_offences"], dtype=int),
            "age": np.asarray(X["age"]),
            "model_inputs": object_array(matrix),
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
        events: Columns,
        mentions: Columns,
        crosswalk: Columns,
        *,
        as_of,
        person_ids: list[str] | None,
        index_event_ids: list[str] | None,
    ) -> tuple[Columns, Columns]:
        """(index offences to answer for, person events with offence ids)."""
        lag = self.bundle.settings.decision_lag_days
        by_person = assign_offences(
            person_events(events, mentions, crosswalk),
            window_days=self.bundle.settings.offence_window_days,
        )
        if index_event_ids is not None:
            index = index_offences(by_person, lag)
            index = index.take(is_in(index["index_event_id"], index_event_ids))
            stamp = pd.Timestamp(as_of).as_unit("ns").to_datetime64()
            index = index.assign(as_of=np.full(len(index), stamp, dtype="datetime64[ns]"))
        else:
            index = index_offences(by_person, lag, latest_known_at=as_of)
        if person_ids is not None:
            index = index.take(is_in(index["person_id"], person_ids))
        return index, by_person

    def score_many(
        self,
        events: Columns,
        mentions: Columns,
        crosswalk: Columns,
        *,
        as_of,
        person_ids: list[str] | None = None,
        index_event_ids: list[str] | None = None,
    ) -> Columns:
        """Score persons as of ``as_of``: by their latest IPV offence, or by named index events.

        Persons with no IPV offence known at ``as_of`` are left out.
        """
        index, by_person = self._index(
            events,
            mentions,
            crosswalk,
            as_of=as_of,
            person_ids=person_ids,
            index_event_ids=index_event_ids,
        )
        if not len(index):
            return Columns()
        return self.score_offences(
            index,
            by_person,
            persons_table(mentions, crosswalk),
            linkage_run_id=_linkage_run(crosswalk, index["person_id"]),
        )

    def score_offences(
        self,
        index: Columns,
        events_by_person: Columns,
        persons: Columns | None,
        *,
        linkage_run_id: np.ndarray | None = None,
    ) -> Columns:
        """Score index offences each as of its own ``as_of`` (:func:`score_index`), stamped
        with this version (and the linkage run of each person, when known)."""
        n = len(index)
        return score_index(
            self.bundle,
            index,
            events_by_person,
            persons,
            stamp={
                "model_name": np.full(n, self.model_name, dtype=object),
                "model_version": np.full(n, self.model_version, dtype=object),
                "mlflow_run_id": np.full(n, self.mlflow_run_id, dtype=object),
                "linkage_run_id": np.full(n, None, dtype=object)
                if linkage_run_id is None
                else linkage_run_id,
            },
        )

    def tier_many(
        self,
        events: Columns,
        mentions: Columns,
        crosswalk: Columns,
        *,
        as_of,
        person_ids: list[str] | None = None,
    ) -> Columns:
        """Rule tiers of persons' latest IPV offence as of ``as_of``, without the model.

        The same selection and columns as :meth:`score_many` minus the model's (probability,
        band, reason codes, ...); persons with no IPV offence known at ``as_of`` are left out.
        """
        index, by_person = self._index(
            events, mentions, crosswalk, as_of=as_of, person_ids=person_ids, index_event_ids=None
        )
        if not len(index):
            return Columns()
        tiered = tier_index(self.bundle, index, by_person, persons_table(mentions, crosswalk))
        return tiered.assign(linkage_run_id=_linkage_run(crosswalk, tiered["person_id"]))

    def score(
        self,
        events: Columns,
        mentions: Columns,
        crosswalk: Columns,
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
        if not len(scored):
            raise IpviError(f"person {person_id} has no IPV offence known as of {as_of}")
        return {name: values[0] for name, values in scored.lists().items()}

    def score_from_db(self, engine, *, person_id: str, as_of, index_event_id=None) -> dict:
        """Score one person straight from the registry tables (events, mentions, crosswalk)."""
        from training.data import person_history

        with engine.connect() as connection:
            history = person_history(connection, [person_id])
        return self.score(
            *history,
            person_id=person_id,
            as_of=as_of,
            index_event_id=index_event_id,
        )


def _linkage_run(crosswalk: Columns, persons) -> np.ndarray:
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
    owner, people = pd.factorize(np.asarray(crosswalk["person_id"], dtype=object)[known])
    latest = np.full(len(people), -1)
    np.maximum.at(latest, owner, codes)
    at = positions_in(persons, people)
    found = at >= 0
    out[found] = np.asarray(labels, dtype=object)[latest[at[found]]]
    return out
