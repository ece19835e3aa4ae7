"""CLI commands of the training stage."""

import typer


def register(app: typer.Typer) -> None:
    """Add this stage's commands to the ipvi app."""
