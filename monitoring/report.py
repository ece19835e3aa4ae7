"""The monitoring report: one self-contained HTML file for the oversight board.

Everything comes from the monitor's JSON (:func:`monitoring.run.monitor`), so the page and the
JSON never disagree. Charts are inline SVG, drawn by :mod:`ipvi.charts` or, for the re-offence
curves with their confidence bands, by matplotlib (nothing is fetched);
the template is rendered in the fairness report's jinja2 environment (autoescaping on, the
same number filters), in the plain words of the fairness audit report.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from fairness.report import environment  # noqa: E402
from ipvi import charts  # noqa: E402
from monitoring.counts import KIND_NAMES  # noqa: E402

TEMPLATES = Path(__file__).with_name("templates")
REPORT_TEMPLATE = "monitor.html.j2"
_TOP_FEATURES = 10


def _charts(payload: dict[str, Any]) -> dict[str, str | None]:
    """The report's charts. Periods that are shown but not judged (too few outcomes or scores)
    are left off the lines: their values are mostly chance and would set the scale."""
    periods = payload["periods"]
    labels = [p["period"] for p in periods]
    thresholds = payload["thresholds"]
    training = payload["training"]
    performance = [
        p["performance"] if (p["performance"] or {}).get("judged") else {} for p in periods
    ]
    judged = [p["drift"] if p["drift"]["judged"] else None for p in periods]
    out: dict[str, str | None] = {
        "auc": None,
        "calibration": None,
        "psi": None,
        "band": None,
        "reoffence": reoffence_chart(payload["programme"]["reoffence"]),
        "counts": counts_chart(payload["event_counts"]),
    }
    if any(p.get("auc") is not None for p in performance):
        out["auc"] = charts.period_lines(
            labels,
            {"AUC": [p.get("auc") for p in performance]},
            title="AUC on matured outcomes by period, next to the AUC at training",
            y_label="AUC",
            lines={"at training": training["auc"]} if training["auc"] is not None else None,
        )
        out["calibration"] = charts.period_lines(
            labels,
            {
                "observed rate": [p.get("observed") for p in performance],
                "predicted (mean)": [p.get("predicted") for p in performance],
            },
            title="Observed rate of a recorded re-offence and the mean predicted probability",
            y_label="rate",
        )
    worst = [None if d is None else _worst_psi(d) for d in judged]
    if any(value is not None for value in worst):
        out["psi"] = charts.period_lines(
            labels,
            {
                "largest input PSI": worst,
                "probabilities PSI": [None if d is None else d["score_psi"] for d in judged],
            },
            title="Drift from training by period (population stability index)",
            y_label="PSI",
            lines={
                "warning": thresholds["psi"]["warn"],
                "alarm": thresholds["psi"]["alarm"],
            },
        )
    reliability = payload["reliability"]
    if reliability:
        out["band"] = charts.paired_bars(
            [
                (
                    "band",
                    [
                        (band, cell["predicted"] or 0.0, cell["observed"] or 0.0)
                        for band, cell in reliability.items()
                    ],
                )
            ],
            title="Predicted and observed rate of a recorded re-offence by band",
            names=("predicted", "observed"),
        )
    return out


def _svg(figure) -> str:
    """A matplotlib figure as an inline SVG element (no XML prologue, nothing linked)."""
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", bbox_inches="tight")
    plt.close(figure)
    text = buffer.getvalue()
    return text[text.index("<svg") :]


def reoffence_chart(reoffence: dict[str, Any]) -> str | None:
    """Kaplan-Meier curves of the share with a recorded re-offence, with 95 % bands."""
    groups = reoffence["groups"]
    if not groups:
        return None
    figure, axes = plt.subplots(figsize=(7.5, 3.6))
    for name, curve in groups.items():
        (line,) = axes.step(
            curve["days"], curve["reoffended"], where="post", label=f"{name} (n={curve['n']})"
        )
        axes.fill_between(
            curve["days"],
            curve["low"],
            curve["high"],
            step="post",
            alpha=0.15,
            color=line.get_color(),
        )
    axes.set_xlabel("days since the score")
    axes.set_ylabel("share with a recorded re-offence")
    axes.set_title("Recorded re-offence after the score (Kaplan-Meier, 95 % bands)")
    axes.set_ylim(bottom=0)
    axes.legend(fontsize=8, loc="upper left")
    axes.grid(alpha=0.3)
    return _svg(figure)


def counts_chart(counts: dict[str, Any]) -> str | None:
    """City-wide monthly counts of each kind."""
    if not counts["months"]:
        return None
    return charts.period_lines(
        counts["months"],
        {KIND_NAMES[kind]: list(values) for kind, values in counts["city"].items()},
        title="Recorded events per month, city-wide",
        y_label="events",
    )


def _worst_psi(drift: dict[str, Any]) -> float | None:
    values = [e["psi"] for e in (drift["features"] or {}).values() if e["psi"] is not None]
    return max(values, default=None)


def top_features(drift: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The inputs that moved most in a period (by PSI), most first."""
    features = drift["features"] or {}
    ranked = sorted(features.items(), key=lambda item: -(item[1]["psi"] or 0.0))
    return ranked[:_TOP_FEATURES]


def render_html(payload: dict[str, Any]) -> str:
    """The report of one monitor payload."""
    template = environment(TEMPLATES).get_template(REPORT_TEMPLATE)
    latest = payload["periods"][-1] if payload["periods"] else None
    return template.render(
        m=payload,
        charts=_charts(payload),
        latest=latest,
        latest_features=top_features(latest["drift"]) if latest else [],
    )


def write_report(payload: dict[str, Any], path: str | Path) -> Path:
    """Render and write the HTML report; returns its path."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_html(payload), encoding="utf-8")
    return out
