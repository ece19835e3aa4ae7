"""CLI commands of the linkage stage."""

import typer


def register(app: typer.Typer) -> None:
    """Add this stage's commands to the ipvi app."""
