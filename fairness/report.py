"""The audit report: one self-contained HTML file for readers who are not data scientists.

Plots are drawn with matplotlib and embedded as base64 PNG, so the file can be mailed or
archived on its own. The template is rendered by jinja2 with autoescaping on: every group name,
column name and reason taken from the data is HTML-escaped. :func:`public_view` suppresses
small cells before anything is written for publication.
"""

from __future__ import annotations

import base64
import copy
import io
from pathlib import Path
from typing import Any

import jinja2
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from fairness.metrics import RATE_NAMES  # noqa: E402

TEMPLATES = Path(__file__).with_name("templates")
REPORT_TEMPLATE = "report.html.j2"
SUPPRESSED = "suppressed (fewer than {n} cases)"
_GROUP_FIELDS = ("n", "positives", "negatives", *RATE_NAMES)
_MAX_PLOT_GROUPS = 12
_MIN_PLOTTED = 30  # calibration points of fewer cases are noise on a plot (they stay in tables)


def public_view(payload: dict[str, Any], min_cell: int) -> dict[str, Any]:
    """A copy of an audit with every group, disparity and calibration cell of n < ``min_cell``
    suppressed (values set to null and marked), for publication."""
    out = copy.deepcopy(payload)
    note = SUPPRESSED.format(n=min_cell)
    small: set[tuple[str, str]] = set()
    for decision in out["decisions"].values():
        for attribute, groups in decision["groups"].items():
            for group, entry in groups.items():
                if entry["n"] is not None and entry["n"] < min_cell:
                    small.add((attribute, group))
                    for key in (*_GROUP_FIELDS, "ci"):
                        if key in entry:
                            entry[key] = None
                    entry["suppressed"] = note
    out["groups"] = out["decisions"][out["primary_decision"]]["groups"]
    for by_attribute in out["disparities"].values():
        for attribute, entry in by_attribute.items():
            for group in list(entry["groups"]):
                if (attribute, group) in small or (attribute, entry["reference"]) in small:
                    entry["groups"][group] = {"suppressed": note}
    for groups in out.get("calibration", {}).get("attributes", {}).values():
        for bands in groups.values():
            for band, cell in bands.items():
                if cell["n"] < min_cell:
                    bands[band] = {"suppressed": note}
    for section in ("label_bias", "linkage"):
        for groups in out.get(section, {}).get("attributes", {}).values():
            for group, entry in groups.items():
                if entry["n"] < min_cell:
                    groups[group] = {"suppressed": note}
    mitigation = out.get("mitigation", {})
    for attribute, curves in mitigation.get("curves", {}).items():
        for group in [g for g in curves if (attribute, g) in small]:
            del curves[group]
    optimizer = mitigation.get("threshold_optimizer")
    if optimizer:
        for group in [g for g in optimizer["groups"] if (optimizer["attribute"], g) in small]:
            optimizer["groups"][group] = {"suppressed": note}
    out["worst_gaps"] = [
        row for row in out.get("worst_gaps", []) if (row["attribute"], row["group"]) not in small
    ]
    out["public"] = {"min_cell": min_cell, "suppressed_groups": len(small)}
    return out


def _label(text: str) -> str:
    """Group names drawn by matplotlib: ``$`` would start mathtext."""
    return str(text).replace("$", r"\$")


def _png(figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(figure)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def error_rate_plot(decision: dict[str, Any], attribute: str) -> str | None:
    """False positive and false negative rates by group, with 95 % intervals (base64 PNG)."""
    groups = [
        (g, e)
        for g, e in decision["groups"][attribute].items()
        if e.get("fpr") is not None and e.get("ci")
    ][:_MAX_PLOT_GROUPS]
    if not groups:
        return None
    figure, axes = plt.subplots(1, 2, figsize=(9, 0.45 * len(groups) + 1.4), sharey=True)
    names = [_label(g) for g, _ in groups]
    for ax, metric, colour in zip(axes, ("fpr", "fnr"), ("#b2182b", "#2166ac"), strict=True):
        values = [e[metric] if e[metric] is not None else float("nan") for _, e in groups]
        lows = [e["ci"][metric][0] for _, e in groups]
        highs = [e["ci"][metric][1] for _, e in groups]
        err = [
            [max(v - lo, 0) if lo is not None else 0 for v, lo in zip(values, lows, strict=True)],
            [max(hi - v, 0) if hi is not None else 0 for v, hi in zip(values, highs, strict=True)],
        ]
        faded = [0.35 if not e["sufficient"] else 1.0 for _, e in groups]
        for i, (value, alpha) in enumerate(zip(values, faded, strict=True)):
            ax.barh(i, value, color=colour, alpha=alpha)
        ax.errorbar(values, range(len(groups)), xerr=err, fmt="none", ecolor="black", capsize=3)
        ax.set_title(RATE_NAMES[metric])
        ax.set_xlim(0, 1)
        ax.xaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0))
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(range(len(groups)), names)
    axes[0].invert_yaxis()
    figure.tight_layout()
    return _png(figure)


def calibration_plot(calibration: dict[str, Any], attribute: str) -> str | None:
    """Observed against predicted rate per band, one line per group (base64 PNG)."""
    groups = calibration["attributes"].get(attribute, {})
    if not groups:
        return None
    figure, ax = plt.subplots(figsize=(5.5, 4.5))
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", label="perfect calibration")
    for group, bands in list(groups.items())[:_MAX_PLOT_GROUPS]:
        cells = [
            bands[b]
            for b in calibration["bands"]
            if b in bands and "predicted" in bands[b] and bands[b]["n"] >= _MIN_PLOTTED
        ]
        if not cells:
            continue
        ax.plot(
            [c["predicted"] for c in cells],
            [c["observed"] for c in cells],
            marker="o",
            label=_label(group),
        )
    ax.set_xlabel("predicted likelihood of a recorded re-offence")
    ax.set_ylabel("observed rate")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    ax.set_title(f"Calibration by {_label(attribute)}")
    return _png(figure)


def threshold_plot(curves: dict[str, Any], attribute: str) -> str | None:
    """How false positive and false negative rates move with the threshold, per group."""
    groups = curves.get(attribute)
    if not groups:
        return None
    figure, axes = plt.subplots(1, 2, figsize=(9, 3.6), sharey=True)
    for group, points in list(groups.items())[:_MAX_PLOT_GROUPS]:
        thresholds = [p["threshold"] for p in points]
        axes[0].plot(thresholds, [p["fpr"] for p in points], label=_label(group))
        axes[1].plot(thresholds, [p["fnr"] for p in points], label=_label(group))
    for ax, metric in zip(axes, ("fpr", "fnr"), strict=True):
        ax.set_title(RATE_NAMES[metric])
        ax.set_xlabel("threshold")
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=8)
    return _png(figure)


def environment(templates: Path = TEMPLATES) -> jinja2.Environment:
    """The report templates' jinja2 environment (autoescaping, strict, the number filters):
    shared with the monitoring report (:mod:`monitoring.report`), which keeps its templates in
    its own folder."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates)),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["pct"] = lambda v: "—" if v is None else f"{100 * v:.1f} %"
    env.filters["num"] = lambda v, d=2: "—" if v is None else f"{v:.{d}f}"
    env.filters["interval"] = lambda ci: (
        "—" if not ci or ci[0] is None or ci[1] is None else f"{100 * ci[0]:.1f}-{100 * ci[1]:.1f}"
    )
    env.filters["ratio_interval"] = lambda ci: (
        "—" if not ci or ci[0] is None or ci[1] is None else f"{ci[0]:.2f}-{ci[1]:.2f}"
    )
    return env


def render_html(payload: dict[str, Any]) -> str:
    """The report for one audit payload (already passed through :func:`public_view` if public)."""
    plots: dict[str, Any] = {"error_rates": {}, "calibration": {}, "thresholds": {}}
    primary = payload["decisions"][payload["primary_decision"]]
    for attribute in primary["groups"]:
        plots["error_rates"][attribute] = error_rate_plot(primary, attribute)
        if payload.get("calibration"):
            plots["calibration"][attribute] = calibration_plot(payload["calibration"], attribute)
    mitigation = payload.get("mitigation")
    if mitigation:
        for attribute in mitigation.get("curves", {}):
            plots["thresholds"][attribute] = threshold_plot(mitigation["curves"], attribute)
    template = environment().get_template(REPORT_TEMPLATE)
    return template.render(audit=payload, primary=primary, plots=plots, rate_names=RATE_NAMES)


def write_report(payload: dict[str, Any], path: str | Path) -> Path:
    """Render and write the HTML report; returns its path."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_html(payload), encoding="utf-8")
    return out
