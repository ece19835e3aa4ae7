"""Faults over HTTP: the registry database goes silent, and the server is killed under load.

PostgreSQL sits behind a small TCP proxy that the test can switch to "black hole" (connections
accepted, nothing answered: the worst case, a hang rather than a refusal). Needs
IPVI_TEST_POSTGRES_URL.
"""

from __future__ import annotations

import asyncio
import signal
import threading
import time
import uuid

import httpx
import pytest
from sqlalchemy import func, select, text
from sqlalchemy.engine import make_url

from ipvi.db import make_engine, open_registry, session_scope
from ipvi.tables.serving import audit_log
from serving.audit_log import verify_chain
from serving.auth import add_key
from serving.launch import ServerProcess, free_port
from serving.schemas import DECISION_EXAMPLE, SCORE_EXAMPLE
from tests.conftest import POSTGRES_URL, _postgres_schema_url
from tests.serving_support import add_person, champion_store, write_config

pytestmark = [
    pytest.mark.faults,
    pytest.mark.service,
    pytest.mark.postgres,
    pytest.mark.skipif(not POSTGRES_URL, reason="IPVI_TEST_POSTGRES_URL not set"),
]


class SwitchableProxy:
    """A TCP proxy in a thread: forwards to ``target`` or, switched off, swallows everything."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self.forwarding = True
        self._writers: set[asyncio.StreamWriter] = set()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()
        self._ready.wait(5)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(
            asyncio.start_server(self._handle, "127.0.0.1", self.port)
        )
        self._server = server
        self._ready.set()
        self._loop.run_forever()

    async def _pipe(self, reader, writer) -> None:
        try:
            while data := await reader.read(65536):
                while not self.forwarding:  # black hole: hold the bytes, answer nothing
                    await asyncio.sleep(0.05)
                writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def _handle(self, client_reader, client_writer) -> None:
        self._writers.add(client_writer)
        while not self.forwarding:
            await asyncio.sleep(0.05)
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
        except OSError:
            client_writer.close()
            return
        self._writers.add(upstream_writer)
        await asyncio.gather(
            self._pipe(client_reader, upstream_writer), self._pipe(upstream_reader, client_writer)
        )

    def black_hole(self) -> None:
        self.forwarding = False

    def restore(self) -> None:
        """Forward again; connections that were held are closed, as after a real outage."""

        def close_all():
            for writer in list(self._writers):
                writer.close()
            self._writers.clear()
            self.forwarding = True

        self._loop.call_soon_threadsafe(close_all)
        time.sleep(0.2)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    folder = tmp_path_factory.mktemp("faults")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = make_engine(POSTGRES_URL)
    with admin.begin() as connection:
        connection.execute(text(f"CREATE SCHEMA {schema}"))
    direct_url = _postgres_schema_url(schema)
    engine = open_registry(direct_url)
    target = make_url(POSTGRES_URL)
    proxy = SwitchableProxy(target.host or "127.0.0.1", target.port or 5432)
    proxied_url = (
        make_url(direct_url)
        .set(host="127.0.0.1", port=proxy.port)
        .render_as_string(hide_password=False)
    )
    store = champion_store(tmp_path_factory.getbasetemp())
    config = write_config(folder, proxied_url)
    with session_scope(engine) as session:
        key = add_key(session, name="desk", role="scoring")
    add_person(engine, DECISION_EXAMPLE["person_id"])
    env = {
        "IPVI_CONFIG": str(config),
        "IPVI_DATABASE_URL": proxied_url,
        "MLFLOW_TRACKING_URI": store["tracking_uri"],
    }
    yield {"folder": folder, "engine": engine, "proxy": proxy, "env": env, "key": key}
    engine.dispose()
    with admin.begin() as connection:
        connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))
    admin.dispose()


def _post_decision(client: httpx.Client, url: str, key: str) -> httpx.Response:
    body = {**DECISION_EXAMPLE, "decision_id": f"d-{uuid.uuid4().hex}"}
    return client.post(f"{url}/v1/decision", json=body, headers={"Authorization": f"Bearer {key}"})


def _audit_rows(engine) -> int:
    with session_scope(engine) as session:
        return session.scalar(
            select(func.count()).select_from(audit_log).where(audit_log.c.key_name == "desk")
        )


def test_unreachable_database_gives_503_within_2_s_and_audit_rows_survive(setup, site_key):
    proxy, engine = setup["proxy"], setup["engine"]
    log = setup["folder"] / "server-outage.log"
    with ServerProcess(env=setup["env"], log_path=log) as server, httpx.Client(timeout=10) as c:
        assert _post_decision(c, server.url, setup["key"]).status_code == 200
        proxy.black_hole()
        answers = []
        for _ in range(5):
            started = time.perf_counter()
            response = _post_decision(c, server.url, setup["key"])
            answers.append((response.status_code, time.perf_counter() - started))
            assert response.status_code == 503, response.text
            assert int(response.headers["retry-after"]) >= 1
        assert max(seconds for _, seconds in answers) < 2.0
        inline = c.post(
            f"{server.url}/v1/score",
            json=SCORE_EXAMPLE,
            headers={"Authorization": f"Bearer {setup['key']}"},
        )
        assert inline.status_code == 200, inline.text
        by_id = c.post(
            f"{server.url}/v1/score",
            json={"person_ids": ["P000001"]},
            headers={"Authorization": f"Bearer {setup['key']}"},
        )
        assert by_id.status_code == 503
        assert httpx.get(f"{server.url}/readyz").json()["database"] == "unreachable or locked"
        proxy.restore()
        deadline = time.monotonic() + 15
        while _post_decision(c, server.url, setup["key"]).status_code != 200:
            assert time.monotonic() < deadline, server.tail()
            time.sleep(0.3)
    # 1 before, 5 during the outage, the probes after it, all in the log once
    assert _audit_rows(engine) >= 7
    with session_scope(engine) as session:
        assert verify_chain(session, site_key).ok


@pytest.mark.slow
def test_kill_9_under_load_loses_at_most_one_second_of_audit_rows(setup, site_key):
    engine = setup["engine"]
    before = _audit_rows(engine)
    log = setup["folder"] / "server-kill.log"
    server = ServerProcess(env=setup["env"], log_path=log).start()
    answered = 0
    started = time.monotonic()
    with httpx.Client(timeout=5) as client:
        while time.monotonic() - started < 3:
            if _post_decision(client, server.url, setup["key"]).status_code == 200:
                answered += 1
    rate = answered / (time.monotonic() - started)
    server.stop(sig=signal.SIGKILL)
    # The next start flushes what the killed worker left in its spool.
    with ServerProcess(env=setup["env"], log_path=log):
        deadline = time.monotonic() + 10
        while _audit_rows(engine) - before < answered and time.monotonic() < deadline:
            time.sleep(0.2)
    lost = answered - (_audit_rows(engine) - before)
    assert answered > 10
    assert lost <= max(1, rate)
    with session_scope(engine) as session:
        assert verify_chain(session, site_key).ok
