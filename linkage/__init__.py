"""Cross-agency record linkage: one person id per offender (and per victim).

standardize -> blocking -> compare -> fellegi_sunter -> cluster, run by :class:`linkage.linker.
Linker`; ``linkage.run`` links the registry with stable person ids, ``linkage.person_ids``
resolves retired ids, ``linkage.incremental`` links one new record in memory,
``linkage.dedupe`` serves ``ipvi dedupe``, and ``linkage.purge`` is this stage's part of
``ipvi purge``.
"""
