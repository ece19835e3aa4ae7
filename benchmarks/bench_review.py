"""Review pages, linkage report and tier list at scale. Prints ONE JSON line.

- **Review page**: a real ``bentoml serve`` on a linked registry (``--registry URL``, e.g. the
  1M-mention one; else a generated registry of ``--persons``), one reviewer going down the
  priority queue: each pair page is fetched (lease, the two records, cluster context, tier
  impact, waterfall), then skipped (skips record nothing, so a prepared registry is left as it
  was, bar leases). Server time per page from BentoML's access log (p50, p95, max, ms) and the
  client's wall time; anchors in the same run: ``/livez`` (the HTTP floor) and ``/v1/tier`` for
  one registry person by id (a registry read plus tiering, the service's own work).
- **Linkage report**: ``ipvi link-report --html --json`` on the registry, wall seconds.
- **Tier list**: the rows of a real ``ipvi score --all`` on the shipped sample (toy champion),
  repeated with new person ids to ``--tier-persons``; the HTML's size and, when Chromium is
  there, the seconds until the first rows show (Playwright, system Chromium) and until the
  page's load event, next to an anchor: the same browser opening the linkage report.

    .venv/bin/python benchmarks/bench_review.py [--quick] [--registry URL] [--pages 200]
        [--tier-persons 100000]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
from sqlalchemy import create_engine, select, text

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ipvi.db import open_registry, session_scope  # noqa: E402
from serving.auth import add_key  # noqa: E402
from serving.launch import CHROMIUM, ServerProcess, launch_chromium  # noqa: E402
from synth.champion import toy_champion  # noqa: E402

IPVI = ROOT / ".venv" / "bin" / "ipvi"
SERVER_MS = re.compile(r"path=(\S+?),.*?\) ([\d.]+)ms")


def ipvi(args: list[str], env: dict) -> tuple[str, float]:
    started = time.perf_counter()
    run = subprocess.run(
        [str(IPVI), *args], env={**os.environ, **env}, capture_output=True, text=True
    )
    if run.returncode != 0:
        raise RuntimeError(f"ipvi {' '.join(args)}: {run.stderr[-500:]}")
    return run.stdout, time.perf_counter() - started


def stats(values: list[float]) -> dict:
    if not values:
        return {"p50": None, "p95": None, "max": None, "n": 0}
    array = np.asarray(values)
    return {
        "p50": round(float(np.percentile(array, 50)), 2),
        "p95": round(float(np.percentile(array, 95)), 2),
        "max": round(float(array.max()), 2),
        "n": len(values),
    }


def generated_registry(folder: Path, persons: int) -> str:
    url = f"sqlite:///{folder / 'registry.sqlite'}"
    env = {"IPVI_DATABASE_URL": url}
    ipvi(["generate", "--persons", str(persons), "--seed", "5", "--out", str(folder / "x")], env)
    ipvi(["ingest", str(folder / "x")], env)
    ipvi(["link", "--no-link-index"], env)
    return url


def review_pages(folder: Path, url: str, pages: int, store: dict) -> dict:
    engine = open_registry(url)
    with session_scope(engine) as session:
        name = f"bench-reviewer-{int(time.time())}"
        key = add_key(session, name=name, role="reviewer")
        scoring = add_key(session, name=f"bench-scoring-{int(time.time())}", role="scoring")
        person = session.execute(text("SELECT person_id FROM crosswalk LIMIT 1")).scalar()
    engine.dispose()
    config = folder / "config.yaml"
    config.write_text(
        f"database: {{url: '{url}'}}\nserving: {{audit_spool_dir: '{folder / 'spool'}', "
        "key_cache_seconds: 1}\n"
    )
    env = {
        "IPVI_CONFIG": str(config),
        "IPVI_DATABASE_URL": url,
        "MLFLOW_TRACKING_URI": store["tracking_uri"],
    }
    log = folder / "server.log"
    figures: dict = {}
    with ServerProcess(env=env, log_path=log, start_timeout=600) as server:
        time.sleep(1.5)
        headers = {"Authorization": f"Bearer {key}"}
        wall, shown = [], []
        with httpx.Client(base_url=server.url, timeout=60) as client:
            client.get("/review/queue/priority", headers=headers)  # each worker warms up
            for _ in range(pages):
                started = time.perf_counter()
                answer = client.get("/review/queue/priority", headers=headers)
                wall.append((time.perf_counter() - started) * 1000)
                match = re.search(r'id="pair-id">([^<]+)<', answer.text)
                if answer.status_code != 200 or match is None:
                    break
                shown.append(match.group(1))
                client.post(
                    f"/review/pair/{match.group(1)}",
                    data={"decision": "skip", "queue": "priority"},
                    headers=headers,
                )
            floor = []
            for _ in range(pages):
                started = time.perf_counter()
                client.get("/livez")
                floor.append((time.perf_counter() - started) * 1000)
            tier = []
            body = {"person_ids": [person]}
            for _ in range(pages):
                started = time.perf_counter()
                client.post("/v1/tier", json=body, headers={"Authorization": f"Bearer {scoring}"})
                tier.append((time.perf_counter() - started) * 1000)
        time.sleep(0.5)
    server_ms = [
        float(ms)
        for path, ms in SERVER_MS.findall(log.read_text(errors="replace"))
        if path == "/review/queue/priority"
    ][1:]  # the warm-up
    page = stats(server_ms)
    figures.update(
        review_page_server_ms=page,
        review_page_wall_ms=stats(wall),
        distinct_pairs_shown=len(set(shown)),
        livez_wall_ms=stats(floor),
        tier_by_person_id_wall_ms=stats(tier),
        ratio_review_p95_to_tier_p95=round(page["p95"] / stats(tier)["p95"], 2)
        if page["p95"]
        else None,
        target_review_p95_ms=300,
    )
    return figures


def link_report(folder: Path, url: str) -> dict:
    html, js = folder / "report.html", folder / "report.json"
    _, seconds = ipvi(
        ["link-report", "--html", str(html), "--json", str(js)], {"IPVI_DATABASE_URL": url}
    )
    return {
        "link_report_s": round(seconds, 2),
        "link_report_html_bytes": html.stat().st_size,
        "target_link_report_s": 30,
        "report_html": str(html),
    }


def tier_list(folder: Path, persons: int, store: dict) -> tuple[dict, Path]:
    from ipvi.tables.training import scores
    from training.tier_list import build_list, write_list

    work = folder / "tiers"
    work.mkdir()
    url = f"sqlite:///{work / 'registry.sqlite'}"
    lists = work / "lists"
    config = work / "config.yaml"
    config.write_text(f"training: {{list_dir: '{lists}'}}\n")
    env = {
        "IPVI_DATABASE_URL": url,
        "MLFLOW_TRACKING_URI": store["tracking_uri"],
        "IPVI_CONFIG": str(config),
    }
    ipvi(["ingest", str(ROOT / "data_samples")], env)
    ipvi(["link", "--no-link-index"], env)
    ipvi(["score", "--all", "--as-of", "2024-06-01"], env)
    engine = create_engine(url)
    with engine.connect() as connection:
        scored = pd.read_sql(select(scores), connection)
    engine.dispose()
    copies = -(-persons // len(scored))
    big = pd.concat(
        [scored.assign(person_id=scored["person_id"] + f"-{k}") for k in range(copies)],
        ignore_index=True,
    ).head(persons)
    previous = big[["person_id", "tier", "band"]].sample(frac=0.9, random_state=0)
    started = time.perf_counter()
    rows = build_list(big, previous)
    _, html = write_list(rows, work, stem="big", title="benchmark tier list")
    seconds = time.perf_counter() - started
    return {
        "tier_list_persons": int(len(big)),
        "tier_list_html_bytes": html.stat().st_size,
        "tier_list_html_mb": round(html.stat().st_size / 1e6, 2),
        "tier_list_write_s": round(seconds, 2),
        "target_tier_list_mb": 25,
    }, html


def browser_open(html: Path, anchor: Path) -> dict:
    if not CHROMIUM.exists():
        return {"tier_list_open_s": None, "skipped": f"no Chromium at {CHROMIUM}"}
    from playwright.sync_api import sync_playwright

    out = {}
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        for name, path, ready in (
            ("linkage_report", anchor, "svg"),
            ("tier_list", html, "#rows tr"),
        ):
            page = browser.new_page()
            started = time.perf_counter()
            page.goto(path.as_uri(), wait_until="load", timeout=120_000)
            loaded = time.perf_counter() - started
            page.wait_for_selector(ready, timeout=120_000)
            out[f"{name}_open_s"] = round(time.perf_counter() - started, 3)
            out[f"{name}_load_event_s"] = round(loaded, 3)
            page.close()
        browser.close()
    out["target_tier_list_open_s"] = 3
    out["ratio_tier_list_open_to_report_open"] = round(
        out["tier_list_open_s"] / out["linkage_report_open_s"], 2
    )
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--registry", help="a linked registry URL (work on a copy: leases)")
    parser.add_argument("--persons", type=int, default=3000)
    parser.add_argument("--pages", type=int, default=200)
    parser.add_argument("--tier-persons", type=int, default=100_000)
    args = parser.parse_args()
    if args.quick:
        args.persons, args.pages, args.tier_persons = 800, 30, 5000
    figures: dict = {"benchmark": "review", "cpus": os.cpu_count(), "load": os.getloadavg()[0]}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        url = args.registry or generated_registry(folder, args.persons)
        engine = open_registry(url)
        with engine.connect() as connection:
            figures["registry_mentions"] = connection.execute(
                text("SELECT count(*) FROM mentions")
            ).scalar()
        engine.dispose()
        report = link_report(folder, url)
        anchor = Path(report.pop("report_html"))
        figures.update(report)
        store = toy_champion(folder / "model", persons=1000, reason="bench_review")
        figures.update(review_pages(folder, url, args.pages, store))
        tiers, html = tier_list(folder, args.tier_persons, store)
        figures.update(tiers)
        figures.update(browser_open(html, anchor))
        shutil.rmtree(folder / "tiers", ignore_errors=True)
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
