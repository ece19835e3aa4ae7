"""Monitoring: the stage that watches the live system (docs/ARCHITECTURE.md).

Issued scores against their matured outcomes, drift against the training distribution,
a re-audit on real outcomes, staff overrides, linkage health, and the report ``ipvi monitor``
writes for the oversight board.
"""
