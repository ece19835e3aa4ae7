"""The outside probe's growth test as a benchmark: unauthenticated requests to random paths.

Prints one JSON line. A real server (``serving.workers`` workers, a toy champion) gets
``--requests`` GETs to random paths without a key, after ``--warm`` of the same (the first use
of each code path in each worker); reported: the growth of ``/metrics`` (bytes), of each worker's
resident memory (MB), of the audit log (rows), the requests counted as unaudited, and the
client's requests per second. Bounded growth means the first two stay flat however many
requests are sent.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import string
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil
from sqlalchemy import func, select

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ipvi.db import open_registry, session_scope  # noqa: E402
from ipvi.tables.serving import audit_log  # noqa: E402
from serving.auth import add_key  # noqa: E402
from serving.launch import ServerProcess  # noqa: E402
from synth.champion import toy_champion  # noqa: E402


def random_paths(url: str, n: int, seed: int) -> float:
    """Seconds to send ``n`` keyless GETs to random paths."""
    rng = random.Random(seed)
    alphabet = string.ascii_lowercase + string.digits
    started = time.perf_counter()
    with httpx.Client(base_url=url) as client:
        for _ in range(n):
            parts = ["".join(rng.choices(alphabet, k=10)) for _ in range(rng.randint(1, 3))]
            client.get("/" + "/".join(parts))
    return time.perf_counter() - started


def unaudited(text: str) -> float:
    for line in text.splitlines():
        if line.startswith("ipvi_unaudited_request_total "):
            return float(line.split()[1])
    return 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--warm", type=int, default=300)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    requests = 500 if args.quick else args.requests
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        uri = toy_champion(folder, reason="benchmark")["tracking_uri"]
        registry = f"sqlite:///{folder / 'registry.sqlite'}"
        engine = open_registry(registry)
        with session_scope(engine) as session:
            key = add_key(session, name=f"probe-{os.getpid()}", role="monitoring")
        config = folder / "config.yaml"
        config.write_text(
            json.dumps(
                {
                    "database": {"url": registry},
                    "paths": {"home": str(folder), "audit_key_file": str(folder / "audit.key")},
                    "serving": {"workers": args.workers, "audit_spool_dir": str(folder / "spool")},
                }
            )
        )
        env = {
            "IPVI_CONFIG": str(config),
            "IPVI_DATABASE_URL": registry,
            "MLFLOW_TRACKING_URI": uri,
        }
        headers = {"Authorization": f"Bearer {key}"}
        with ServerProcess(env=env, log_path=folder / "server.log") as server:
            workers = psutil.Process(server.process.pid).children(recursive=True)
            random_paths(server.url, args.warm, seed=1)
            time.sleep(2)

            def state() -> tuple[str, dict[int, int], int]:
                text = httpx.get(f"{server.url}/metrics", headers=headers).text
                with session_scope(engine) as session:
                    rows = session.scalar(select(func.count()).select_from(audit_log))
                return text, {w.pid: w.memory_info().rss for w in workers}, rows

            metrics_before, rss_before, rows_before = state()
            seconds = random_paths(server.url, requests, seed=2)
            time.sleep(2)  # audit spool flushes every 0.5 s
            metrics_after, rss_after, rows_after = state()
        engine.dispose()
    figures = {
        "requests": requests,
        "warm_requests": args.warm,
        "server_workers": args.workers,
        "metrics_bytes_before": len(metrics_before.encode()),
        "metrics_growth_bytes": len(metrics_after.encode()) - len(metrics_before.encode()),
        "worker_rss_growth_mb": [
            round((rss_after[pid] - rss_before[pid]) / 2**20, 2) for pid in sorted(rss_before)
        ],
        "audit_rows_added": rows_after - rows_before,
        "unaudited_counted": unaudited(metrics_after) - unaudited(metrics_before),
        "requests_per_s": round(requests / seconds, 1),
    }
    print(json.dumps(figures, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
