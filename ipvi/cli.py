"""The ``ipvi`` command line: one Typer app, one small module of commands per stage.

This module only wires the command modules together and turns :class:`~ipvi.errors.IpviError`
into a one-line error with a non-zero exit, never a traceback. Stage libraries are imported
lazily inside each command, so ``ipvi dedupe`` never pays for mlflow, bentoml or lightgbm.
"""

from __future__ import annotations

import sys

import typer

from ipvi.commands import (
    context,
    demo,
    fairness,
    generate,
    ingest,
    linkage,
    monitoring,
    serving,
    training,
)

app = typer.Typer(
    name="ipvi",
    help="Record linkage, rule tiers, risk scores and fairness audits for the IPV Intervention.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root(
    config: str = typer.Option(
        None,
        "--config",
        envvar="IPVI_CONFIG",
        help="YAML file overriding any of the packaged defaults (see ipvi/default_config.yaml).",
    ),
) -> None:
    context.set_config_path(config)


for module in (generate, ingest, linkage, training, fairness, serving, monitoring, demo):
    module.register(app)
generate.register_simulate(app)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script."""
    from ipvi.errors import IpviError

    try:
        # Outside standalone mode click returns a command's `typer.Exit(code)` as the result.
        code = app(args=argv, standalone_mode=False)
    except IpviError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except typer.Abort:
        print("aborted", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # click usage errors carry their own exit code
        import click

        if isinstance(error, click.ClickException):
            error.show()
            return error.exit_code
        if isinstance(error, click.exceptions.Exit):
            return error.exit_code
        raise
    return code if isinstance(code, int) and not isinstance(code, bool) else 0


if __name__ == "__main__":
    sys.exit(main())
