"""Ingestion: agency extracts -> canonical mentions and events in the registry database.

:mod:`~ipvi.ingest.extract` reads a file, :mod:`~ipvi.ingest.mapping` maps it (with the field
validators of :mod:`~ipvi.ingest.fields`), :mod:`~ipvi.ingest.load` stores it, one transaction per
file, under the lock of :mod:`~ipvi.ingest.lock`; :mod:`~ipvi.ingest.purge` is ingest's step of
``ipvi purge``.
"""
