"""Serving benchmark: latency and throughput of the real service over HTTP, and its overhead.

Prints one JSON line. The client is one asyncio process with one keep-alive ``httpx`` client
per concurrency level (connection pool as large as the concurrency), sending request bodies
encoded once, as load generators do; the server is
``bentoml serve`` with ``serving.workers`` workers (default 2) on loopback. Figures:

- single-person score with an inline history: p50/p95/p99 latency (ms), throughput (requests/s)
  and error count at 1, 8 and 32 concurrent clients, each for ``--seconds``, beside the
  anchor (``anchor``): a plain BentoML service (``benchmarks/anchor_service.py``) scoring one
  row with an MLflow pyfunc logistic regression, started in the same run with the same workers
  and measured in turns with ours under the same load; ``ours_over_anchor`` is the ratio of
  latencies, ``targets`` issue 19's bar (one client: p50 within 1.25x the anchor's, p99 within
  25 ms);
- a 1000-person batch with inline histories (``--batch``), wall ms: min, median and max of
  10, after one unmeasured batch per worker;
- person-id requests (registry on SQLite), p50/p95/p99 at 1 client, when the registry holds
  linked persons (``--registry``, built by ``ipvi ingest`` and ``ipvi link``);
- ``/v1/link`` latency against the registry's mentions (200 sampled mentions' names and dates
  of birth in turn); the time to build the link index file, as ``ipvi link`` does before it
  ends (``link_index_build_s``), then the service's start-up time and the time until its link
  index is loaded and ready; RSS (every process of the server, after the run);
- the server's CPU milliseconds per answered request at each level, a cost that a busy machine
  distorts less than latency, and each server process's share of that CPU (how evenly the
  keep-alive connections spread over the workers);
- in-process prediction of the same single-person input, so serving overhead is a ratio.

The model is a small one trained on :func:`synth.histories.toy_history` and registered in a
throw-away MLflow store (or ``--tracking-uri`` with a champion). ``--quick`` shortens everything.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import dataclasses
import itertools
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import psutil

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from ipvi.db import open_registry, session_scope  # noqa: E402
from serving.auth import add_key  # noqa: E402
from serving.launch import ServerProcess  # noqa: E402
from serving.link_index import prebuild_index  # noqa: E402
from serving.schemas import SCORE_EXAMPLE  # noqa: E402
from synth.champion import toy_champion  # noqa: E402


def percentiles(samples: list[float]) -> dict[str, float | None]:
    if not samples:
        return {"p50_ms": None, "p95_ms": None, "p99_ms": None}
    values = np.array(samples) * 1000
    return {f"p{q}_ms": round(float(np.percentile(values, q)), 2) for q in (50, 95, 99)}


JSON = {"Content-Type": "application/json"}


def encoded(body: dict) -> bytes:
    return json.dumps(body).encode("utf-8")


async def load(
    url: str, body: dict | list[dict], headers: dict, clients: int, seconds: float
) -> dict:
    """``clients`` coroutines posting ``body`` (or each of a list in turn) for ``seconds``:
    the raw latencies (s), errors by kind and the wall time (see :func:`summary`)."""
    # Bodies encoded once, as a load generator sends fixed bytes: the client's JSON encoding
    # is no part of the service's latency.
    bodies = itertools.cycle([encoded(b) for b in (body if isinstance(body, list) else [body])])
    latencies: list[float] = []
    errors: collections.Counter[str] = collections.Counter()  # by status code or exception
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(limits=limits, timeout=30, headers=headers) as client:
        deadline = time.perf_counter() + seconds

        async def worker():
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                try:
                    response = await client.post(url, content=next(bodies), headers=JSON)
                    error = None if response.status_code == 200 else str(response.status_code)
                except httpx.HTTPError as failure:
                    error = type(failure).__name__
                if error is None:
                    latencies.append(time.perf_counter() - started)
                else:
                    errors[error] += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        wall = time.perf_counter() - started
    return {"latencies": latencies, "errors": errors, "wall": wall}


def summary(raw: dict) -> dict:
    """Percentiles, throughput and errors of one or more :func:`load` runs merged."""
    latencies, errors = raw["latencies"], raw["errors"]
    return {
        **percentiles(latencies),
        "requests_per_s": round(len(latencies) / raw["wall"], 1),
        "errors": sum(errors.values()),
        "error_kinds": dict(errors),
        "requests": len(latencies),
    }


BATCH_REPEATS = 10  # measured batches (min, median and max reported)


def batch_body(n: int) -> dict:
    """``n`` copies of the example person, with distinct person and event ids."""
    history = SCORE_EXAMPLE["histories"][0]
    return {
        "as_of": SCORE_EXAMPLE["as_of"],
        "histories": [
            {
                **history,
                "person_id": f"bench-{i}",
                "events": [{**e, "event_id": f"{e['event_id']}-{i}"} for e in history["events"]],
            }
            for i in range(n)
        ],
    }


def served_model(tracking_uri: str, source: str) -> dict:
    """What was measured: the champion's trees, their depth, and whether they compiled to
    lookup tables for reason codes (:mod:`training.compiled_trees`; if not, LightGBM's
    ``pred_contrib`` computes them)."""
    from training.registry import load_bundle

    bundle, info = load_bundle(tracking_uri, "ipvi-risk", "champion")
    booster = bundle.model.booster_

    def depth(node: dict) -> int:
        if "split_index" not in node:
            return 0
        return 1 + max(depth(node["left_child"]), depth(node["right_child"]))

    depths = [depth(tree["tree_structure"]) for tree in booster.dump_model()["tree_info"]]
    return {
        "source": source,
        "version": info["version"],
        "trees": booster.num_trees(),
        "max_depth": max(depths, default=0),
        "compiled_trees": bundle.model.compiled_trees_ is not None,
    }


def in_process_ms(tracking_uri: str, repeats: int) -> float:
    """Median ms of what the score endpoint does for the same body, in process: parse the
    JSON, score, build and serialise the response (no HTTP, no keys, no audit log)."""
    from threadpoolctl import threadpool_limits

    from serving.http import answer
    from serving.model import load_scorer
    from serving.schemas import ScoreRequest
    from serving.scoring import history_frames, resolve_as_of, score_results

    scorer, audit = load_scorer(tracking_uri, "ipvi-risk", "champion")
    threadpool_limits(limits=1)  # as each service worker runs (serving.runtime)
    body = json.dumps(SCORE_EXAMPLE)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        request = ScoreRequest.model_validate_json(body)
        scored = scorer.score_many(
            *history_frames(request.histories), as_of=resolve_as_of(request.as_of)
        )
        requested = {h.person_id: (h.person_id, "inline") for h in request.histories}
        answer(
            results=score_results(scored, requested=requested, audit=audit),
            not_scored=[],
            model_name=scorer.model_name,
            model_version=scorer.model_version,
        )
        times.append(time.perf_counter() - started)
    return round(statistics.median(times) * 1000, 2)


def server_processes(server: ServerProcess) -> list[psutil.Process]:
    parent = psutil.Process(server.process.pid)
    return [p for p in [parent, *parent.children(recursive=True)] if p.is_running()]


def server_rss_mb(server: ServerProcess) -> float:
    return round(sum(p.memory_info().rss for p in server_processes(server)) / 2**20, 1)


def server_cpu_seconds(server: ServerProcess) -> dict[int, float]:
    """CPU seconds (user + system) each live process of the server has used."""
    return {p.pid: sum(p.cpu_times()[:2]) for p in server_processes(server)}


@dataclasses.dataclass
class Target:
    """One server under load: where to post what."""

    server: ServerProcess
    url: str
    body: dict | list[dict]
    headers: dict


def measured(targets: dict[str, Target], clients: int, seconds: float, rounds: int = 1) -> dict:
    """Each target under :func:`load` for ``seconds`` in all, in ``rounds`` alternating slices
    (the machine's speed drifts within minutes, so two servers compared are measured in turns),
    with the server's CPU milliseconds per answered request."""
    merged = {
        name: {"latencies": [], "errors": collections.Counter(), "wall": 0.0} for name in targets
    }
    spent = {name: collections.Counter() for name in targets}
    names = list(targets)
    for round_ in range(rounds):
        for name in names if round_ % 2 == 0 else names[::-1]:
            target = targets[name]
            before = server_cpu_seconds(target.server)
            raw = asyncio.run(
                load(target.url, target.body, target.headers, clients, seconds / rounds)
            )
            # Per process: one that started meanwhile counts whole, one that ended is not.
            for pid, used in server_cpu_seconds(target.server).items():
                spent[name][pid] += used - before.get(pid, 0.0)
            merged[name]["latencies"] += raw["latencies"]
            merged[name]["errors"] += raw["errors"]
            merged[name]["wall"] += raw["wall"]
    figures = {}
    for name in names:
        figures[name] = summary(merged[name])
        by_process = sorted(spent[name].values(), reverse=True)
        total = sum(by_process)
        requests = max(figures[name]["requests"], 1)
        figures[name]["server_cpu_ms_per_request"] = round(1000 * total / requests, 2)
        # How evenly the work spread over the server's processes (workers, then the supervisor).
        figures[name]["server_cpu_share"] = (
            [round(used / total, 2) for used in by_process] if total else []
        )
    return figures


ANCHOR_FEATURES = 24  # about as many as the risk model's features
ANCHOR_ROW = {"row": {f"x{i}": round(0.1 * i - 1.0, 2) for i in range(ANCHOR_FEATURES)}}
LOAD_ROUNDS = 4  # slices per level, alternating between our service and the anchor
# Issue 19's serving bar: single-person p50 within 1.25x the anchor's, p99 within 25 ms.
TARGET_P50_RATIO = 1.25
TARGET_P99_MS = 25.0


def anchor_model(folder: Path) -> str:
    """A logistic regression saved as an MLflow model (pyfunc ``predict_proba``) under
    ``folder``; its path, which ``mlflow.pyfunc.load_model`` takes."""
    import mlflow.sklearn
    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(19)
    X = pd.DataFrame(rng.normal(size=(2000, ANCHOR_FEATURES)), columns=list(ANCHOR_ROW["row"]))
    y = (X.to_numpy() @ rng.normal(size=ANCHOR_FEATURES) + rng.normal(size=2000)) > 0
    path = folder / "anchor-model"
    mlflow.sklearn.save_model(
        LogisticRegression(max_iter=1000).fit(X, y),
        path,
        input_example=X.head(1),
        pyfunc_predict_fn="predict_proba",
        pip_requirements=["scikit-learn"],
    )
    return str(path)


class AnchorServer(ServerProcess):
    """``bentoml serve`` of the anchor service (benchmarks/anchor_service.py), with the same
    keep-alive as ours."""

    def command(self) -> list[str]:
        ours = super().command()
        return [*ours[:2], "anchor_service:AnchorService", "--working-dir", str(HERE), *ours[2:]]


def ratios(ours: dict, anchor: dict) -> dict:
    """Our latency over the anchor's, by concurrency level and percentile."""
    out = {}
    for clients in (1, 8, 32):
        for q in ("p50", "p99"):
            mine = ours[f"score_c{clients}"][f"{q}_ms"]
            theirs = anchor[f"score_c{clients}"][f"{q}_ms"]
            out[f"c{clients}_{q}"] = round(mine / theirs, 2) if mine and theirs else None
    return out


def targets_met(figures: dict) -> dict:
    """The serving bar for the single-person score (one client)."""
    ratio = figures["ours_over_anchor"]["c1_p50"]
    p99 = figures["score_c1"]["p99_ms"]
    return {
        "c1_p50_over_anchor": {
            "value": ratio,
            "max": TARGET_P50_RATIO,
            "met": ratio is not None and ratio <= TARGET_P50_RATIO,
        },
        "c1_p99_ms": {
            "value": p99,
            "max": TARGET_P99_MS,
            "met": p99 is not None and p99 <= TARGET_P99_MS,
        },
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--tracking-uri",
        help="MLflow store with a champion, e.g. the demo's sqlite:///.ipvi/mlflow.db "
        "(default: a toy champion, smaller than a model trained on real volumes)",
    )
    parser.add_argument("--registry", help="registry URL with linked persons (person ids, link)")
    args = parser.parse_args()
    seconds = 5.0 if args.quick else args.seconds
    batch = 100 if args.quick else args.batch
    figures: dict = {
        "client": "one asyncio process, httpx.AsyncClient with keep-alive",
        "server_workers": args.workers,
        "seconds_per_level": seconds,
    }
    anchor: dict = {
        "service": "plain BentoML service (benchmarks/anchor_service.py), same workers",
        "model": f"scikit-learn LogisticRegression, {ANCHOR_FEATURES} features, "
        "MLflow pyfunc (predict_proba)",
    }
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        uri = args.tracking_uri or toy_champion(folder, reason="benchmark")["tracking_uri"]
        registry = args.registry or f"sqlite:///{folder / 'registry.sqlite'}"
        engine = open_registry(registry)
        with session_scope(engine) as session:
            key = add_key(session, name=f"bench-{os.getpid()}", role="admin")
        engine.dispose()
        config = folder / "config.yaml"
        config.write_text(
            json.dumps(
                {
                    "database": {"url": registry},
                    "paths": {"home": str(folder), "audit_key_file": str(folder / "audit.key")},
                    "serving": {
                        "workers": args.workers,
                        "audit_spool_dir": str(folder / "spool"),
                        "link_rate_per_second": 100000,
                        "link_burst": 100000,
                    },
                }
            )
        )
        env = {
            "IPVI_CONFIG": str(config),
            "IPVI_DATABASE_URL": registry,
            "MLFLOW_TRACKING_URI": uri,
        }
        headers = {"Authorization": f"Bearer {key}"}
        if args.registry:
            # What `ipvi link` does before it ends: the service then loads the index file.
            started = time.perf_counter()
            engine = open_registry(registry)
            prebuild_index(folder / "spool", engine, str(config))
            engine.dispose()
            figures["link_index_build_s"] = round(time.perf_counter() - started, 1)
        anchor_env = {"ANCHOR_MODEL_URI": anchor_model(folder), "ANCHOR_WORKERS": str(args.workers)}
        with (
            ServerProcess(env=env, log_path=folder / "server.log", start_timeout=300) as server,
            AnchorServer(env=anchor_env, log_path=folder / "anchor.log") as anchor_server,
        ):
            figures["startup_s"] = round(server.started_seconds, 1)
            anchor["startup_s"] = round(anchor_server.started_seconds, 1)
            if args.registry:
                sample = registry_sample(registry)
                figures["registry_mentions"] = sample["mentions"]
                # Before the score figures: the index build must not run under them.
                figures["link_index_ready_s"] = round(
                    server.started_seconds + wait_for_link(server, headers, sample["link"][0]), 1
                )
            score = f"{server.url}/v1/score"
            targets = {
                "ours": Target(server, score, SCORE_EXAMPLE, headers),
                "anchor": Target(anchor_server, f"{anchor_server.url}/v1/score", ANCHOR_ROW, {}),
            }
            measured(targets, clients=1, seconds=2.0)  # warm-up
            for clients in (1, 8, 32):
                level = measured(targets, clients, seconds, rounds=LOAD_ROUNDS)
                figures[f"score_c{clients}"] = level["ours"]
                anchor[f"score_c{clients}"] = level["anchor"]
            body = batch_body(batch)
            content = encoded(body)
            with httpx.Client(timeout=120, headers=headers) as client:
                times = []
                # One unmeasured batch per worker first: each worker's first large batch
                # also pays one-off costs (its allocator growing), as the score levels'
                # warm-up pays them for single requests.
                for repeat in range(args.workers + BATCH_REPEATS):
                    started = time.perf_counter()
                    response = client.post(score, content=content, headers=JSON)
                    if repeat >= args.workers:
                        times.append(time.perf_counter() - started)
                    response.raise_for_status()
            figures[f"batch_{batch}_ms"] = round(min(times) * 1000, 1)
            figures[f"batch_{batch}_median_ms"] = round(statistics.median(times) * 1000, 1)
            figures[f"batch_{batch}_max_ms"] = round(max(times) * 1000, 1)
            figures["batch_repeats"] = len(times)
            if args.registry:
                by_id = {"person_ids": [sample["person"]]}
                figures["score_person_id_c1"] = measured(
                    {"ours": Target(server, score, by_id, headers)}, 1, seconds
                )["ours"]
                link = Target(server, f"{server.url}/v1/link", sample["link"], headers)
                figures["link_c1"] = measured({"ours": link}, 1, seconds)["ours"]
            figures["server_rss_mb"] = server_rss_mb(server)
            anchor["server_rss_mb"] = server_rss_mb(anchor_server)
        figures["anchor"] = anchor
        figures["ours_over_anchor"] = ratios(figures, anchor)
        figures["model"] = served_model(uri, "--tracking-uri" if args.tracking_uri else "toy")
        figures["in_process_score_ms"] = in_process_ms(uri, 20 if args.quick else 50)
    p50 = figures["score_c1"]["p50_ms"]
    if p50:
        figures["http_over_in_process"] = round(p50 / figures["in_process_score_ms"], 2)
    figures["targets"] = targets_met(figures)
    print(json.dumps(figures, sort_keys=True))
    return 0


def registry_sample(registry: str, n: int = 200) -> dict:
    """A linked person id, the mention count, and ``n`` mentions' identifiers to link."""
    from sqlalchemy import func, select

    from ipvi.db import make_engine
    from ipvi.tables.ingest import mentions
    from ipvi.tables.linkage import crosswalk

    engine = make_engine(registry)
    with engine.connect() as connection:
        person = connection.scalar(select(crosswalk.c.person_id).limit(1))
        count = connection.scalar(select(func.count()).select_from(mentions))
        rows = connection.execute(
            select(mentions.c.first_name, mentions.c.last_name, mentions.c.dob_raw).where(
                mentions.c.last_name.is_not(None)
            )
        ).all()
    rows = rows[:: max(len(rows) // n, 1)][:n]  # spread over the table, not its first rows
    engine.dispose()
    link = [
        {k: v for k, v in zip(("first_name", "last_name", "dob"), row, strict=True) if v}
        for row in rows
    ]
    return {"person": person, "mentions": count, "link": link}


def wait_for_link(server: ServerProcess, headers: dict, body: dict, limit: float = 900) -> float:
    """Seconds until ``/v1/link`` answers (its index is built in the background)."""
    started = time.monotonic()
    while time.monotonic() - started < limit:
        if httpx.post(f"{server.url}/v1/link", json=body, headers=headers).status_code == 200:
            break
        time.sleep(1)
    return time.monotonic() - started


if __name__ == "__main__":
    sys.exit(main())
