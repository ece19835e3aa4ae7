"""What ``ipvi monitor`` does: one model version's issued scores, watched end to end.

:func:`monitor` reads the scores the version issued up to the extract date, labels those whose
follow-up has ended (:mod:`monitoring.outcomes`), and returns the monitor's JSON:

- ``status`` (``ok``, ``warn`` or ``alarm``) and ``reasons``: every measure at or past its
  threshold (``monitoring.thresholds``), worst first;
- ``periods``: per month or quarter, the issued scores' drift (inputs, scores, tier and band
  mix, provisional tiers) and, once outcomes have matured, performance next to training's;
- ``groups`` and ``reliability``: performance by protected group and by band on every matured
  outcome, ``training``: the version's figures at training;
- ``reaudit``: the fairness audit re-run on matured outcomes (its ``gate.status`` as in
  ``ipvi audit``), or null with ``reaudit_reason`` when there are too few;
- ``overrides``: staff overrides of tiers by tier and band, the common reasons, the outcomes;
- ``notification_effect``: notified against matched not-notified people on recorded
  re-offence (``estimate``, ``ci_low``, ``ci_high``; ``truth`` stays null unless a simulation
  knows it), or null values with the ``reason``;
- ``programme``: re-offence curves after notification by tier, and the feedback-loop check;
- ``event_counts``: monthly incidents, injuries, strangulation and calls for service,
  city-wide and by zip, and the recording-change alarm scanned over zips;
- ``linkage``: link rate, review backlog, merges and splits per run.
"""

from __future__ import annotations

import json
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
from sqlalchemy import String, cast, select
from sqlalchemy.orm import Session

from fairness.gate import FAIL, INSUFFICIENT
from fairness.groups import UNKNOWN, person_attributes
from fairness.store import mention_attributes, model_version_predictions
from ipvi.config import Config
from ipvi.db import session_scope
from ipvi.errors import IpviError
from ipvi.tables.training import training_runs
from monitoring import drift
from monitoring.counts import (
    KIND_NAMES,
    count_alarms,
    count_kinds,
    monthly_counts,
    read_incidents,
    windows_of,
)
from monitoring.linkage_health import linkage_health
from monitoring.outcomes import (
    feature_frame,
    first_scores,
    join_decisions,
    label_issued,
    no_matured_message,
    read_decisions,
    registry_offences,
    served_version,
)
from monitoring.performance import bootstrap, group_table
from monitoring.programme import feedback_loop, notification_effect, reoffence_curves
from monitoring.reaudit import audit_matured
from monitoring.reaudit import summary as reaudit_summary
from monitoring.report import write_report
from training.registry import frozen_bands

OK, WARN, ALARM = "ok", "warn", "alarm"
_SEVERITY = {OK: 0, WARN: 1, ALARM: 2}
NO_TRAINING_RUN = (
    "model version {version} has no training run in this registry (or one trained before the "
    "training distribution was kept): input drift and the training figures cannot be shown"
)
TOO_FEW_FOR_REAUDIT = (
    "{n} matured outcome(s); the re-audit needs at least monitoring.min_outcomes = {minimum}"
)
NO_WHOLE_WINDOW = (
    "no whole window of {months} month(s) between the first issued score ({first}) and the "
    "last whole month before the extract date"
)


def period_of(dates: pd.Series, period: str) -> pd.Series:
    """Each date's month (``2025-03``) or quarter (``2025Q1``)."""
    return dates.dt.to_period("M" if period == "month" else "Q").astype(str)


class Verdict:
    """Collects measures against their thresholds: the status is the worst level reached."""

    def __init__(self, thresholds) -> None:
        self.thresholds = thresholds
        self.found: list[tuple[int, str]] = []

    def level(self, measure: str, value: float | None) -> str:
        """The level ``value`` of ``measure`` reaches (``ok`` when None)."""
        if value is None or np.isnan(value):
            return OK
        threshold = self.thresholds[measure]
        return ALARM if value >= threshold.alarm else WARN if value >= threshold.warn else OK

    def check(self, measure: str, value: float | None, where: str) -> str:
        """Note ``value`` of ``measure`` at ``where`` when it reaches a level; the level."""
        level = self.level(measure, value)
        if level != OK:
            threshold = self.thresholds[measure]
            limit = threshold.alarm if level == ALARM else threshold.warn
            self.note(level, f"{where}: {measure} {value:.3g} >= {limit:g} ({level})")
        return level

    def check_many(self, measure: str, values: dict[str, float | None], where: str) -> None:
        """One reason per level for many values of a measure (the inputs of a period), naming
        the largest first."""
        for level in (ALARM, WARN):
            reached = {k: v for k, v in values.items() if self.level(measure, v) == level}
            if not reached:
                continue
            limit = getattr(self.thresholds[measure], level)
            ranked = sorted(reached.items(), key=lambda item: -item[1])
            named = ", ".join(f"{name} {value:.3g}" for name, value in ranked[:5])
            more = f" and {len(ranked) - 5} more" if len(ranked) > 5 else ""
            self.note(
                level,
                f"{where}: {len(ranked)} input(s) with {measure} >= {limit:g} ({level}): "
                f"{named}{more}",
            )

    def note(self, level: str, reason: str) -> None:
        self.found.append((_SEVERITY[level], reason))

    @property
    def status(self) -> str:
        worst = max((severity for severity, _ in self.found), default=0)
        return {0: OK, 1: WARN, 2: ALARM}[worst]

    @property
    def reasons(self) -> list[str]:
        return [reason for _, reason in sorted(self.found, key=lambda f: -f[0])]


def _training_run(session: Session, version: str) -> dict | None:
    row = (
        session.execute(
            select(training_runs)
            .where(cast(training_runs.c.model_version, String) == version)
            .order_by(training_runs.c.created_at.desc())
            .limit(1)
        )
        .mappings()
        .first()
    )
    return dict(row) if row else None


def _test_predictions(session: Session, version: str) -> pd.DataFrame:
    """The version's test-period predictions (training's hand-over), or none."""
    try:
        return model_version_predictions(session, version)
    except IpviError:
        return pd.DataFrame(columns=["probability", "tier", "band"])


def _period_drift(
    issued: pd.DataFrame,
    inputs: pd.DataFrame | None,
    reference: dict | None,
    test: pd.DataFrame,
    verdict: Verdict,
    where: str,
    *,
    min_scores: int,
) -> dict:
    """Drift of one period's issued scores against the training run's test period (its inputs
    against the run's reference, its scores, tiers and bands against the test predictions),
    judged only from ``min_scores`` scores."""
    tiers = sorted({*test["tier"].astype(str), *issued["tier"].astype(str)})
    bands = list(dict.fromkeys([*test["band"], *issued["band"]]))
    tier_mix, band_mix = drift.mix(issued["tier"], tiers), drift.mix(issued["band"], bands)
    out = {
        "n_issued": int(len(issued)),
        "score_psi": drift.score_psi(test["probability"], issued["probability"].to_numpy()),
        "tier_mix": tier_mix,
        "band_mix": band_mix,
        "tier_mix_at_training": drift.mix(test["tier"], tiers) if len(test) else None,
        "band_mix_at_training": drift.mix(test["band"], bands) if len(test) else None,
        "provisional_share": float(issued["provisional"].astype(bool).mean()),
        "features": drift.feature_drift(reference, inputs) if reference else None,
        "judged": len(issued) >= min_scores,
    }
    for kind in ("tier", "band"):
        training, live = out[f"{kind}_mix_at_training"], out[f"{kind}_mix"]
        if training is None:
            out[f"{kind}_mix_shift"] = out[f"{kind}_mix_shift_low"] = None
            continue
        out[f"{kind}_mix_shift"] = drift.mix_shift(training, live)
        out[f"{kind}_mix_shift_low"] = drift.mix_shift_low(
            training, live, n_training=len(test), n_live=len(issued)
        )
    if not out["judged"]:
        return out
    for kind in ("tier", "band"):
        if out[f"{kind}_mix_shift"] is None:
            continue
        # Judged by the interval, as performance is: the change of a share that the sampling
        # error of the period's scores and of the test period's leaves certain.
        verdict.check(
            "mix_shift",
            out[f"{kind}_mix_shift_low"],
            f"{where}, {kind} mix (largest change of a share, lower 95 % bound; estimate "
            f"{out[f'{kind}_mix_shift']:.3g})",
        )
    verdict.check("score_psi", out["score_psi"], f"{where}, issued probabilities")
    verdict.check("provisional_share", out["provisional_share"], f"{where}, provisional tiers")
    features = out["features"] or {}
    for measure in ("psi", "ks"):
        verdict.check_many(measure, {k: f[measure] for k, f in features.items()}, where)
    return out


def event_counts(
    engine, config: Config, verdict: Verdict, *, first: pd.Period, extract: pd.Timestamp
) -> dict:
    """Monthly counts of each kind, city-wide and by zip, from the reference months before
    ``first`` (the first month scores were issued) to the last whole month before the extract,
    and the recording-change alarm over the windows from ``first`` on."""
    settings = config.monitoring.counts
    last = extract.to_period("M") - 1
    start = first - settings.reference_months
    months = pd.period_range(start, max(last, start), freq="M")
    with session_scope(engine) as session:
        incidents = read_incidents(session, start=start.to_timestamp(), extract=extract)
    kinds = count_kinds(incidents, settings.call_codes)
    tables = monthly_counts(incidents["offense_date"], incidents["zip"], kinds, months)
    windows = windows_of(first, last, settings.window_months) if last >= first else []
    alarms = count_alarms(
        {kind: tables[kind] for kind in settings.kinds},
        windows,
        settings,
        seed=config.fairness_policy.seed,
    )
    if not windows:
        alarms["reason"] = NO_WHOLE_WINDOW.format(
            months=settings.window_months, first=first, last=last
        )
    for window in alarms["windows"]:
        if window["level"] == OK:
            continue
        limit = settings.alpha_alarm if window["level"] == ALARM else settings.alpha_warn
        verdict.note(
            window["level"],
            f"{window['span_start']} to {window['end']}: recorded "
            f"{KIND_NAMES[window['kind']]} rose {window['rise']:+.0%} in zip(s) "
            f"{', '.join(window['zips'])} against the rest of the city (their share of the "
            f"{settings.reference_months} months before {window['span_start']}; "
            f"family-wise p = {window['family_p_value']:.2g} <= {limit:g}): a change in "
            "recording or in offending there",
        )
    zips = sorted(set().union(*(table.index for table in tables.values())))
    return {
        "months": [str(month) for month in months],
        "kinds": list(tables),
        "city": {kind: table.sum(axis=0).astype(int).tolist() for kind, table in tables.items()},
        "by_zip": {
            zip_code: {
                kind: table.reindex([zip_code], fill_value=0).iloc[0].astype(int).tolist()
                for kind, table in tables.items()
            }
            for zip_code in zips
        },
        "reference_months": settings.reference_months,
        "window_months": settings.window_months,
        "max_span_windows": settings.max_span_windows,
        "alpha_warn": settings.alpha_warn,
        "alpha_alarm": settings.alpha_alarm,
        **alarms,
    }


def override_summary(
    frame: pd.DataFrame, *, attributes: list[str], n_resamples: int, seed: int
) -> dict:
    """Override rates by tier, band and each protected attribute (``by_group``) among scores
    with a staff decision, with person-bootstrap intervals; the common reasons; the outcomes
    of overridden scores that matured."""
    decided = frame[frame["decided"]].reset_index(drop=True)
    out = {
        "n_decided": int(len(decided)),
        "n_notified": int(decided["notified"].sum()),
        "n_called_in": int(decided["called_in"].sum()),
        "n_overridden": int(decided["overridden"].sum()),
        "rate": float(decided["overridden"].mean()) if len(decided) else None,
        "by_tier": {},
        "by_band": {},
        "by_group": {attribute: {} for attribute in attributes},
        "top_reasons": [],
        "outcomes": None,
    }
    if decided.empty:
        return out
    boot = bootstrap(decided, n_resamples=n_resamples, seed=seed)
    overridden = decided["overridden"].to_numpy(dtype=float)
    stats = np.column_stack([overridden, np.ones(len(decided))])
    tables = {"tier": out["by_tier"], "band": out["by_band"], **out["by_group"]}
    for column, table in tables.items():
        codes, labels = pd.factorize(decided[column].astype(str), sort=True)
        totals = boot.totals(stats, codes, len(labels))
        with np.errstate(invalid="ignore", divide="ignore"):
            low, high = boot.interval(totals[:, :, 0] / totals[:, :, 1])
        for k, label in enumerate(labels):
            mask = codes == k
            table[str(label)] = {
                "n": int(mask.sum()),
                "overridden": int(overridden[mask].sum()),
                "rate": float(overridden[mask].mean()),
                "ci": [float(low[k]), float(high[k])],
            }
    reasons = decided.loc[decided["overridden"], "override_reason"].dropna().astype(str)
    # Most common first; ties in alphabetical order.
    counts = reasons.value_counts().sort_index().sort_values(ascending=False, kind="stable")
    out["top_reasons"] = [{"reason": reason, "n": int(n)} for reason, n in counts.head(5).items()]
    matured = decided[decided["overridden"] & decided["observed"]]
    if len(matured):
        out["outcomes"] = {
            "n": int(len(matured)),
            "observed": float(matured["label"].mean()),
            "predicted": float(matured["probability"].mean()),
        }
    return out


def outcome_tables(frame: pd.DataFrame, config: Config, extract: pd.Timestamp) -> dict:
    """Every table of the labelled scores and their staff decisions but the re-audit:
    performance by period, protected group and band (``by_period``, ``groups``,
    ``reliability``), ``overrides``, the ``notification_effect`` and the ``programme``'s
    re-offence curves and feedback-loop check."""
    settings = config.monitoring
    protected = config.fairness_policy.attributes
    bins, minimum = settings.calibration_bins, settings.min_outcomes
    seed = config.fairness_policy.seed
    matured = frame[frame["observed"]].reset_index(drop=True)
    tables: dict = {"by_period": {}, "groups": {}, "reliability": {}}
    if len(matured):
        boot = bootstrap(matured, n_resamples=settings.n_bootstrap, seed=seed)
        tables["by_period"] = group_table(matured, "period", boot, bins=bins, min_outcomes=minimum)
        tables["groups"] = {
            attribute: group_table(matured, attribute, boot, bins=bins, min_outcomes=minimum)
            for attribute in protected
        }
        tables["reliability"] = group_table(matured, "band", boot, bins=bins, min_outcomes=1)
    effect = notification_effect(
        matured, settings.programme, n_resamples=settings.n_bootstrap, seed=seed
    )
    notified_positives = int(matured.loc[matured["notified"], "label"].sum()) if len(matured) else 0
    return {
        **tables,
        "overrides": override_summary(
            frame, attributes=protected, n_resamples=settings.n_bootstrap, seed=seed
        ),
        "notification_effect": effect,
        "programme": {
            "reoffence": reoffence_curves(
                frame,
                extract=extract,
                recording_days=config.training.recording_days,
                horizon=config.training.followup_days,
            ),
            "feedback_loop": feedback_loop(
                effect,
                settings.programme.recording_uplifts,
                positives=notified_positives,
            ),
        },
    }


def _helper() -> ProcessPoolExecutor:
    """One helper process, started fresh for each job (spawned, not forked: a fork copies this
    process's threads' locks; one job each, so a job's memory leaves with its process)."""
    return ProcessPoolExecutor(
        max_workers=1, mp_context=multiprocessing.get_context("spawn"), max_tasks_per_child=1
    )


def monitor(engine, config: Config, *, as_of, model_version: str | None = None) -> dict:
    """The monitor's JSON for ``model_version`` (default: the latest that issued scores), with
    ``as_of`` the extract date: outcomes are known only up to it.

    Two processes share the work: a helper derives the registry's offences while this one
    reads the issued scores, and computes the tables of :func:`outcome_tables` while this one
    re-audits.

    Raises
    ------
    IpviError
        No issued score; a version that never served; issued scores whose inputs cannot be
        rebuilt.
    """
    settings = config.monitoring
    extract = pd.Timestamp(as_of)
    verdict = Verdict(settings.thresholds)
    protected = config.fairness_policy.attributes
    with session_scope(engine) as session:
        version = served_version(session, until=extract, model_version=model_version)
    with _helper() as helper:
        registry = helper.submit(
            registry_offences, engine.url.render_as_string(hide_password=False), config
        )
        with session_scope(engine) as session:
            issued = first_scores(session, until=extract, model_version=version)
            run = _training_run(session, version)
            test = _test_predictions(session, version)
            # The backlog is today's, in linkage's clock (datetime.now(), as its runs record).
            linkage = linkage_health(session, now=datetime.now())
            staff = read_decisions(session, sorted(issued["person_id"].unique().tolist()))
            mentions = mention_attributes(session, protected)
        reference = (run or {}).get("feature_reference")
        if not reference:
            verdict.note(WARN, NO_TRAINING_RUN.format(version=version))
        inputs = feature_frame(issued, list(reference), version) if reference else None
        issued["period"] = period_of(issued["as_of"], settings.period)
        counts = event_counts(
            engine, config, verdict, first=issued["as_of"].min().to_period("M"), extract=extract
        )
        bands = frozen_bands(config.tracking_uri, config.mlflow.model_name, version)

        outcomes = label_issued(issued, registry.result(), config, extract_date=extract)
        del registry  # the future holds the offences: let them go
        notifying = {
            name for name, a in config.serving.decision_actions.items() if a.notifies_offender
        }
        frame = join_decisions(outcomes.frame.reset_index(drop=True), staff, notifying)
        # Protected attributes (the majority over each person's mentions) for the group
        # tables only: the model never saw them.
        frame = frame.join(person_attributes(mentions, protected), on="person_id")
        frame[protected] = frame[protected].fillna(UNKNOWN)
        tables = helper.submit(outcome_tables, frame.drop(columns="features"), config, extract)
        matured = frame[frame["observed"]].reset_index(drop=True)
        reaudit, reaudit_reason = None, None
        if len(matured) >= settings.min_outcomes:
            try:
                audited = audit_matured(matured, mentions, config, version, bands=bands)
                reaudit = reaudit_summary(audited)
            except IpviError as error:
                reaudit_reason = f"the re-audit could not run: {error}"
        else:
            reaudit_reason = TOO_FEW_FOR_REAUDIT.format(
                n=len(matured), minimum=settings.min_outcomes
            )
        tables = tables.result()
    if not len(matured):
        verdict.note(WARN, no_matured_message(outcomes, config, version, extract))
    training = (run or {}).get("summary") or {}
    training_figures = {
        "run_id": (run or {}).get("run_id"),
        "auc": training.get("auc"),
        "auc_ci": training.get("auc_ci"),
        "ece": training.get("ece"),
        "n_train": training.get("n_train"),
        "n_test": training.get("n_test"),
    }
    periods = []
    for period, rows in issued.groupby("period", sort=True):
        where = f"period {period}"
        entry = {
            "period": period,
            "drift": _period_drift(
                rows,
                None if inputs is None else inputs.loc[rows.index],
                reference,
                test,
                verdict,
                where,
                min_scores=settings.min_scores,
            ),
            "performance": tables["by_period"].get(period),
        }
        performance = entry["performance"]
        if performance and performance["judged"]:
            # Judged by the interval, as the fairness gate decides: the smallest drop and the
            # smallest calibration error the period's outcomes leave plausible.
            high = performance["auc_ci"][1]
            if training_figures["auc"] is not None and high is not None:
                performance["auc_drop"] = training_figures["auc"] - performance["auc"]
                verdict.check(
                    "auc_drop",
                    training_figures["auc"] - high,
                    f"{where}, AUC on matured outcomes (its upper 95 % bound against training)",
                )
            verdict.check(
                "ece", performance["ece_ci"][0], f"{where}, calibration (ECE, lower 95 % bound)"
            )
        periods.append(entry)

    if reaudit is not None:
        status = reaudit["gate"]["status"]
        if status == FAIL:
            verdict.note(ALARM, "re-audit on matured outcomes: the fairness gate fails")
        elif status == INSUFFICIENT:
            verdict.note(WARN, "re-audit on matured outcomes: insufficient evidence")
    verdict.check(
        "review_backlog_days", linkage["review_backlog_oldest_days"], "linkage review backlog"
    )
    return {
        "status": verdict.status,
        "reasons": verdict.reasons,
        "as_of": str(extract.date()),
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "model_name": config.mlflow.model_name,
        "model_version": version,
        "period_kind": settings.period,
        "min_outcomes": settings.min_outcomes,
        "min_scores": settings.min_scores,
        "thresholds": {k: v.model_dump() for k, v in settings.thresholds.items()},
        "counts": {
            **outcomes.counts,
            "repeat_scores_of_an_offence": int(issued["times_scored"].sum() - len(issued)),
        },
        "training": training_figures,
        "periods": periods,
        "groups": tables["groups"],
        "reliability": tables["reliability"],
        "reaudit": reaudit,
        "reaudit_reason": reaudit_reason,
        "overrides": tables["overrides"],
        "notification_effect": tables["notification_effect"],
        "programme": tables["programme"],
        "event_counts": counts,
        "linkage": linkage,
    }


def run_monitor(
    engine,
    config: Config,
    *,
    as_of,
    model_version: str | None = None,
    html: str | Path | None = None,
    json_path: str | Path | None = None,
) -> dict:
    """:func:`monitor`, with the HTML report and the JSON written where asked
    (``ipvi monitor``)."""
    payload = monitor(engine, config, as_of=as_of, model_version=model_version)
    if html is not None:
        write_report(payload, html)
    if json_path is not None:
        path = Path(json_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")
    return payload
