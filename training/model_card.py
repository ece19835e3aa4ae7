"""The model card: what the model is for, what it must not be used for, data, metrics, caveats.

Written as Markdown for every training run and logged with it, so anyone reading a model
version in the registry reads its limits next to its numbers.
"""

from __future__ import annotations

import pandas as pd

OUT_OF_SCOPE: tuple[str, ...] = (
    "bail or pretrial detention decisions",
    "sentencing",
    "child custody decisions",
    "eligibility for victim services",
)


def _fmt(value) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.3f}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_fmt(v) for v in value) + "]"
    return str(value)


def model_card(
    *,
    model_name: str,
    run_id: str,
    summary: dict,
    counts: dict,
    feature_definitions: pd.DataFrame,
    bands: list[dict],
    scorecard: pd.DataFrame,
    data_fingerprint: str,
) -> str:
    """The model card of one run as Markdown."""
    lines = [
        f"# Model card: {model_name} (run {run_id})",
        "",
        "## Intended use",
        "Decision support for IPVI coordinators, next to the rule tiers: the estimated "
        "probability that a known IPV offender has a new IPV offence *recorded* by an agency "
        "within 12 months at liberty after an offence, to help prioritise outreach and "
        "victim contact. A person always keeps their rule tier; staff decide.",
        "",
        "## Out of scope",
        *[f"- {use}" for use in OUT_OF_SCOPE],
        '- any use that reads a lower band as "safe": lethality markers are shown with '
        "every score whatever its band",
        "",
        "## Data",
        f"- index offences with full follow-up: {counts['n_index']} "
        f"({counts['n_unobserved']} excluded: window not yet observed)",
        f"- train / validation / calibration / gap / test: {counts['n_train']} / "
        f"{counts['n_validation']} / {counts['n_calibration']} / {counts['n_gap']} / "
        f"{counts['n_test']} (split by time; every training label window closes before the "
        "first test index date)",
        f"- persons: {counts['n_persons']}; label rate {counts['label_rate']:.3f}",
        f"- data fingerprint: `{data_fingerprint}`",
        "- never used as inputs: race, ethnicity; sex, zip code and neighbourhood are excluded "
        "by default as proxies",
        "",
        "## Metrics (test period, 95 % person-bootstrap intervals)",
        "| measure | value |",
        "|---|---|",
        *[f"| {key} | {_fmt(value)} |" for key, value in summary.items()],
        "",
        "## Bands (fixed probability cut-points)",
        "| band | from probability | use |",
        "|---|---|---|",
        *[f"| {b['name']} | {b['lower']:.2f} | {b['use']} |" for b in bands],
        "",
        "## Features",
        "| name | meaning | direction |",
        "|---|---|---|",
        *[
            f"| {row.name} | {row.wording} | {row.direction:+d} |"
            for row in feature_definitions.itertuples()
        ],
        "",
        "## Scorecard (for scoring by hand)",
        "| item | points |",
        "|---|---|",
        *[f"| {row.item} | {row.points} |" for row in scorecard.itertuples()],
        "",
        "## Caveats",
        "- The label is a *recorded* re-offence: it measures policing and reporting as well as "
        "behaviour, and recording differs by neighbourhood, so by group. See the fairness "
        "audit before use.",
        "- Feedback loop: notified offenders (tiers A/B) are watched more closely, so their "
        "re-offences are recorded more often, which raises the scores of people like them; "
        "and notification itself aims to lower re-offending, so the model partly learns the "
        "effect of the intervention.",
        "- Linkage errors merge or split people's histories; tiers resting on uncertain links "
        "are marked provisional until reviewed.",
        "- Trained on past data; recalibrate when practice, laws or recording change.",
    ]
    return "\n".join(lines) + "\n"
