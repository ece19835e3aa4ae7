"""CLI commands of the data foundation: generate, ingest, purge, demo."""

import typer


def register(app: typer.Typer) -> None:
    """Add this stage's commands to the ``ipvi`` app."""
