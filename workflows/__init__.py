"""Workflows that span several stages, called by the CLI (``ipvi purge``).

A stage package may import only the stages upstream of it (docs/ARCHITECTURE.md), so work that
must touch every stage, such as forgetting a person everywhere, cannot live in any one of them,
nor in the core (``ipvi``), which imports no stage. It lives here, one module per workflow; only
the CLI imports this package.
"""
