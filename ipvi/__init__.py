"""IPVI risk & linkage: the thin shared core (CLI, configuration, schemas, database)."""

__version__ = "0.1.0"
