"""A write lock held on the registry while decisions arrive: every answer matches what the registry
and the audit log hold (no "503, retry later" that commits anyway), and /readyz says the
database cannot be written while the lock is held. A real server on a real SQLite file, its
deadline short so that 50 attempts straddle the lock's comings and goings in seconds.
"""

from __future__ import annotations

import random
import sqlite3
import threading
import time
import uuid
from collections import Counter

import httpx
import pytest
from sqlalchemy import select

from ipvi.db import open_registry, session_scope
from ipvi.tables.serving import audit_log, decisions
from serving.schemas import DECISION_EXAMPLE
from tests.pipeline_support import fresh_keys
from tests.serving_support import add_person, champion_store, running_server

pytestmark = [pytest.mark.faults, pytest.mark.service]

ATTEMPTS = 50
DEADLINE = 0.3  # serving.db_timeout_seconds of this server


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    folder = tmp_path_factory.mktemp("write-outcomes")
    path = folder / "registry.sqlite"
    url = f"sqlite:///{path}"
    engine = open_registry(url)
    add_person(engine, DECISION_EXAMPLE["person_id"])
    store = champion_store(tmp_path_factory.getbasetemp())
    settings = {"db_timeout_seconds": DEADLINE, "db_probe_seconds": 0.05, "retry_after_seconds": 1}
    with running_server(folder, store, url, **settings) as server:
        keys = fresh_keys(url, ["scoring"])
        yield {"server": server, "engine": engine, "path": path, "key": keys["scoring"]}
    engine.dispose()


class WriteLock:
    """Another process's write transaction on the SQLite file, taken and released on demand."""

    def __init__(self, path) -> None:
        self.connection = sqlite3.connect(
            path, isolation_level=None, timeout=10, check_same_thread=False
        )

    def take(self) -> None:
        self.connection.execute("BEGIN IMMEDIATE")

    def release(self) -> None:
        self.connection.execute("ROLLBACK")


def test_no_decision_is_both_answered_503_and_recorded(setup):
    server, lock = setup["server"], WriteLock(setup["path"])
    stop = threading.Event()
    rng = random.Random(22)

    def hold_and_release() -> None:
        # Held for about the service's deadline, so that a write often gets through just
        # after the request was answered: the case that used to commit a refused decision.
        while not stop.is_set():
            lock.take()
            time.sleep(rng.uniform(0.6, 1.6) * DEADLINE)
            lock.release()
            time.sleep(rng.uniform(0.0, 0.5) * DEADLINE)

    holder = threading.Thread(target=hold_and_release, daemon=True)
    answers: dict[str, int] = {}
    holder.start()
    try:
        with httpx.Client(timeout=30, headers=setup["key"]) as client:
            for _ in range(ATTEMPTS):
                body = {**DECISION_EXAMPLE, "decision_id": f"d-{uuid.uuid4().hex}"}
                answers[body["decision_id"]] = client.post(
                    f"{server.url}/v1/decision", json=body
                ).status_code
                time.sleep(rng.uniform(0, DEADLINE / 3))
    finally:
        stop.set()
        holder.join()
    counts = Counter(answers.values())
    assert set(counts) <= {200, 503} and counts[200] and counts[503], counts
    time.sleep(1.5)  # the audit spool reaches the database every 0.2 s (or after a retry)
    with session_scope(setup["engine"]) as session:
        stored = set(session.execute(select(decisions.c.decision_id)).scalars())
        outcomes = Counter(
            outcome.split(":")[0]
            for outcome in session.execute(
                select(audit_log.c.outcome).where(audit_log.c.endpoint == "POST /v1/decision")
            ).scalars()
        )
    assert stored == {d for d, status in answers.items() if status == 200}
    # One outcome per request, the one it was answered with.
    assert outcomes == {"recorded": counts[200], "refused": counts[503]}


def test_readyz_is_not_ready_while_a_write_lock_is_held(setup):
    server, lock = setup["server"], WriteLock(setup["path"])
    assert httpx.get(f"{server.url}/readyz").status_code == 200
    lock.take()
    try:
        held = httpx.get(f"{server.url}/readyz")
    finally:
        lock.release()
    assert held.status_code == 503
    assert held.json()["database"] == "unreachable or locked"  # SELECT 1 would say "ok"
    deadline = time.monotonic() + 10
    while httpx.get(f"{server.url}/readyz").status_code != 200:
        assert time.monotonic() < deadline, server.tail()
        time.sleep(0.2)
