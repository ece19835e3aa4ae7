"""CLI command: ``ipvi generate`` (synthetic multi-agency extracts with ground truth)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import typer

from ipvi.commands.context import emit_json, get_config, info


def register(app: typer.Typer) -> None:
    """Add ``generate`` to the ``ipvi`` app."""

    @app.command("generate")
    def generate(
        persons: int = typer.Option(
            3000,
            "--persons",
            help="Number of IPV offenders; their victims and relatives come on top.",
        ),
        years: int = typer.Option(10, "--years", help="Length of the extract period, in years."),
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
    ) -> None:
        """Generate synthetic police, jail, court, protective-order and probation extracts with
        ground truth (true persons, exact re-offence probabilities) in OUT/truth/."""
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
        params = SynthParams(
            persons=persons,
            years=years,
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
