"""The promotion gate: pass, fail or insufficient evidence, with reasons a person can read.

The gate reads an audit's disparities and calibration cells and the policy:

- **fail** when a gated comparison with enough evidence on both sides is flagged (by default:
  the false positive rate ratio at punitive cut-points, the false negative rate ratio at the
  outreach band, calibration within a group and band beyond the tolerance);
- **insufficient_evidence** when no comparison fails but a group the policy names in
  ``required_groups`` is missing or below the minimum size;
- **pass** otherwise.

Selection-rate and base-rate gaps are never gated: when groups re-offend (or are recorded
re-offending) at different rates, a calibrated model must select them at different rates, so
parity there would require treating equal risk unequally. Age band is reported, not gated,
because age is a model input with a real association with re-offending.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fairness.metrics import RATE_NAMES
from ipvi.config import FairnessPolicy

PASS, FAIL, INSUFFICIENT = "pass", "fail", "insufficient_evidence"
STATUSES = (PASS, FAIL, INSUFFICIENT)
NOT_GATED_REASON = (
    "selection-rate and base-rate disparities are reported, not gated: with different base "
    "rates a calibrated model selects groups at different rates"
)


@dataclass
class GateResult:
    """A verdict and the reasons for it."""

    status: str
    reasons: list[str] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)
    judged: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "reasons": self.reasons,
            "failures": self.failures,
            "judged": self.judged,
        }


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f} %"


def _disparity_failures(audit: dict[str, Any]) -> tuple[list[dict[str, Any]], int]:
    failures, checked = [], 0
    for decision_id, by_attribute in audit["disparities"].items():
        decision = audit["decisions"][decision_id]
        for attribute, entry in by_attribute.items():
            for group, metrics in entry["groups"].items():
                for metric, value in metrics.items():
                    if not (value["gated"] and value["sufficient"]):
                        continue
                    checked += 1
                    if value["flagged"]:
                        own = decision["groups"][attribute][group][metric]
                        ref = decision["groups"][attribute][entry["reference"]][metric]
                        failures.append(
                            {
                                "kind": "disparity",
                                "decision": decision_id,
                                "attribute": attribute,
                                "group": group,
                                "reference": entry["reference"],
                                "metric": metric,
                                "ratio": value["ratio"],
                                "ratio_ci": value["ratio_ci"],
                                "reason": (
                                    f"{RATE_NAMES[metric].capitalize()} at "
                                    f"{decision['description']}: "
                                    f"{attribute} = {group} {_pct(own)} against "
                                    f"{entry['reference']} {_pct(ref)} (ratio "
                                    f"{value['ratio']:.2f}, 95 % interval "
                                    f"{value['ratio_ci'][0]:.2f}-{value['ratio_ci'][1]:.2f})"
                                ),
                            }
                        )
    return failures, checked


def _calibration_failures(audit: dict[str, Any]) -> tuple[list[dict[str, Any]], int]:
    calibration = audit.get("calibration")
    if not calibration:
        return [], 0
    failures, checked = [], 0
    for attribute, groups in calibration["attributes"].items():
        for group, bands in groups.items():
            for band, cell in bands.items():
                if not (cell["gated"] and cell["sufficient"]):
                    continue
                checked += 1
                if cell["flagged"]:
                    failures.append(
                        {
                            "kind": "calibration",
                            "attribute": attribute,
                            "group": group,
                            "band": band,
                            "gap": cell["gap"],
                            "gap_ci": cell["gap_ci"],
                            "reason": (
                                f"calibration in band {band}: {attribute} = {group} re-offended "
                                f"(recorded) at {_pct(cell['observed'])} against "
                                f"{_pct(cell['predicted'])} predicted, beyond the "
                                f"{_pct(calibration['tolerance'])} tolerance"
                            ),
                        }
                    )
    return failures, checked


def _missing_evidence(audit: dict[str, Any], policy: FairnessPolicy) -> list[str]:
    reasons = []
    gated = [d for d in audit["decisions"].values() if d["gated"]]
    for attribute, required in policy.required_groups.items():
        for group in required:
            for decision in gated:
                entry = decision["groups"].get(attribute, {}).get(group)
                if entry is None:
                    reasons.append(f"{attribute} = {group} is named by the policy but has no rows")
                    break
                if not entry["sufficient"]:
                    reasons.append(
                        f"{attribute} = {group} is named by the policy but has only "
                        f"{entry['positives']} positives and {entry['negatives']} negatives "
                        f"(minimum {policy.min_positives} and {policy.min_negatives})"
                    )
                    break
    return reasons


def evaluate(audit: dict[str, Any], policy: FairnessPolicy) -> GateResult:
    """The gate's verdict on an audit payload (see :func:`fairness.audit.run_audit`)."""
    disparity, n_disparity = _disparity_failures(audit)
    calibration, n_calibration = _calibration_failures(audit)
    failures = disparity + calibration
    missing = _missing_evidence(audit, policy)
    judged = n_disparity + n_calibration
    if failures:
        return GateResult(FAIL, [f["reason"] for f in failures] + missing, failures, judged)
    if missing:
        return GateResult(INSUFFICIENT, missing, judged=judged)
    if judged == 0:
        # The policy decides which groups must be judged (required_groups); without it an
        # audit with only small groups passes, and says loudly that it judged nothing.
        return GateResult(
            PASS,
            [
                "nothing was judged: every group is below the minimum size; name the groups "
                "that must be judged in the policy's required_groups to block promotion instead",
                NOT_GATED_REASON,
            ],
        )
    return GateResult(
        PASS,
        [
            f"no gated disparity or calibration gap outside the policy's tolerance "
            f"({n_disparity} gated comparison(s) and {n_calibration} calibration cell(s) "
            f"judged, decided by the {policy.decide_by})",
            NOT_GATED_REASON,
        ],
        judged=judged,
    )
