"""Run a fairness audit: group metrics with intervals, disparities, calibration, the gate.

The input is an :class:`AuditInput`: one row per scored case with its label, person, protected
groups and one boolean column per decision being audited (for a model: "at this band or
above"). :func:`run_audit` computes point estimates with :class:`~fairness.metrics.GroupMetrics`
and intervals from one shared :class:`~fairness.bootstrap.PersonBootstrap`, applies the policy,
and returns an :class:`AuditResult` whose :meth:`~AuditResult.to_dict` is the audit JSON.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from fairness import gate as gate_module
from fairness import mitigation
from fairness.bootstrap import PersonBootstrap
from fairness.disparities import DisparityRule, outside_tolerance
from fairness.groups import add_intersections
from fairness.metrics import (
    COUNT_COEFFICIENTS,
    COUNT_STATS,
    DECISION_METRICS,
    DECISION_RATES,
    GROUP_METRICS,
    RATE_COUNTS,
    GroupMetrics,
    auc,
    base_rate,
    count,
    count_terms,
    mean_predicted,
    weighted_rows,
)
from ipvi.config import FairnessPolicy
from ipvi.errors import IpviError

# Disparities reported for every decision; which of them gate depends on the decision's use.
DISPARITY_METRICS: tuple[str, ...] = ("fpr", "fnr", "selection_rate", "base_rate", "ppv", "npv")
GATED_BY_USE: dict[str, tuple[str, ...]] = {
    "punitive": ("fpr",),
    "outreach": ("fnr",),
    "both": ("fpr", "fnr"),
    "none": (),
}
_STATS = tuple(COUNT_STATS)
_NAMED_SMALL_GROUPS = 6  # a warning names at most this many small groups; the tables show all
CALIBRATION_METRICS = {"n": count, "observed": base_rate, "predicted": mean_predicted}


@dataclass(frozen=True)
class Decision:
    """One decision being audited: a boolean column of the audit frame.

    Parameters
    ----------
    id : str
        Short stable key, e.g. ``model:highest``.
    instrument : str
        ``model``, ``scorecard``, ``tiers`` or ``decision`` (a generic file).
    use : str
        ``punitive``, ``outreach``, ``both`` or ``none``: which error rate matters.
    description : str
        Plain-language wording for the report.
    column : str
        The boolean column holding the decision.
    gated : bool
        Whether the policy's gate applies to this decision.
    """

    id: str
    instrument: str
    use: str
    description: str
    column: str
    gated: bool


@dataclass
class AuditInput:
    """Everything an audit needs, independent of where the rows came from.

    ``frame`` holds ``label`` (0/1), ``person`` and one column per attribute and decision;
    ``scores`` maps an instrument to its score column (for AUC); ``calibration`` names the
    probability and band columns when the scores are probabilities.
    """

    frame: pd.DataFrame
    attributes: list[str]
    report_only: list[str]
    decisions: list[Decision]
    scores: dict[str, str] = field(default_factory=dict)
    calibration: tuple[str, str] | None = None
    excluded: dict[str, int] = field(default_factory=dict)
    source: dict[str, Any] = field(default_factory=dict)
    references: dict[str, str] = field(default_factory=dict)


@dataclass
class AuditResult:
    """The outcome of an audit; :meth:`to_dict` is its JSON."""

    audit_id: str
    payload: dict[str, Any]

    @property
    def status(self) -> str | None:
        gate = self.payload.get("gate")
        return gate["status"] if gate else None

    @property
    def reasons(self) -> list[str]:
        gate = self.payload.get("gate")
        return list(gate["reasons"]) if gate else []

    def to_dict(self) -> dict[str, Any]:
        """The audit as plain JSON-able data (NaN as null)."""
        return _jsonable(self.payload)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def data_fingerprint(frame: pd.DataFrame) -> str:
    """SHA-256 of a frame's content, independent of row order."""
    ordered = frame.reindex(sorted(frame.columns), axis=1)
    hashed = np.sort(pd.util.hash_pandas_object(ordered, index=False).to_numpy())
    digest = hashlib.sha256(hashed.tobytes())
    digest.update(",".join(ordered.columns).encode())
    return digest.hexdigest()


@dataclass
class _Partition:
    """One attribute (or intersection) and its groups' global cell codes."""

    name: str
    gated: bool
    labels: list[str]
    offset: int
    codes: np.ndarray


def _partitions(inp: AuditInput, policy: FairnessPolicy) -> list[_Partition]:
    frame = inp.frame
    names = list(inp.attributes)
    if policy.intersections and len(inp.attributes) >= 2:
        names += add_intersections(frame, inp.attributes)
    gated_names = set(names)
    names += [a for a in inp.report_only if a not in gated_names]
    partitions, offset = [], 0
    for name in names:
        codes, labels = pd.factorize(frame[name].astype(str), sort=True)
        partitions.append(
            _Partition(name, name in gated_names, [str(v) for v in labels], offset, codes)
        )
        offset += len(labels)
    return partitions


def _reference(partition: _Partition, sizes: pd.Series, inp: AuditInput, policy) -> str:
    explicit = inp.references.get(partition.name) or policy.reference.get(partition.name)
    if explicit is not None:
        if explicit not in partition.labels:
            raise IpviError(
                f"reference group {explicit!r} is not a group of attribute {partition.name!r}"
            )
        return explicit
    ordered = sizes.sort_index().sort_values(ascending=False, kind="stable")
    return str(ordered.index[0])


def _count_totals(
    boot: PersonBootstrap,
    y: np.ndarray,
    decisions: list[np.ndarray],
    cells: np.ndarray,
    n_cells: int,
) -> np.ndarray:
    """Resampled totals of every count statistic (:data:`_STATS`) of every decision in every
    cell: (resamples, cells, statistics x decisions), a decision's statistics in one block.

    Only the terms are resampled (``1`` and ``y`` once, ``d`` and ``y * d`` per decision);
    each statistic's totals are their whole-number combination (:data:`COUNT_COEFFICIENTS`),
    equal to resampling the statistic itself.
    """
    per_decision = [count_terms(y, d) for d in decisions]
    terms = np.column_stack([per_decision[0][:, :2], *(t[:, 2:] for t in per_decision)])
    totals = boot.totals(terms, cells, n_cells)
    coefficients = np.array([COUNT_COEFFICIENTS[s] for s in _STATS], dtype=float).T
    shared = totals[:, :, :2]
    return np.concatenate(
        [
            np.concatenate([shared, totals[:, :, 2 + 2 * k : 4 + 2 * k]], axis=2) @ coefficients
            for k in range(len(decisions))
        ],
        axis=2,
    )


def _rates(totals: np.ndarray, block: int) -> dict[str, np.ndarray]:
    """Rates from resampled count totals (resamples x cells) for one decision's block."""
    out = {}
    for name, (num, den) in RATE_COUNTS.items():
        n = totals[:, :, block + _STATS.index(num)]
        d = totals[:, :, block + _STATS.index(den)]
        with np.errstate(invalid="ignore", divide="ignore"):
            out[name] = np.where(d > 0, n / np.where(d > 0, d, 1), np.nan)
    return out


def _aucs(y_true, y_pred) -> np.ndarray:
    """The AUC of each column of ``y_pred`` (one score per instrument; fairlearn hands a
    single column over as a vector)."""
    scores = np.asarray(y_pred).reshape(len(y_true), -1)
    return np.array([auc(y_true, scores[:, k]) for k in range(scores.shape[1])])


def _group_aucs(
    y: np.ndarray, frame: pd.DataFrame, scores: dict[str, str], groups: pd.Series
) -> dict[str, pd.Series]:
    """Each instrument's AUC per group, from one GroupMetrics over every score column:
    fairlearn converts a group's rows element by element once per frame and metric."""
    if not scores:
        return {}
    columns = frame[list(scores.values())].to_numpy(dtype=float)
    by_group = GroupMetrics({"auc": _aucs}, y, columns, sensitive_features=groups).by_group["auc"]
    return {
        instrument: by_group.map(lambda values, k=k: values[k]).astype(float)
        for k, instrument in enumerate(scores)
    }


def _ci(boot: PersonBootstrap, values: np.ndarray) -> list[float]:
    lo, hi = boot.interval(values)
    return [float(lo), float(hi)]


def run_audit(
    inp: AuditInput,
    policy: FairnessPolicy,
    *,
    policy_digest: str,
    changes: dict[str, Any] | None = None,
    gated: bool = True,
) -> AuditResult:
    """Audit every decision of ``inp`` by every attribute under ``policy``.

    Parameters
    ----------
    inp : AuditInput
        The rows and what to audit.
    policy : FairnessPolicy
        Thresholds, tolerance, evidence rule and gate.
    policy_digest : str
        The policy hash stamped on the audit.
    changes : dict, optional
        Policy values that differ from the shipped defaults.
    gated : bool
        Whether to give a verdict (a generic audit is gated only with a policy file).

    Returns
    -------
    AuditResult
    """
    frame = inp.frame
    y = frame["label"].to_numpy(dtype=int)
    partitions = _partitions(inp, policy)
    n_cells = partitions[-1].offset + len(partitions[-1].labels)
    cells = np.column_stack([p.codes + p.offset for p in partitions])
    boot = PersonBootstrap(policy.n_bootstrap, seed=policy.seed, confidence=policy.confidence)
    boot.fit(frame["person"].to_numpy())

    totals = _count_totals(
        boot, y, [frame[d.column].to_numpy(dtype=int) for d in inp.decisions], cells, n_cells
    )
    boot_auc = {
        instrument: boot.auc(y, frame[column].to_numpy(dtype=float), cells, n_cells)
        for instrument, column in inp.scores.items()
    }
    rule = DisparityRule(
        low=policy.tolerance.low,
        high=policy.tolerance.high,
        min_difference=policy.min_difference,
        decide_by=policy.decide_by,
    )

    groups_out: dict[str, dict[str, Any]] = {d.id: {} for d in inp.decisions}
    disparities_out: dict[str, dict[str, Any]] = {d.id: {} for d in inp.decisions}
    references: dict[str, str] = {}
    for part in partitions:
        groups = pd.Series(np.asarray(part.labels, dtype=object)[part.codes], name=part.name)
        aucs = _group_aucs(y, frame, inp.scores, groups)
        # Identical rows collapse into one weighted row, per decision; the decision is a
        # control feature, so one GroupMetrics computes every decision's rates.
        rows = pd.concat(
            [
                weighted_rows(
                    pd.DataFrame(
                        {
                            part.name: groups,
                            "label": frame["label"],
                            "selected": frame[d.column].astype(int),
                            "decision": d.id,
                        }
                    ),
                    [part.name, "decision", "label", "selected"],
                )
                for d in inp.decisions
            ],
            ignore_index=True,
        )
        first = rows["decision"] == inp.decisions[0].id
        sizes = GroupMetrics(
            GROUP_METRICS,
            rows.loc[first, "label"].to_numpy(dtype=int),
            rows.loc[first, "label"].to_numpy(dtype=int),
            sensitive_features=rows.loc[first, part.name],
            sample_weight=rows.loc[first, "weight"],
        )
        reference = _reference(part, sizes.by_group["n"], inp, policy)
        references[part.name] = reference
        rates = GroupMetrics(
            DECISION_RATES,
            rows["label"].to_numpy(dtype=int),
            rows["selected"].to_numpy(dtype=int),
            sensitive_features=rows[part.name],
            control_features=rows["decision"],
            sample_weight=rows["weight"],
        )
        ratio_all = rates.ratio(reference=reference)
        difference_all = rates.difference(reference=reference)
        sizes_ratio = sizes.ratio(reference=reference)
        sizes_difference = sizes.difference(reference=reference)
        for k, decision in enumerate(inp.decisions):
            rates_boot = _rates(totals, k * len(_STATS))
            table = sizes.by_group.join(rates.by_group.xs(decision.id, level="decision"))
            if decision.instrument in aucs:
                table = table.assign(auc=aucs[decision.instrument])
            entries = _group_entries(
                part, table, rates_boot, boot_auc.get(decision.instrument), boot, policy
            )
            groups_out[decision.id][part.name] = entries
            ratio = sizes_ratio.join(ratio_all.xs(decision.id, level="decision"))
            difference = sizes_difference.join(difference_all.xs(decision.id, level="decision"))
            disparities_out[decision.id][part.name] = _disparity_entries(
                part, ratio, difference, reference, rates_boot, boot, rule, decision, entries
            )
    decisions_out = {
        d.id: {
            "instrument": d.instrument,
            "use": d.use,
            "description": d.description,
            "gated": d.gated,
            "overall": _overall(y, frame[d.column].to_numpy(dtype=int)),
            "groups": groups_out[d.id],
        }
        for d in inp.decisions
    }

    primary = _primary(inp.decisions)
    payload: dict[str, Any] = {
        "audit_id": uuid.uuid4().hex,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "source": inp.source,
        "n_rows": int(len(frame)),
        "n_persons": int(boot.n_persons_),
        "excluded_rows": {"total": int(sum(inp.excluded.values())), "by_reason": inp.excluded},
        "policy": {
            "hash": policy_digest,
            "changed_from_defaults": changes or {},
            "values": policy.model_dump(mode="json"),
        },
        "primary_decision": primary.id,
        "decisions": decisions_out,
        "groups": decisions_out[primary.id]["groups"],
        "references": references,
        "disparities": disparities_out,
        "warnings": _warnings(decisions_out[primary.id]["groups"], policy),
    }
    if inp.calibration is not None:
        payload["calibration"] = _calibration(inp, partitions, y, boot, policy)
    payload["worst_gaps"] = _worst_gaps(disparities_out)
    primary_score = inp.scores.get(primary.instrument)
    if primary_score is not None:
        payload["mitigation"] = mitigation.analyse(
            y,
            frame[primary_score].to_numpy(dtype=float),
            frame[primary.column].to_numpy(dtype=int),
            attributes=frame[inp.attributes],
            use=primary.use,
            seed=policy.seed,
        )
    if gated:
        payload["gate"] = gate_module.evaluate(payload, policy).to_dict()
    return AuditResult(audit_id=payload["audit_id"], payload=payload)


def _primary(decisions: list[Decision]) -> Decision:
    for decision in decisions:
        if decision.gated and decision.use in ("punitive", "both"):
            return decision
    return decisions[0]


def _overall(y: np.ndarray, d: np.ndarray) -> dict[str, float]:
    out = {"n": int(y.size), "positives": int(y.sum())}
    for name, function in DECISION_METRICS.items():
        if name in RATE_COUNTS:
            out[name] = function(y, d)
    return out


def _sufficient(positives: float, negatives: float, policy: FairnessPolicy) -> bool:
    return bool(positives >= policy.min_positives and negatives >= policy.min_negatives)


def _group_entries(part, table, rates_boot, auc_boot, boot, policy) -> dict[str, Any]:
    out = {}
    for label, row in table.sort_values("n", ascending=False, kind="stable").iterrows():
        cell = part.offset + part.labels.index(str(label))
        entry: dict[str, Any] = {
            "n": int(row["n"]),
            "positives": int(row["positives"]),
            "negatives": int(row["negatives"]),
        }
        ci = {}
        for name in RATE_COUNTS:
            entry[name] = float(row[name])
            ci[name] = _ci(boot, rates_boot[name][:, cell])
        if auc_boot is not None:
            entry["auc"] = float(row["auc"])
            ci["auc"] = _ci(boot, auc_boot[:, cell])
        entry["ci"] = ci
        entry["sufficient"] = _sufficient(row["positives"], row["negatives"], policy)
        if not entry["sufficient"]:
            entry["warning"] = (
                f"fewer than {policy.min_positives} positives or {policy.min_negatives} "
                "negatives: reported, not judged"
            )
        out[str(label)] = entry
    return out


def _disparity_entries(
    part, ratio, difference, reference, rates_boot, boot, rule, decision, groups
):
    ref_cell = part.offset + part.labels.index(reference)
    gated_metrics = GATED_BY_USE[decision.use] if (decision.gated and part.gated) else ()
    out: dict[str, Any] = {"reference": reference, "groups": {}}
    for label in groups:
        if label == reference:
            continue
        cell = part.offset + part.labels.index(label)
        evidence = groups[label]["sufficient"] and groups[reference]["sufficient"]
        entries = {}
        for metric in DISPARITY_METRICS:
            g, r = rates_boot[metric][:, cell], rates_boot[metric][:, ref_cell]
            with np.errstate(invalid="ignore", divide="ignore"):
                ratio_ci = _ci(boot, g / r)
            difference_ci = _ci(boot, g - r)
            point_ratio = float(ratio.loc[label, metric])
            point_diff = float(difference.loc[label, metric])
            entries[metric] = {
                "ratio": point_ratio,
                "ratio_ci": ratio_ci,
                "difference": point_diff,
                "difference_ci": difference_ci,
                "flagged": rule.flagged(point_ratio, point_diff, ratio_ci, difference_ci),
                "gated": metric in gated_metrics,
                "sufficient": bool(evidence),
            }
        out["groups"][label] = entries
    return out


def _calibration(inp, partitions, y, boot, policy) -> dict[str, Any]:
    """Observed against predicted within each group and band."""
    score_column, band_column = inp.calibration
    frame = inp.frame
    bands = frame[band_column].astype(str).to_numpy()
    band_codes, raw_labels = pd.factorize(bands)
    band_index = {str(label): i for i, label in enumerate(raw_labels)}
    n_bands = len(raw_labels)
    score = frame[score_column].to_numpy(dtype=float)
    mean_score = pd.Series(score).groupby(band_codes).mean().sort_values()
    n_total = (partitions[-1].offset + len(partitions[-1].labels)) * n_bands
    cal_cells = np.column_stack([(p.codes + p.offset) * n_bands + band_codes for p in partitions])
    totals = boot.totals(np.column_stack([np.ones_like(y), y, score]), cal_cells, n_total)
    with np.errstate(invalid="ignore", divide="ignore"):
        gap_boot = (totals[:, :, 1] - totals[:, :, 2]) / totals[:, :, 0]
    tolerance = policy.gate.calibration_tolerance
    out: dict[str, Any] = {
        "tolerance": tolerance,
        "bands": [str(raw_labels[i]) for i in mean_score.index],  # lowest band first
        "attributes": {},
    }
    for part in partitions:
        # (group, band, label) rows collapse into one weighted row carrying their mean score.
        rows = weighted_rows(
            pd.DataFrame(
                {
                    part.name: np.asarray(part.labels, dtype=object)[part.codes],
                    "band": bands,
                    "label": y,
                    "score": score,
                }
            ),
            [part.name, "band", "label"],
            mean_of="score",
        )
        table = GroupMetrics(
            CALIBRATION_METRICS,
            rows["label"].to_numpy(dtype=int),
            rows["score"].to_numpy(dtype=float),
            sensitive_features=rows[part.name],
            control_features=rows["band"],
            sample_weight=rows["weight"],
        ).by_group
        groups: dict[str, Any] = {}
        for (band, label), row in table.dropna(subset=["n"]).iterrows():
            cell = (part.offset + part.labels.index(str(label))) * n_bands + band_index[str(band)]
            gap = float(row["observed"] - row["predicted"])
            ci = _ci(boot, gap_boot[:, cell])
            groups.setdefault(str(label), {})[str(band)] = {
                "n": int(row["n"]),
                "observed": float(row["observed"]),
                "predicted": float(row["predicted"]),
                "gap": gap,
                "gap_ci": ci,
                "flagged": outside_tolerance(
                    gap, ci, tolerance=tolerance, decide_by=policy.decide_by
                ),
                "sufficient": _sufficient(
                    round(row["observed"] * row["n"]),
                    round((1 - row["observed"]) * row["n"]),
                    policy,
                ),
                "gated": bool(part.gated and policy.gate.calibration),
            }
        out["attributes"][part.name] = groups
    return out


def _worst_gaps(disparities: dict[str, Any], limit: int = 10) -> list[dict[str, Any]]:
    """The largest absolute differences among groups with enough evidence."""
    rows = []
    for decision, by_attribute in disparities.items():
        for attribute, entry in by_attribute.items():
            for group, metrics in entry["groups"].items():
                for metric, value in metrics.items():
                    if not value["sufficient"] or not np.isfinite(value["difference"]):
                        continue
                    rows.append(
                        {
                            "decision": decision,
                            "attribute": attribute,
                            "group": group,
                            "reference": entry["reference"],
                            "metric": metric,
                            "difference": value["difference"],
                            "ratio": value["ratio"],
                            "flagged": value["flagged"],
                            "gated": value["gated"],
                        }
                    )
    rows.sort(key=lambda r: -abs(r["difference"]))
    return rows[:limit]


def _warnings(groups: dict[str, Any], policy: FairnessPolicy) -> list[str]:
    out = []
    for attribute, entries in groups.items():
        small = [g for g, e in entries.items() if not e["sufficient"]]
        if small:
            named = ", ".join(small[:_NAMED_SMALL_GROUPS])
            more = len(small) - _NAMED_SMALL_GROUPS
            out.append(
                f"{attribute}: {len(small)} group(s) below the minimum size "
                f"({policy.min_positives} positives and {policy.min_negatives} negatives) are "
                f"reported but not judged: {named}" + (f" and {more} more" if more > 0 else "")
            )
    return out
