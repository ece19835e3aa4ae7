"""A registry built by the real pipeline (generate, ingest, link, train, promote) and a server on
it, shared by the test modules that need linked persons (tests/conftest.py makes them session
fixtures: building it takes a few minutes on 2 cores).

Every store the pipeline writes (registry, MLflow store and artefacts, reports, tier lists, the
site key, the service's spool) is inside its folder, so a test can look through all of them.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

from sqlalchemy import case, func, select

from ipvi.db import open_registry, session_scope
from ipvi.tables.ingest import mentions
from ipvi.tables.linkage import crosswalk
from serving.auth import add_key
from tests.cli_support import run_ipvi
from tests.serving_support import write_config

PERSONS = 1500
# The server's settings, in the configuration every command reads too: `ipvi link` and
# `ipvi purge` build the link index into the server's spool folder, as in a deployment.
SERVER = {
    "link_refresh_seconds": 3,
    "link_rate_per_second": 0.5,
    "link_burst": 3,
    "reaudit_refresh_seconds": 1,
}


def build_pipeline(folder: Path) -> dict:
    """Generate, ingest, link, train and promote in ``folder``; the commands' environment."""
    url = f"sqlite:///{folder / 'registry.sqlite'}"
    config = write_config(folder, url, **SERVER)
    env = {
        "IPVI_DATABASE_URL": url,
        "MLFLOW_TRACKING_URI": f"sqlite:///{folder / 'mlflow.db'}",
        "IPVI_CONFIG": str(config),
    }
    run_ipvi(
        ["generate", "--persons", str(PERSONS), "--seed", "3", "--out", str(folder / "data")], env
    )
    run_ipvi(["ingest", str(folder / "data")], env)
    run_ipvi(["link"], env)
    trained = json.loads(run_ipvi(["train", "--json"], env).splitlines()[-1])
    run_ipvi(
        ["promote", trained["model_version"], "--force", "--reason", "serving pipeline test"],
        env,
    )
    store = {"tracking_uri": env["MLFLOW_TRACKING_URI"], **trained}
    return {"folder": folder, "env": env, "store": store, "url": url}


def fresh_keys(url: str, roles: list[str]) -> dict[str, dict[str, str]]:
    """A new key per role (its own rate-limit bucket), as request headers by role, once a test
    server (whose key cache refreshes every second) knows them."""
    engine = open_registry(url)
    try:
        with session_scope(engine) as session:
            keys = {
                role: {
                    "Authorization": "Bearer "
                    + add_key(session, name=f"{role}-{uuid.uuid4().hex[:8]}", role=role)
                }
                for role in roles
            }
    finally:
        engine.dispose()
    time.sleep(1.5)
    return keys


def victim_share(upper: float | None = None, lower: float | None = None):
    """Persons whose share of mentions as a victim is below ``upper`` and at least ``lower``."""
    as_victim = func.sum(case((mentions.c.role == "victim", 1), else_=0))
    conditions = []
    if upper is not None:
        conditions.append(as_victim < upper * func.count())
    if lower is not None:
        conditions.append(as_victim >= lower * func.count())
    return (
        select(crosswalk.c.person_id)
        .join(mentions, mentions.c.record_id == crosswalk.c.record_id)
        .group_by(crosswalk.c.person_id)
        .having(*conditions)
    )


def identifiers(engine, condition) -> tuple[str, dict]:
    """A person and the identifiers of one of its mentions, as intake would send them."""
    with engine.connect() as connection:
        row = connection.execute(
            select(crosswalk.c.person_id, mentions)
            .join(mentions, mentions.c.record_id == crosswalk.c.record_id)
            .where(condition, mentions.c.first_name.is_not(None), mentions.c.dob_raw.is_not(None))
            .limit(1)
        ).first()
    fields = ("first_name", "last_name", "dob_raw", "sex", "zip")
    body = {name if name != "dob_raw" else "dob": getattr(row, name) for name in fields}
    return row.person_id, {k: v for k, v in body.items() if v is not None}
