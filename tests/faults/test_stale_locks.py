"""Locks whose holder died: a killed ``ipvi link`` no longer wedges linkage, a lock whose lease
ran out (its holder on another host) is named with the way out, and a live one is never broken.
Also: a server whose registry cannot be read (no keys) says it is not ready.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime, timedelta

import httpx
import pytest
from sqlalchemy import insert, select

from ipvi.cli import main
from ipvi.config import load_config
from ipvi.db import open_registry
from ipvi.tables.linkage import linkage_lock, linkage_runs
from linkage.run import acquire_lock, release_lock
from serving.launch import ServerProcess
from tests.serving_support import champion_store, write_config
from tests.test_linkage_registry import insert_mentions

pytestmark = pytest.mark.faults

HOLD = """
import sys, time
from ipvi.db import make_engine
from linkage.run import acquire_lock
acquire_lock(make_engine(sys.argv[1]), "LR-killed")
print("held", flush=True)
time.sleep(600)
"""


@pytest.fixture
def registry(sqlite_url, monkeypatch):
    """A registry with a few hundred mentions to link, as ``ipvi link`` sees it."""
    from synth.mentions import generate_mentions

    engine = open_registry(sqlite_url)
    frame, _ = generate_mentions(200, seed=5)
    insert_mentions(engine, frame)
    monkeypatch.setenv("IPVI_DATABASE_URL", sqlite_url)
    yield engine
    engine.dispose()


def _holder(engine):
    with engine.connect() as connection:
        return connection.execute(select(linkage_lock)).mappings().first()


def _link(capsys, *args) -> tuple[int, str]:
    capsys.readouterr()
    code = main(["link", "--no-link-index", *args])
    return code, capsys.readouterr().err


def test_a_killed_link_run_does_not_wedge_linkage(registry, sqlite_url, capsys):
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, sqlite_url], stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout.readline().strip() == "held"
    holder.send_signal(signal.SIGKILL)  # as the probe killed `ipvi link`
    holder.wait()
    assert _holder(registry)["run_id"] == "LR-killed"
    code, err = _link(capsys)
    assert code == 0, err
    assert f"took over the lock of run LR-killed: process {holder.pid} on" in err
    assert _holder(registry) is None
    with registry.connect() as connection:
        assert connection.execute(select(linkage_runs.c.status)).scalars().all() == ["succeeded"]


def test_a_lock_whose_lease_ran_out_is_named_and_broken_on_request(registry, capsys):
    with registry.begin() as connection:  # a run on another host that stopped renewing
        connection.execute(
            insert(linkage_lock).values(
                name="linkage",
                run_id="LR-elsewhere",
                acquired_at=datetime.now() - timedelta(hours=2),
                host="another-host",
                pid=4242,
                process_started=0.0,
                lease_expires_at=datetime.now() - timedelta(minutes=5),
            )
        )
    code, err = _link(capsys)
    assert code == 2
    assert "linkage lock of run LR-elsewhere is stale (its lease expired at" in err
    assert "ipvi link --break-stale-lock" in err
    code, err = _link(capsys, "--break-stale-lock")
    assert code == 0, err
    assert "took over the lock of run LR-elsewhere: its lease expired" in err


def test_a_live_lock_is_never_broken(registry, capsys):
    lease = load_config().linkage.lock_lease_seconds
    acquire_lock(registry, "LR-live", lease_seconds=lease)
    try:
        code, err = _link(capsys, "--break-stale-lock")
        assert code == 2
        holder = f"process {os.getpid()} on {socket.gethostname()}"
        assert "linkage run LR-live is in progress since" in err and holder in err
        assert _holder(registry)["run_id"] == "LR-live"
    finally:
        release_lock(registry, "LR-live")


@pytest.mark.service
@pytest.mark.slow
def test_a_server_that_cannot_read_its_keys_is_not_ready(tmp_path, tmp_path_factory):
    damaged = tmp_path / "registry.sqlite"
    damaged.write_bytes(b"not a database, " * 256)
    url = f"sqlite:///{damaged}"
    store = champion_store(tmp_path_factory.getbasetemp())
    env = {
        "IPVI_CONFIG": str(write_config(tmp_path, url)),
        "IPVI_DATABASE_URL": url,
        "MLFLOW_TRACKING_URI": store["tracking_uri"],
    }
    log = tmp_path / "server.log"
    with ServerProcess(env=env, log_path=log, require_ready=False) as server:
        answer = httpx.get(f"{server.url}/readyz")
        time.sleep(0.5)
        again = httpx.get(f"{server.url}/readyz")
    for report in (answer, again):
        assert report.status_code == 503, report.text
        assert report.json()["status"] == "not ready"
        assert report.json()["api_keys_loaded"] is False
