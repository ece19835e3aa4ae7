"""Cross-agency record linkage: one person id per offender (and per victim).

standardize -> blocking -> compare -> fellegi_sunter -> cluster, run by :class:`linkage.linker.
Linker`; ``linkage.run`` links the registry with stable person ids, ``linkage.incremental`` links
one new record in memory, ``linkage.dedupe`` serves ``ipvi dedupe``. ``linkage.purge_step`` and
``linkage.person_records`` are this stage's part of ``ipvi purge``.
"""

from __future__ import annotations


def __getattr__(name: str):
    # Lazy, so importing linkage.dedupe does not load the registry tables.
    if name in ("purge_step", "person_records"):
        from linkage import purge

        return getattr(purge, name)
    raise AttributeError(f"module 'linkage' has no attribute {name!r}")
