"""CLI commands: ``ipvi generate`` (synthetic multi-agency extracts with ground truth, or a whole
generated deployment with ``--deployment``) and ``ipvi simulate`` (a deployment, monitored)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import typer

from ipvi.commands.context import config_path, emit_json, get_config, info

DRIFT_HELP = (
    "Inject a drift from the start of the monitored period (the last 3 years): "
    "recording_shift (offences recorded 30 % more often in the neighbourhoods holding about a "
    "fifth of the offenders), new_feed (a new police feed: identifiers and incident flags "
    "blank far more often), offence_mix (strangulation x 2, weapons x 1.8, threats x 1.5, "
    "injuries x 1.4). Default: none."
)
OVERRIDE_HELP = "Share of staff decisions that override the rule tier (each with a reason)."


def register(app: typer.Typer) -> None:
    """Add ``generate`` to the ``ipvi`` app."""

    @app.command("generate")
    def generate(
        persons: int = typer.Option(
            3000,
            "--persons",
            help="Number of IPV offenders; their victims and relatives come on top.",
        ),
        years: int = typer.Option(
            None,
            "--years",
            help="Length of the extract period, in years (default 10; 20 with --deployment, "
            "whose last 3 are monitored).",
        ),
        seed: int = typer.Option(
            7,
            "--seed",
            help="Random seed: the same seed gives identical files (the defaults rewrite the "
            "shipped sample).",
        ),
        out: Path = typer.Option(
            Path("data_samples"),
            "--out",
            help="Folder for the five extracts; truth goes to OUT/truth/.",
        ),
        label_bias: float = typer.Option(
            0.5,
            "--label-bias",
            help="Recording bias: logit shift of the chance an offence is recorded per standard "
            "deviation of neighbourhood police presence (0 = none, 0.5 = moderate).",
        ),
        segregation: float = typer.Option(
            0.6,
            "--segregation",
            help="How strongly neighbourhoods sort by race and ethnicity (0 = every neighbourhood "
            "mirrors the city, 1 = fully segregated).",
        ),
        extract_date: str = typer.Option(
            "2026-01-01",
            "--extract-date",
            help="Date the extracts were pulled (YYYY-MM-DD); nothing recorded later is in them.",
        ),
        as_json: bool = typer.Option(False, "--json", help="Print the summary as one JSON line."),
        deployment: bool = typer.Option(
            False,
            "--deployment",
            help="Also run the deployment in OUT (its own registry, MLflow store and "
            "configuration): ingest, link, train on the years before the last 3, promote "
            "through the fairness gate, issue the champion's scores at every decision date of "
            "the last 3 years (source api) and record simulated staff decisions. The truth "
            "(OUT/data/truth/) keeps the exact effect of notification.",
        ),
        drift: str = typer.Option(None, "--drift", help=DRIFT_HELP + " Needs --deployment."),
        override_rate: float = typer.Option(0.1, "--override-rate", help=OVERRIDE_HELP),
    ) -> None:
        """Generate synthetic police, jail, court, protective-order and probation extracts with
        ground truth (true persons, exact re-offence probabilities) in OUT/truth/; with
        --deployment, a whole generated deployment in OUT."""
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        from ipvi.errors import IpviError
        from synth import SynthParams
        from synth import generate as run

        try:
            date = dt.date.fromisoformat(extract_date)
        except ValueError:
            raise IpviError(
                f"generate: --extract-date must be YYYY-MM-DD, got {extract_date!r}"
            ) from None
        if deployment:
            _deploy(
                out,
                persons=persons,
                seed=seed,
                drift=drift,
                override_rate=override_rate,
                as_json=as_json,
                **({} if years is None else {"years": years}),
                extract_date=date,
                label_bias=label_bias,
                segregation=segregation,
            )
            return
        if drift is not None:
            raise IpviError("generate: --drift needs --deployment (a drift acts on a deployment)")
        params = SynthParams(
            persons=persons,
            years=10 if years is None else years,
            seed=seed,
            extract_date=date,
            label_bias=label_bias,
            segregation=segregation,
        )
        columns = (TextColumn("{task.description:<30}"), BarColumn(), TimeElapsedColumn())
        with Progress(*columns, transient=True, disable=as_json) as bar:
            task = bar.add_task("generating", total=1.0)

            def progress(stage: str, fraction: float) -> None:
                bar.update(task, description=stage, completed=fraction)

            summary = run(params, out, config=get_config(), progress=progress)
        if as_json:
            emit_json(summary)
            return
        info(
            f"wrote {summary['mentions']:,} mentions ({summary['persons']:,} offenders, "
            f"{summary['victims']:,} victims) to {out} in {summary['wall_seconds']:.1f} s; "
            f"truth in {out / 'truth'}"
        )
        info(
            f"index offences: {summary['index_offences']:,} "
            f"({summary['index_offences_per_offender']:.2f} per offender; "
            f"{summary['index_offences_observed']:,} with a fully observed window)"
        )
        info(
            f"12-month re-offence rate: recorded {summary['recorded_reoffense_rate_12m']:.3f}, "
            f"true {summary['true_reoffense_rate_12m']:.3f}"
        )
        info(f"AUC ceiling (p_recorded vs recorded label): {summary['auc_ceiling']:.3f}")
        info(
            "exact (first, last, dob) matching: pairwise recall "
            f"{summary['exact_match_recall']:.3f}, precision {summary['exact_match_precision']:.3f}"
        )
        info(f"malformed rows injected: {summary['malformed_rows']} (see truth/malformed_rows.csv)")


def _deploy(out: Path, *, as_json: bool, **settings) -> None:
    from workflows.simulate import deploy

    result = deploy(out, base_config=config_path(), say=None if as_json else info, **settings)
    figures = result.figures
    if as_json:
        emit_json(figures)
        return
    info(
        f"deployment in {out}: model version {figures['model_version']} served from "
        f"{figures['deployment_start']} to {figures['extract_date']}; {figures['issued']:,} "
        f"scores issued, {figures['decisions']:,} staff decisions ({figures['notified']:,} "
        f"notifications, {figures['overridden']:,} overrides)"
    )


def register_simulate(app: typer.Typer) -> None:
    """Add ``simulate`` to the ``ipvi`` app."""

    @app.command("simulate")
    def simulate(
        persons: int = typer.Option(..., "--persons", help="Number of IPV offenders (>= 1000)."),
        seed: int = typer.Option(..., "--seed", help="Random seed of the generated world."),
        drift: str = typer.Option(None, "--drift", help=DRIFT_HELP),
        workdir: Path = typer.Option(
            ...,
            "--workdir",
            help="A new or empty folder for everything the deployment writes (extracts and "
            "truth, registry, MLflow store, reports, monitor.json and monitor.html).",
        ),
        override_rate: float = typer.Option(0.1, "--override-rate", help=OVERRIDE_HELP),
        as_json: bool = typer.Option(
            False, "--json", help="Print the monitor's JSON (with the truth) as the last line."
        ),
    ) -> None:
        """Run the whole deployment loop on generated data: generate, ingest and link; train
        on the early years and promote through the gate; issue the champion's scores over the
        last 3 years (source api) and record simulated staff decisions; then run the monitor
        (as `ipvi monitor`) on the extract date, with notification_effect.truth from the
        generator. Exits 0 whatever the monitor's status (it is in the JSON)."""
        from workflows.simulate import simulate as run

        payload = run(
            workdir,
            persons=persons,
            seed=seed,
            drift=drift,
            override_rate=override_rate,
            base_config=config_path(),
            say=info,
        )
        effect = payload["notification_effect"]
        info(
            f"simulated deployment in {workdir}: status {payload['status']} "
            f"({len(payload['reasons'])} reason(s)); notification effect truth "
            f"{effect['truth']}, estimate {effect['estimate']}; "
            f"{payload['simulation']['wall_seconds']:.0f} s"
        )
        if as_json:
            emit_json(payload)
