"""The outside probe's findings, against a real server with two workers: unauthenticated growth
of metrics, memory and the audit log; /metrics behind a key; a second server on the host;
identifying ids and impossible dates; decisions for persons the registry does not hold; one
error form; readiness that reports the audit log's checks.
"""

from __future__ import annotations

import json
import random
import string
import time
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import psutil
import pytest
from sqlalchemy import func, select

from ipvi.cli import main
from ipvi.db import open_registry, session_scope
from ipvi.tables.serving import audit_log, decisions
from serving.launch import ServerProcess
from serving.schemas import DECISION_EXAMPLE, SCORE_EXAMPLE
from tests.pipeline_support import fresh_keys
from tests.serving_support import add_person, champion_store, running_server, write_config

pytestmark = [pytest.mark.security, pytest.mark.service]

PROBE_REQUESTS = 3000
KNOWN = "P-known-1"


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hardening")
    url = f"sqlite:///{folder / 'registry.sqlite'}"
    engine = open_registry(url)
    add_person(engine, KNOWN)
    store = champion_store(tmp_path_factory.getbasetemp())
    env = {
        "IPVI_DATABASE_URL": url,
        "MLFLOW_TRACKING_URI": store["tracking_uri"],
        "IPVI_CONFIG": str(write_config(folder, url, workers=2)),
    }
    yield {"folder": folder, "url": url, "engine": engine, "store": store, "env": env}
    engine.dispose()


@pytest.fixture(scope="module")
def server(registry):
    with running_server(registry["folder"], registry["store"], registry["url"], workers=2) as s:
        yield s


@pytest.fixture(scope="module")
def keys(registry, server):
    return fresh_keys(registry["url"], ["scoring", "monitoring", "admin"])


def _random_paths(url: str, n: int) -> None:
    with httpx.Client(base_url=url) as client:
        for _ in range(n):
            path = "/" + "/".join(
                "".join(random.choices(string.ascii_lowercase + string.digits, k=10))
                for _ in range(random.randint(1, 3))
            )
            assert client.get(path).status_code == 401


def _unaudited(metrics: str) -> float:
    for line in metrics.splitlines():
        if line.startswith("ipvi_unaudited_request_total "):
            return float(line.split()[1])
    return 0.0


def _audit_rows(engine) -> int:
    with session_scope(engine) as session:
        return session.scalar(select(func.count()).select_from(audit_log))


def _workers(server: ServerProcess) -> list[psutil.Process]:
    return psutil.Process(server.process.pid).children(recursive=True)


def test_random_paths_grow_neither_metrics_nor_memory_nor_the_audit_log(server, registry, keys):
    monitoring = keys["monitoring"]
    _random_paths(server.url, 300)  # first use of each code path, in each worker
    time.sleep(1)
    size = len(httpx.get(f"{server.url}/metrics", headers=monitoring).content)
    before = httpx.get(f"{server.url}/metrics", headers=monitoring).text
    rss = {p.pid: p.memory_info().rss for p in _workers(server)}
    rows = _audit_rows(registry["engine"])
    _random_paths(server.url, PROBE_REQUESTS)
    time.sleep(1)  # audit rows are flushed every 0.2 s
    after = httpx.get(f"{server.url}/metrics", headers=monitoring).text
    assert len(after.encode()) - size < 1024  # the probe: 5.8 KB -> 13.7 MB
    for process in _workers(server):
        grown = (process.memory_info().rss - rss[process.pid]) / 2**20
        assert grown < 5, f"worker {process.pid} grew {grown:.1f} MB"  # the probe: 41 MB
    # Counted, not audited: the log grows only with requests a key or a route stands behind.
    assert _unaudited(after) - _unaudited(before) == PROBE_REQUESTS
    assert _audit_rows(registry["engine"]) == rows
    assert '{endpoint="(unmatched)",http_response_code="401"}' in after


def test_metrics_need_a_monitoring_or_admin_key(server, keys):
    url = f"{server.url}/metrics"
    assert httpx.get(url).status_code == 401
    refused = httpx.get(url, headers=keys["scoring"])
    assert refused.status_code == 403 and "monitoring" in refused.json()["error"]
    for role in ("monitoring", "admin"):
        answer = httpx.get(url, headers=keys[role])
        assert answer.status_code == 200 and "ipvi_request_total" in answer.text


def test_a_second_server_on_the_host_leaves_the_first_ones_metrics(
    server, registry, keys, tmp_path
):
    monitoring = keys["monitoring"]
    _random_paths(server.url, 10)
    counted = _unaudited(httpx.get(f"{server.url}/metrics", headers=monitoring).text)
    config = write_config(tmp_path, registry["url"], workers=1)
    env = {**registry["env"], "IPVI_CONFIG": str(config)}
    # Same BENTOML_HOME (BentoML's metrics directory would be wiped and shared).
    with ServerProcess(env=env, log_path=tmp_path / "second.log") as second:
        _random_paths(second.url, 5)
        first = _unaudited(httpx.get(f"{server.url}/metrics", headers=monitoring).text)
        other = _unaudited(httpx.get(f"{second.url}/metrics", headers=monitoring).text)
    assert first == counted  # neither wiped nor mixed with the second server's
    assert other == 5
    _random_paths(server.url, 1)
    assert _unaudited(httpx.get(f"{server.url}/metrics", headers=monitoring).text) == counted + 1


def _history(**changes) -> dict:
    return {**SCORE_EXAMPLE, "histories": [{**SCORE_EXAMPLE["histories"][0], **changes}]}


def test_identifying_ids_and_impossible_dates_are_refused_naming_the_field(server, registry, keys):
    url, scoring = f"{server.url}/v1/score", keys["scoring"]
    identifying = "JOHN.ZEBULON.SMITHERS.1988-04-12"
    refused = httpx.post(url, json=_history(person_id=identifying), headers=scoring)
    assert refused.status_code == 422
    assert refused.json()["field"] == "histories.0.person_id"
    for dob, reason in (
        ("2064-04-12T00:00:00Z", "after as_of"),  # the probe: reason code "age -76"
        ("2019-01-01T00:00:00Z", "outside 10-110"),  # 5 at the as-of date
        ("1900-01-01T00:00:00Z", "outside 10-110"),  # 124
    ):
        answer = httpx.post(url, json=_history(dob=dob), headers=scoring)
        assert answer.status_code == 422, answer.text
        assert answer.json()["field"] == "histories.0.dob" and reason in answer.json()["error"]
        assert dob[:10] not in answer.text
    plausible = httpx.post(url, json=_history(dob="1988-04-12T00:00:00Z"), headers=scoring)
    assert plausible.status_code == 200
    time.sleep(1)  # audit rows are flushed every 0.2 s
    with session_scope(registry["engine"]) as session:
        logged = json.dumps(
            [dict(r) for r in session.execute(select(audit_log)).mappings()], default=str
        )
    assert identifying not in logged and "JOHN" not in logged
    assert identifying not in (registry["folder"] / "server.log").read_text()


@pytest.fixture
def commands_env(registry, monkeypatch):
    """The environment of the server, for ``ipvi`` commands run in this process."""
    for name, value in registry["env"].items():
        monkeypatch.setenv(name, value)


def test_decisions_need_a_person_the_registry_holds_and_a_past_date(
    server, registry, keys, commands_env
):
    url, scoring = f"{server.url}/v1/decision", keys["scoring"]

    def decide(**changes) -> httpx.Response:
        body = {**DECISION_EXAMPLE, "decision_id": f"d-{uuid.uuid4().hex}", **changes}
        return httpx.post(url, json=body, headers=scoring)

    unknown = decide(person_id="P-never-1")
    assert unknown.status_code == 404 and unknown.json()["field"] == "person_id"
    future = decide(person_id=KNOWN, decided_at="2099-01-01T00:00:00Z")
    assert future.status_code == 422 and future.json()["field"] == "decided_at"
    skewed = (datetime.now(UTC) + timedelta(seconds=60)).isoformat()
    assert decide(person_id=KNOWN, decided_at=skewed).status_code == 200  # clock skew
    assert decide(person_id=KNOWN, reason="no names here").status_code == 200
    with session_scope(registry["engine"]) as session:
        stored = session.execute(select(decisions.c.person_id)).scalars().all()
    assert set(stored) == {KNOWN}  # nothing of the refused ones
    # Purged: the person is gone, and so are the decisions' reason and the id itself.
    assert main(["purge", "--person-id", KNOWN, "--reason", "court order 7"]) == 0
    purged = decide(person_id=KNOWN)
    assert purged.status_code == 404 and purged.json()["field"] == "person_id"
    with session_scope(registry["engine"]) as session:
        kept = session.execute(select(decisions.c.person_id, decisions.c.reason)).all()
    assert len(kept) == 2 and {p for p, _ in kept} == {"purged:1"}
    assert {r for _, r in kept} == {None}


def test_schema_errors_are_422_naming_the_field_on_one_log_line(server, registry, keys):
    bad = _history(events=[{**SCORE_EXAMPLE["histories"][0]["events"][0], "role": "mayor"}])
    answer = httpx.post(f"{server.url}/v1/score", json=bad, headers=keys["scoring"])
    assert answer.status_code == 422
    assert answer.json()["field"] == "histories.0.events.0.role"
    assert "Input should be" in answer.json()["error"]
    log = (registry["folder"] / "server.log").read_text()
    assert "422 POST /v1/score: histories.0.events.0.role: Input should be" in log
    assert "Traceback" not in log and "ValidationError" not in log


def test_readyz_reports_the_audit_logs_last_verification_and_checkpoint(server, commands_env):
    report = httpx.get(f"{server.url}/readyz").json()
    assert report["status"] == "ready" and report["database"] == "ok"
    assert report["api_keys_loaded"] and report["link_index"] == "no linkage run"
    time.sleep(0.5)  # every answered request is in the log
    assert main(["audit-log", "checkpoint"]) == 0
    assert main(["audit-log", "verify"]) == 0
    audit = httpx.get(f"{server.url}/readyz").json()["audit_log"]
    assert audit["last_verification"]["ok"] is True
    assert audit["last_verification"]["first_bad_seq"] is None
    assert 0 <= audit["checkpoint_age_seconds"] < 60
