"""One training run: data set, time split, models, evaluation, and the predictions hand-over.

:func:`build_dataset` turns events, mentions and a crosswalk into labelled index offences with
as-of features. :func:`split_periods` splits them by time (train, a later validation period for
early stopping, a held-out calibration period, then a test period after a gap so that every
training label window closes before the first test index date). :func:`train` fits the model
and scorecard, scores the test period through the same code path the service uses
(:func:`training.scoring.score_index`, on the bundle as saved), and evaluates model, scorecard,
tiers and the ODARA-style count side by side with person-bootstrap intervals; with the truth it
adds the ceiling and the truth-crosswalk and no-linkage variants.
"""

from __future__ import annotations

import hashlib
import tempfile
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ipvi.columns import Columns
from ipvi.config import SplitConfig, TrainingConfig
from ipvi.errors import IpviError
from training.baselines import tier_score
from training.bundle import ModelBundle
from training.evaluate import PersonBootstrap, auc, auc_ratio_interval, ece, metric_block
from training.features import AsOfFeatures, compute_features, model_features, persons_table
from training.labels import label_index
from training.models import RiskModel
from training.offences import assign_offences, index_offences, person_events
from training.reference import feature_reference
from training.result import TrainResult
from training.scorecard import Scorecard
from training.scoring import score_index
from training.tiers import tier_shares, tiers_only, validate_rules

PERIODS: tuple[str, ...] = ("train", "validation", "calibration", "gap", "test")


@dataclass
class Dataset:
    """Labelled index offences with fully observed windows, and their as-of features.

    The index is a DataFrame (training analyses it with pandas); the person events, persons
    and features are the scoring core's :class:`~ipvi.columns.Columns`.
    """

    index: pd.DataFrame
    person_events: Columns
    persons: Columns
    features: AsOfFeatures
    n_unobserved: int


def build_dataset(
    events: pd.DataFrame,
    mentions: pd.DataFrame,
    crosswalk: pd.DataFrame,
    config: TrainingConfig,
) -> Dataset:
    """Offences, index offences, labels and as-of features from canonical frames."""
    validate_rules(config.tiers)
    events, mentions, crosswalk = map(Columns.from_frame, (events, mentions, crosswalk))
    by_person = assign_offences(
        person_events(events, mentions, crosswalk), window_days=config.offence_window_days
    )
    index = index_offences(by_person, config.decision_lag_days)
    if not len(index):
        raise IpviError("no index offences: no linked person has an IPV offence")
    extract = pd.Timestamp(config.extract_date or by_person["recorded_at"].max())
    labelled = label_index(
        index.to_frame(),
        by_person.to_frame(),
        extract_date=extract,
        followup_days=config.followup_days,
        recording_days=config.recording_days,
    )
    observed = labelled[labelled["observed"]].reset_index(drop=True)
    if observed.empty:
        raise IpviError(
            f"no index offences with full follow-up: all {len(labelled)} windows end after the "
            f"extract date {extract.date()}"
        )
    persons = persons_table(mentions, crosswalk)
    features = compute_features(
        Columns.from_frame(observed),
        by_person,
        persons=persons,
        count_charges=config.tiers.count_charges,
        protective_order_days=config.protective_order_days,
        probation_days=config.probation_days,
    )
    return Dataset(
        index=observed,
        person_events=by_person,
        persons=persons,
        features=features,
        n_unobserved=int((~labelled["observed"]).sum()),
    )


def split_periods(index: pd.DataFrame, split: SplitConfig) -> np.ndarray:
    """The period of each index offence: train, validation, calibration, gap or test.

    Test holds index dates from ``test_start`` (default: the ``test_fraction`` quantile). Earlier
    offences whose label horizon ends after ``test_start`` fall in the gap; the rest are split
    by date into train, validation and calibration, in that order.
    """
    dates = index["index_date"]
    test_start = (
        pd.Timestamp(split.test_start)
        if split.test_start
        else dates.quantile(1 - split.test_fraction)
    )
    period = np.full(len(index), "gap", dtype=object)
    test = (dates >= test_start).to_numpy()
    development = ~test & (index["horizon"] <= test_start).to_numpy()
    period[test] = "test"
    dev_dates = dates[development]
    if len(dev_dates):
        cal_start = dev_dates.quantile(1 - split.calibration_fraction)
        val_start = dev_dates.quantile(1 - split.calibration_fraction - split.validation_fraction)
        d = dates.to_numpy()
        period[development & (d < val_start)] = "train"
        period[development & (d >= val_start) & (d < cal_start)] = "validation"
        period[development & (d >= cal_start)] = "calibration"
    return period


def _hashable(column: pd.Series) -> pd.Series:
    """Dates as integer nanoseconds (writing millions of dates as text takes seconds), the
    rest as text, so the same data read from either database engine hashes the same."""
    if pd.api.types.is_datetime64_any_dtype(column):
        return pd.Series(column.to_numpy(dtype="datetime64[ns]").view("int64"), index=column.index)
    return column.astype(str)


def fingerprint(*frames: pd.DataFrame) -> str:
    """A SHA-256 of the frames' contents (row order independent), identifying the data."""
    digest = hashlib.sha256()
    for frame in frames:
        values = pd.DataFrame({name: _hashable(column) for name, column in frame.items()})
        hashed = pd.util.hash_pandas_object(values, index=False).to_numpy()
        digest.update(np.sort(hashed).tobytes())
    return digest.hexdigest()


def person_list(person_ids) -> list[str]:
    """The distinct persons a version is trained on (kept only as keyed pseudonyms:
    :func:`training.registry.log_training_run`, :func:`training.store.write_run`)."""
    return sorted({str(p) for p in person_ids})


def _fit(
    dataset: Dataset, config: TrainingConfig, *, drop_constant: bool = False
) -> tuple[RiskModel, Scorecard, list[str], np.ndarray]:
    """Fit model and scorecard; ``drop_constant`` (variants only) skips constant features."""
    columns = model_features(config.excluded_features)
    period = split_periods(dataset.index, config.split)
    y = dataset.index["label"].to_numpy()
    parts = {name: period == name for name in ("train", "validation", "calibration", "test")}
    for name, mask in parts.items():
        if not mask.any():
            raise IpviError(f"the {name} period holds no index offences; adjust training.split")
    X = dataset.features.X.to_frame()
    if drop_constant:
        train_X = X.loc[parts["train"], columns]
        columns = [c for c in columns if train_X[c].nunique(dropna=False) > 1]
    X = X[columns]
    model = RiskModel(**config.model.model_dump()).fit(
        X[parts["train"]],
        y[parts["train"]],
        eval_set=(X[parts["validation"]], y[parts["validation"]]),
        calibration_set=(X[parts["calibration"]], y[parts["calibration"]]),
    )
    scorecard = Scorecard(max_items=config.scorecard_items, seed=config.model.seed).fit(
        X[parts["train"]], y[parts["train"]]
    )
    return model, scorecard, columns, period


def _variant_scores(
    main_index: pd.DataFrame,
    main_events: Columns,
    events: pd.DataFrame,
    mentions: pd.DataFrame,
    crosswalk: pd.DataFrame,
    config: TrainingConfig,
) -> tuple[np.ndarray, pd.DataFrame]:
    """Train on another crosswalk; score the main test rows' index events with that model.

    Returns the variant probability for each main test row (NaN where the index event is no
    index under the variant) and the variant's scored rows (tier, prior IPV offences).
    """
    variant = build_dataset(events, mentions, crosswalk, config)
    # A variant learns from what its crosswalk lets it see; some features may never vary.
    model, scorecard, columns, _ = _fit(variant, config, drop_constant=True)
    bundle = ModelBundle.from_config(model, scorecard, columns, config)
    # Follow the index event's record (not the event, which two people may share).
    main_records = pd.DataFrame(
        {
            "index_event_id": main_events["event_id"],
            "person_id": main_events["person_id"],
            "record_id": main_events["record_id"],
        }
    )
    by_record = pd.DataFrame(
        {name: variant.person_events[name] for name in ("record_id", "offence_id")}
    ).drop_duplicates("record_id")
    candidates = index_offences(variant.person_events, config.decision_lag_days).to_frame()
    mapped = (
        main_index[["index_event_id", "person_id"]]
        .reset_index(drop=True)
        .assign(main_row=lambda f: np.arange(len(f)))
        .merge(main_records, on=["index_event_id", "person_id"])
        .merge(by_record, on="record_id")
        .merge(candidates, on="offence_id", suffixes=("", "_variant"))
        .drop_duplicates("main_row")
    )
    rows = mapped[
        ["index_event_id_variant", "person_id_variant", "offence_id", "index_date", "as_of"]
    ]
    rows = rows.rename(
        columns={"index_event_id_variant": "index_event_id", "person_id_variant": "person_id"}
    ).reset_index(drop=True)
    scored = score_index(
        bundle, Columns.from_frame(rows), variant.person_events, variant.persons
    ).to_frame()
    probability = np.full(len(main_index), np.nan)
    probability[mapped["main_row"].to_numpy()] = scored["probability"].to_numpy()
    scored = scored.assign(main_row=mapped["main_row"].to_numpy())
    return probability, scored


def train(
    events: pd.DataFrame,
    mentions: pd.DataFrame,
    crosswalk: pd.DataFrame,
    config: TrainingConfig,
    *,
    truth: tuple[pd.DataFrame, pd.DataFrame] | None = None,
) -> TrainResult:
    """Train, score the test period and evaluate (see the module docstring).

    Parameters
    ----------
    truth : (crosswalk, offences), optional
        From :func:`training.data.load_truth`; evaluation only.
    """
    dataset = build_dataset(events, mentions, crosswalk, config)
    model, scorecard, columns, period = _fit(dataset, config)
    bundle = ModelBundle.from_config(model, scorecard, columns, config)
    # Score through the saved bundle: the exact object the registry (and the service) loads.
    with tempfile.TemporaryDirectory() as folder:
        bundle = ModelBundle.load(bundle.save(folder))
    test = period == "test"
    test_index = dataset.index[test].reset_index(drop=True)
    predictions = score_index(
        bundle, Columns.from_frame(test_index), dataset.person_events, dataset.persons
    ).to_frame()
    y = test_index["label"].to_numpy()
    predictions["label"] = y
    persons = test_index["person_id"].to_numpy()
    boot = PersonBootstrap(persons, n=config.n_bootstrap, seed=config.model.seed)
    prob = predictions["probability"].to_numpy()
    bins = config.calibration_bins
    metrics: dict = {
        "model": metric_block(y, prob, boot, probability=True, bins=bins),
        "scorecard": metric_block(
            y, predictions["scorecard_points"].to_numpy(), boot, probability=False
        ),
        "tiers": metric_block(y, tier_score(predictions["tier"]), boot, probability=False),
        "odara": metric_block(y, predictions["odara_count"].to_numpy(), boot, probability=False),
    }
    disjoint = (
        ~pd.Series(persons).isin(dataset.index.loc[period == "train", "person_id"]).to_numpy()
    )
    metrics["person_disjoint"] = {
        "n": int(disjoint.sum()),
        "auc": auc(y[disjoint], prob[disjoint]) if len(np.unique(y[disjoint])) == 2 else None,
    }
    counts = {
        "n_index": len(dataset.index),
        "n_unobserved": dataset.n_unobserved,
        **{f"n_{name}": int((period == name).sum()) for name in PERIODS},
        "n_persons": int(dataset.index["person_id"].nunique()),
        "label_rate": float(dataset.index["label"].mean()),
        "best_iteration": model.best_iteration_,
        "tier_shares": tier_shares(tiers_only(dataset.features.X, config.tiers)),
    }
    result = TrainResult(
        bundle=bundle,
        predictions=predictions,
        metrics=metrics,
        counts=counts,
        data_fingerprint=fingerprint(
            events[["event_id", "recorded_at", "offense_date", "event_type"]],
            crosswalk[["record_id", "person_id"]],
        ),
        trained_persons=person_list(dataset.index.loc[period != "test", "person_id"]),
        feature_reference=feature_reference(dataset.features.X, columns, test),
    )
    if truth is not None:
        result.truth = _truth_evaluation(
            result, dataset, test_index, events, mentions, truth, config, boot
        )
    return result


def _truth_evaluation(
    result: TrainResult,
    dataset: Dataset,
    test_index: pd.DataFrame,
    events: pd.DataFrame,
    mentions: pd.DataFrame,
    truth: tuple[pd.DataFrame, pd.DataFrame],
    config: TrainingConfig,
    boot: PersonBootstrap,
) -> pd.DataFrame:
    """Ceiling metrics and the truth-crosswalk and no-linkage variants, on the test rows."""
    from training.data import no_linkage_crosswalk

    truth_crosswalk, truth_offences = truth
    # An index offence is a truth offence sharing an event, of the same true person (two
    # people arrested together share events).
    own = (
        pd.DataFrame(
            {name: dataset.person_events[name] for name in ("event_id", "offence_id", "record_id")}
        )
        .merge(truth_crosswalk[["record_id", "person_id"]], on="record_id")
        .rename(columns={"person_id": "true_person_id"})
        .drop_duplicates(["event_id", "offence_id"])
    )
    matched = (
        test_index[["offence_id"]]
        .assign(row=np.arange(len(test_index)))
        .merge(own, on="offence_id")
        .merge(truth_offences, on=["event_id", "true_person_id"])
        .sort_values(["row", "truth_row"])
        .drop_duplicates("row")
    )
    p_recorded = np.full(len(test_index), np.nan)
    true_reoffense = np.full(len(test_index), np.nan)
    p_recorded[matched["row"].to_numpy()] = matched["p_recorded"].to_numpy()
    true_reoffense[matched["row"].to_numpy()] = matched["true_reoffense"].to_numpy()
    truth_prob, truth_scored = _variant_scores(
        test_index, dataset.person_events, events, mentions, truth_crosswalk, config
    )
    try:
        plain_prob, _ = _variant_scores(
            test_index,
            dataset.person_events,
            events,
            mentions,
            no_linkage_crosswalk(mentions),
            config,
        )
        plain_error = None
    except IpviError as error:  # e.g. no agency person ids: no re-offence is ever seen
        plain_prob, plain_error = np.full(len(test_index), np.nan), str(error)
    y = result.predictions["label"].to_numpy()
    prob = result.predictions["probability"].to_numpy()
    has = ~np.isnan(p_recorded)
    m = result.metrics
    if has.sum() and len(np.unique(y[has])) == 2:
        sub = PersonBootstrap(test_index["person_id"].to_numpy()[has], n=boot.n, seed=boot.seed)
        m["ceiling"] = {
            "n": int(has.sum()),
            "auc": auc(y[has], p_recorded[has]),
            "ece": ece(y[has], p_recorded[has], bins=config.calibration_bins),
            "auc_model_same_rows": auc(y[has], prob[has]),
            "auc_ratio_ci": auc_ratio_interval(y[has], prob[has], p_recorded[has], sub),
            "mae_vs_truth": float(np.mean(np.abs(prob[has] - p_recorded[has]))),
        }
    for name, variant in (("truth_crosswalk", truth_prob), ("no_linkage", plain_prob)):
        ok = ~np.isnan(variant)
        both = len(np.unique(y[ok])) == 2
        m[name] = {
            "n": int(ok.sum()),
            "auc": auc(y[ok], variant[ok]) if both else None,
            "auc_model_same_rows": auc(y[ok], prob[ok]) if both else None,
        }
    m["no_linkage"]["error"] = plain_error
    truth_tier = np.full(len(test_index), None, dtype=object)
    truth_prior = np.full(len(test_index), np.nan)
    rows = truth_scored["main_row"].to_numpy()
    truth_tier[rows] = truth_scored["tier"].to_numpy()
    truth_prior[rows] = truth_scored["prior_ipv_offences"].to_numpy()
    return pd.DataFrame(
        {
            "index_event_id": test_index["index_event_id"].to_numpy(),
            "person_id": test_index["person_id"].to_numpy(),
            "p_recorded": p_recorded,
            "true_reoffense": true_reoffense,
            "truth_tier": truth_tier,
            "truth_prior_ipv_offences": truth_prior,
        }
    )
