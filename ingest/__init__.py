"""Ingestion: agency extracts -> canonical mentions and events in the registry database.

:mod:`~ingest.extract` reads a file, :mod:`~ingest.mapping` maps it (with the field
validators of :mod:`~ingest.fields`), :mod:`~ingest.load` stores it, one transaction per
file, under the lock of :mod:`~ingest.lock`; :mod:`~ingest.purge` is ingest's step of
``ipvi purge``.
"""
