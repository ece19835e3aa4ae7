"""Shared set-up of the serving tests: a real MLflow store with a champion, and a real server.

Training and registering the small model takes a while (mostly MLflow creating its store), so it
is built once per test session under pytest's base temporary folder and reused by every serving
test module; a file lock keeps parallel modules from building it twice.
"""

from __future__ import annotations

import fcntl
import json
from contextlib import contextmanager
from pathlib import Path

import yaml
from sqlalchemy import insert, select

from ipvi.db import open_registry, session_scope
from ipvi.tables.linkage import persons
from serving.auth import add_key
from serving.launch import ServerProcess
from synth.champion import toy_champion

TOY_PERSONS = 1000


def champion_store(base: Path) -> dict:
    """An MLflow store holding one toy model version promoted to ``champion`` (forced).

    Returns ``tracking_uri``, ``model_version`` and ``predictions`` (the run's test
    predictions, as JSON records, for parity checks).
    """
    folder = base / "serving-model"
    folder.mkdir(exist_ok=True)
    done = folder / "store.json"
    with open(folder / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            done.write_text(
                json.dumps(toy_champion(folder, persons=TOY_PERSONS, reason="serving tests"))
            )
    return json.loads(done.read_text())


def write_config(folder: Path, database_url: str, **serving) -> Path:
    """A configuration file for a test server (one worker, fast key and audit refresh) and
    the commands run beside it: every file they write goes into ``folder``."""
    settings = {
        "workers": 1,
        "key_cache_seconds": 1,
        "audit_flush_seconds": 0.2,
        "db_probe_seconds": 0.3,
        "audit_spool_dir": str(folder / "spool"),
        **serving,
    }
    path = folder / "config.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "database": {"url": database_url},
                "paths": {
                    "home": str(folder / "home"),
                    "reports_dir": str(folder / "reports"),
                    "audit_key_file": str(folder / "audit.key"),
                    "audit_checkpoint_file": str(folder / "audit-checkpoints.jsonl"),
                },
                "mlflow": {"artifact_location": str(folder / "mlartifacts")},
                "training": {"list_dir": str(folder / "lists")},
                "serving": settings,
            }
        )
    )
    return path


def add_keys(database_url: str, roles: list[str]) -> dict[str, str]:
    """One new key per role, by role."""
    engine = open_registry(database_url)
    try:
        with session_scope(engine) as session:
            return {role: add_key(session, name=f"test-{role}", role=role) for role in roles}
    finally:
        engine.dispose()


def add_person(engine, person_id: str) -> None:
    """A linked person the registry holds (as ``ipvi link`` leaves one): decisions need one."""
    with session_scope(engine) as session:
        seq = session.execute(select(persons.c.seq)).scalars().all()
        session.execute(
            insert(persons).values(
                person_id=person_id,
                seq=max(seq, default=0) + 1,
                status="active",
                created_run_id="LR-test",
            )
        )


@contextmanager
def running_server(folder: Path, store: dict, database_url: str, **serving):
    """A ``bentoml serve`` process for the test, stopped (gracefully) afterwards."""
    config = write_config(folder, database_url, **serving)
    env = {
        "IPVI_CONFIG": str(config),
        "IPVI_DATABASE_URL": database_url,
        "MLFLOW_TRACKING_URI": store["tracking_uri"],
    }
    with ServerProcess(env=env, log_path=folder / "server.log") as server:
        yield server
