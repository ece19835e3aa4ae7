"""Audit-log benchmark: what the keyed chain and the pseudonyms cost per request.

Prints one JSON line. Each answered request adds one audit row: its person ids become keyed
pseudonyms in the worker (``pseudonym_us`` per id, on the request path), and the spool's
background flush chains the row onto the log: ``chain_hash_us`` is the HMAC-SHA-256 of one row
(``chain_hash_unkeyed_us`` the unkeyed SHA-256 of the versions before the site key, the anchor),
``append_per_row_ms`` the whole append per row of a flush of ``--batch`` rows on SQLite (HMAC,
duplicate check, insert, commit), keyed and unkeyed in the same run (``keyed_over_unkeyed``).
``ipvi audit-log verify`` speed is ``verify_rows_per_s``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import tempfile
import time
import timeit
from dataclasses import asdict
from pathlib import Path
from unittest import mock

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ipvi.db import open_registry, session_scope  # noqa: E402
from ipvi.site_key import SiteKey  # noqa: E402
from serving import audit_log  # noqa: E402
from serving.audit_log import (  # noqa: E402
    CHAIN_PURPOSE,
    AuditEntry,
    append_entries,
    chain_hash,
    unkeyed_chain_hash,
    verify_chain,
)

KEY = SiteKey(b"benchmark site key, at least 32 characters long")


def entries(n: int) -> list[AuditEntry]:
    return [
        AuditEntry(
            endpoint="POST /v1/score",
            outcome="ok",
            key_name="intake-desk",
            person_ids=[KEY.pseudonym(f"P{i:08d}")],
            model_version="3",
            status_code=200,
        )
        for i in range(n)
    ]


def flush_ms_per_row(folder: Path, rows: int, batch: int, unkeyed: bool) -> float:
    """Milliseconds per row to chain ``rows`` rows in flushes of ``batch`` (median flush)."""
    engine = open_registry(f"sqlite:///{folder / ('unkeyed' if unkeyed else 'keyed')}.sqlite")
    timings = []
    patch = (
        mock.patch.object(audit_log, "chain_hash", lambda _key, *args: unkeyed_chain_hash(*args))
        if unkeyed
        else contextlib.nullcontext()
    )
    with patch:
        for _ in range(0, rows, batch):
            flush = entries(batch)
            started = time.perf_counter()
            with session_scope(engine) as session:
                append_entries(session, flush, KEY)
            timings.append((time.perf_counter() - started) * 1000 / batch)
    engine.dispose()
    return statistics.median(timings)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=100)
    args = parser.parse_args()
    rows = 2_000 if args.quick else args.rows
    ids = [f"P{i:08d}" for i in range(100_000)]
    started = time.perf_counter()
    for value in ids:
        KEY.pseudonym(value)
    pseudonym_us = (time.perf_counter() - started) * 1e6 / len(ids)
    row = {**asdict(entries(1)[0]), "entry_id": "0" * 36}
    chain_key = KEY.derive(CHAIN_PURPOSE)
    chain_hash_us = timeit.timeit(lambda: chain_hash(chain_key, "0" * 64, 7, row), number=50_000)
    unkeyed_us = timeit.timeit(lambda: unkeyed_chain_hash("0" * 64, 7, row), number=50_000)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        # Alternated, so that both see the machine in the same state.
        keyed, unkeyed = [], []
        for _ in range(3):
            keyed.append(flush_ms_per_row(folder / f"k{len(keyed)}", rows, args.batch, False))
            unkeyed.append(flush_ms_per_row(folder / f"u{len(unkeyed)}", rows, args.batch, True))
        engine = open_registry(f"sqlite:///{folder / 'k0' / 'keyed.sqlite'}")
        started = time.perf_counter()
        with session_scope(engine) as session:
            report = verify_chain(session, KEY)
        verify_seconds = time.perf_counter() - started
        engine.dispose()
    assert report.ok and report.rows == rows
    figures = {
        "rows": rows,
        "batch": args.batch,
        "pseudonym_us": round(pseudonym_us, 2),
        "chain_hash_us": round(chain_hash_us * 1e6 / 50_000, 2),
        "chain_hash_unkeyed_us": round(unkeyed_us * 1e6 / 50_000, 2),
        "append_per_row_ms": round(statistics.median(keyed), 4),
        "append_per_row_unkeyed_ms": round(statistics.median(unkeyed), 4),
        "keyed_over_unkeyed": round(statistics.median(keyed) / statistics.median(unkeyed), 3),
        "verify_rows_per_s": round(rows / verify_seconds),
    }
    print(json.dumps(figures, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
