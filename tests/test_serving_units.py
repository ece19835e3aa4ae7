"""Serving libraries in process: keys, the audit chain and its spool, decisions, middlewares."""

from __future__ import annotations

import asyncio
import functools
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError
from sqlalchemy import select, update

from ipvi.config import load_config
from ipvi.db import open_registry, session_scope
from ipvi.errors import IpviError
from ipvi.purge import PurgeTarget
from ipvi.schema import EVENT_COLUMNS
from ipvi.tables.serving import api_keys, audit_log, decisions
from serving.audit_log import AuditEntry, AuditSpool, append_entries, purge_step, verify_chain
from serving.auth import (
    AuthMiddleware,
    KeyCache,
    TokenBucket,
    active_keys,
    add_key,
    hash_key,
    list_keys,
    revoke_key,
)
from serving.connections import TRACKED_CONNECTIONS, ConnectionRecycleMiddleware
from serving.decisions import NO_ADVOCATE_WARNING, record_decision
from serving.http import ApiError
from serving.launch import ServerProcess, serve_command
from serving.limits import BodyLimitMiddleware
from serving.link_index import shared_index
from serving.schemas import DECISION_EXAMPLE, SCORE_EXAMPLE, DecisionRequest, ScoreRequest
from serving.scoring import history_frames
from tests.cli_support import ipvi
from tests.serving_support import add_person

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def engine(db_url):
    engine = open_registry(db_url)
    yield engine
    engine.dispose()


# --------------------------------------------------------------------------- keys


def test_keys_are_random_256_bit_and_stored_only_as_hashes(engine):
    with session_scope(engine) as session:
        key = add_key(session, name="intake-1", role="scoring")
        other = add_key(session, name="intake-2", role="advocate")
    assert key != other and len(key) >= 43  # 32 bytes, URL-safe base64
    with session_scope(engine) as session:
        stored = session.execute(select(api_keys)).mappings().all()
        listed = list_keys(session)
    assert {row["key_hash"] for row in stored} == {hash_key(key), hash_key(other)}
    assert key not in json.dumps([dict(row) for row in stored], default=str)
    assert [row["name"] for row in listed] == ["intake-1", "intake-2"]
    assert "key_hash" not in listed[0]


def test_key_names_and_roles_are_checked(engine):
    with session_scope(engine) as session:
        add_key(session, name="desk", role="admin")
    with pytest.raises(IpviError, match="role 'boss' is invalid"), session_scope(engine) as s:
        add_key(s, name="desk-2", role="boss")
    with pytest.raises(IpviError, match="already exists"), session_scope(engine) as s:
        add_key(s, name="desk", role="admin")
    with pytest.raises(IpviError, match="no active key named 'nobody'"), session_scope(engine) as s:
        revoke_key(s, name="nobody")


def test_key_cache_identifies_keys_and_drops_revoked_ones_on_refresh(engine):
    with session_scope(engine) as session:
        key = add_key(session, name="desk", role="advocate")

    def load():
        with session_scope(engine) as session:
            return active_keys(session)

    cache = KeyCache(load, refresh_seconds=30)
    cache.refresh()
    assert cache.identify(key).role == "advocate"
    assert cache.identify(key + "x") is None
    with session_scope(engine) as session:
        revoke_key(session, name="desk")
    assert cache.identify(key) is not None  # until the next refresh
    cache.refresh()
    assert cache.identify(key) is None


def test_token_bucket_allows_a_burst_then_limits():
    bucket = TokenBucket(rate=1.0, burst=3)
    assert [bucket.take("k") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take("k") > 0
    assert bucket.take("other") == 0.0


def test_token_bucket_is_shared_by_the_workers_of_one_server(tmp_path):
    # Two workers' buckets on one file: the burst is the server's, not each worker's.
    path = tmp_path / "rate_limits.sqlite"
    workers = [TokenBucket(rate=0.01, burst=4, path=path) for _ in range(2)]
    waits = [workers[i % 2].take("intake") for i in range(8)]
    assert waits[:4] == [0.0] * 4
    assert all(wait > 0 for wait in waits[4:])
    assert TokenBucket(rate=0.01, burst=4, path=path).take("other") == 0.0


def test_keys_add_prints_the_key_alone_on_the_last_line(tmp_path):
    env = {**os.environ, "IPVI_DATABASE_URL": f"sqlite:///{tmp_path / 'r.sqlite'}"}
    ipvi = [sys.executable, "-m", "ipvi.cli"]
    added = subprocess.run(
        [*ipvi, "keys", "add", "desk", "--role", "scoring"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert added.returncode == 0, added.stderr
    key = added.stdout.splitlines()[-1]
    assert added.stdout == key + "\n" and "desk" in added.stderr
    listed = subprocess.run(
        [*ipvi, "keys", "list"], capture_output=True, text=True, env=env, cwd=tmp_path
    )
    assert "desk\tscoring" in listed.stdout and key not in listed.stdout
    revoked = subprocess.run(
        [*ipvi, "keys", "revoke", "desk"], capture_output=True, text=True, env=env, cwd=tmp_path
    )
    assert revoked.returncode == 0 and "revoked" in listed.stdout + revoked.stderr
    again = subprocess.run(
        [*ipvi, "keys", "revoke", "desk"], capture_output=True, text=True, env=env, cwd=tmp_path
    )
    assert again.returncode == 2 and again.stderr.startswith("error: no active key")


# --------------------------------------------------------------------------- audit log


def test_audit_chain_detects_edits_and_deletions(engine, site_key):
    with session_scope(engine) as session:
        append_entries(
            session,
            [
                AuditEntry(endpoint="POST /v1/score", outcome="ok", person_ids=[f"P{i}"])
                for i in range(5)
            ],
            site_key,
        )
    with session_scope(engine) as session:
        assert verify_chain(session, site_key).ok
        assert verify_chain(session, site_key).rows == 5
        session.execute(update(audit_log).where(audit_log.c.seq == 3).values(outcome="edited"))
        assert verify_chain(session, site_key).first_bad_seq == 3
        session.rollback()
    with session_scope(engine) as session:
        session.execute(audit_log.delete().where(audit_log.c.seq == 5))
        report = verify_chain(session, site_key)
        assert not report.ok and report.first_bad_seq == 5


def test_purge_appends_a_chained_tombstone_and_keeps_rows(engine, site_key):
    ids = ("P000007", "PD-1")
    target = PurgeTarget(
        record_ids=("PD-1",),
        person_id="P000007",
        pseudonyms={value: site_key.pseudonym(value) for value in ids},
    )
    with session_scope(engine) as session:
        append_entries(session, [AuditEntry(endpoint="POST /v1/score", outcome="ok")], site_key)
        counts = purge_step(session, target, site_key)
    assert counts == {"audit_log": 0}
    with session_scope(engine) as session:
        rows = session.execute(select(audit_log).order_by(audit_log.c.seq)).mappings().all()
        assert verify_chain(session, site_key).ok
    assert [row["kind"] for row in rows] == ["request", "purge_tombstone"]
    assert rows[1]["person_ids"] == [site_key.pseudonym(value) for value in ids]
    assert "P000007" not in json.dumps(dict(rows[1]), default=str)


def test_spool_keeps_rows_while_the_database_is_unreachable_and_flushes_them_once(
    engine, tmp_path, site_key
):
    target = {"engine": None}

    def unreachable():
        raise ConnectionError("database down")

    spool = AuditSpool(tmp_path / "spool", lambda: target["engine"] or unreachable(), site_key, 0.1)
    entries = [AuditEntry(endpoint="POST /v1/tier", outcome="ok") for _ in range(3)]
    for entry in entries:
        spool.record(entry)
    with pytest.raises(ConnectionError):
        spool.flush()
    assert spool.pending_rows() == 3
    spool.record(AuditEntry(endpoint="POST /v1/tier", outcome="ok"))
    target["engine"] = engine
    assert spool.flush() == 4
    assert spool.pending_rows() == 0
    # A crash between commit and delete leaves a file behind: flushing it again adds nothing.
    leftover = tmp_path / "spool" / "spool-1-dead-1.pending"
    leftover.write_text("".join(json.dumps(e.__dict__) + "\n" for e in entries))
    assert spool.flush() == 0
    with session_scope(engine) as session:
        assert verify_chain(session, site_key).rows == 4


def test_spool_of_a_crashed_worker_is_flushed_by_another(engine, tmp_path, site_key):
    crashed = AuditSpool(tmp_path, lambda: engine, site_key, 0.1)
    crashed.record(AuditEntry(endpoint="POST /v1/link", outcome="ok"))
    os.close(crashed._fd)  # the process died: its lock is gone, its file stays
    survivor = AuditSpool(tmp_path, lambda: engine, site_key, 0.1)
    assert survivor.flush() == 1


# --------------------------------------------------------------------------- decisions


def test_decision_retry_is_a_no_op_and_reuse_is_a_conflict(engine):
    actions = load_config().serving.decision_actions
    add_person(engine, DECISION_EXAMPLE["person_id"])
    request = DecisionRequest(
        **{**DECISION_EXAMPLE, "advocate_contacted_before_notification": None}
    )
    record = functools.partial(
        record_decision, key_name="desk", actions=actions, clock_skew_seconds=300
    )
    with session_scope(engine) as session:
        first = record(session, request)
    with session_scope(engine) as session:
        again = record(session, request)
    assert (first["replayed"], again["replayed"]) == (False, True)
    assert first["warnings"] == again["warnings"] == [NO_ADVOCATE_WARNING]
    changed = request.model_copy(update={"action": "call_in"})
    with pytest.raises(ApiError) as conflict, session_scope(engine) as session:
        record(session, changed)
    assert conflict.value.status == 409
    with session_scope(engine) as session:
        assert session.execute(select(decisions)).mappings().one()["key_name"] == "desk"


# --------------------------------------------------------------------------- middlewares


async def _echo(scope, receive, send):
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    state = scope.get("state", {})
    payload = json.dumps({"size": len(body), "key": state.get("api_key_name")}).encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": payload})


def _client(app) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


def test_body_limit_answers_413_for_declared_and_streamed_bodies():
    app = BodyLimitMiddleware(_echo, max_bytes=1000)

    async def run():
        async with _client(app) as client:
            small = await client.post("/v1/score", content=b"x" * 1000)
            large = await client.post("/v1/score", content=b"x" * 1001)

            async def stream():
                for _ in range(5):
                    yield b"x" * 300

            streamed = await client.post("/v1/score", content=stream())

            empty = await client.post("/v1/score")
            form = await client.post(
                "/v1/score", content=b"a=1", headers={"content-type": "text/plain"}
            )
            return small, large, streamed, empty, form

    small, large, streamed, empty, form = asyncio.run(run())
    assert small.json()["size"] == 1000
    assert (large.status_code, streamed.status_code) == (413, 413)
    assert (empty.status_code, form.status_code) == (400, 415)


def test_keep_alive_connections_close_after_max_requests_each():
    app = ConnectionRecycleMiddleware(_echo, max_requests=3)
    off = ConnectionRecycleMiddleware(_echo, max_requests=0)

    async def run():
        clients = {
            port: httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app, client=("127.0.0.1", port)),
                base_url="http://t",
            )
            for port in (1001, 1002)
        }
        seen = {port: [] for port in clients}
        for _ in range(7):  # the two connections interleaved
            for port, client in clients.items():
                answer = await client.post("/v1/score", content=b"{}")
                assert answer.status_code == 200 and answer.json()["size"] == 2
                seen[port].append(answer.headers.get("connection"))
        async with _client(off) as client:
            never = [(await client.get("/livez")).headers.get("connection") for _ in range(5)]
        for client in clients.values():
            await client.aclose()
        return seen, never

    seen, never = asyncio.run(run())
    assert seen[1001] == [None, None, "close", None, None, "close", None]
    assert seen[1002] == seen[1001]  # each connection is counted on its own
    assert never == [None] * 5
    # Counts are kept for a bounded number of connections.
    many = ConnectionRecycleMiddleware(_echo, max_requests=10)

    async def many_connections():
        for port in range(TRACKED_CONNECTIONS + 50):
            transport = httpx.ASGITransport(app=many, client=("10.0.0.1", port))
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                await client.get("/livez")

    asyncio.run(many_connections())
    assert len(many.served_) == TRACKED_CONNECTIONS


def test_auth_middleware_statuses(engine):
    with session_scope(engine) as session:
        scoring = add_key(session, name="s", role="scoring")
        advocate = add_key(session, name="a", role="advocate")

    def load():
        with session_scope(engine) as session:
            return active_keys(session)

    cache = KeyCache(load, refresh_seconds=30)
    cache.refresh()
    buckets = {"/v1/link": TokenBucket(rate=0.01, burst=1)}
    app = AuthMiddleware(
        _echo,
        keys=lambda: cache,
        roles={"/v1/score": ["scoring"]},
        rate_limits=lambda: buckets,
    )

    async def run():
        async with _client(app) as client:
            codes = {
                "public": (await client.get("/readyz")).status_code,
                "missing": (await client.post("/v1/score")).status_code,
                "basic": (
                    await client.post("/v1/score", headers={"Authorization": f"Basic {scoring}"})
                ).status_code,
                "wrong_role": (
                    await client.post("/v1/score", headers={"Authorization": f"Bearer {advocate}"})
                ).status_code,
            }
            ok = await client.post("/v1/score", headers={"Authorization": f"Bearer {scoring}"})
            link = [
                (
                    await client.post("/v1/link", headers={"Authorization": f"Bearer {advocate}"})
                ).status_code
                for _ in range(2)
            ]
            return codes, ok, link

    codes, ok, link = asyncio.run(run())
    assert codes == {"public": 200, "missing": 401, "basic": 401, "wrong_role": 403}
    assert ok.json()["key"] == "s"
    assert link == [200, 429]


# --------------------------------------------------------------------------- ipvi serve


def _ipvi(args: list[str], tmp_path, **env) -> subprocess.CompletedProcess:
    return ipvi(
        args,
        {"IPVI_DATABASE_URL": f"sqlite:///{tmp_path / 'r.sqlite'}", **env},
        timeout=120,
        cwd=tmp_path,
    )


def test_serve_refuses_a_public_address_without_tls(tmp_path):
    refused = _ipvi(["serve", "--host", "0.0.0.0"], tmp_path)
    assert refused.returncode == 2
    assert "without TLS" in refused.stderr and "--insecure" in refused.stderr
    half = _ipvi(["serve", "--host", "0.0.0.0", "--ssl-certfile", "cert.pem"], tmp_path)
    assert half.returncode == 2 and "--ssl-keyfile" in half.stderr


def test_serve_refuses_to_start_without_a_champion(tmp_path):
    empty_store = f"file://{tmp_path / 'mlruns'}"
    refused = _ipvi(["serve"], tmp_path, MLFLOW_TRACKING_URI=empty_store)
    assert refused.returncode == 2
    assert "ipvi train" in refused.stderr and "champion" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_bentoml_serve_also_refuses_to_start_without_a_champion(tmp_path):
    env = {
        **os.environ,
        "IPVI_DATABASE_URL": f"sqlite:///{tmp_path / 'r.sqlite'}",
        "MLFLOW_TRACKING_URI": f"file://{tmp_path / 'mlruns'}",
    }
    bentoml = Path(sys.executable).with_name("bentoml")
    refused = subprocess.run(
        [str(bentoml), "serve", "--port", "1"],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO_ROOT,
        timeout=120,
    )
    assert refused.returncode != 0
    assert "train one with `ipvi train`" in refused.stdout + refused.stderr


# --------------------------------------------------------------------------- inline histories


def test_inline_histories_become_canonical_frames_with_victims_linked():
    example = SCORE_EXAMPLE["histories"][0]
    partner = {
        "person_id": "partner-1",
        "events": [
            {
                "event_id": "PD-PARTNER-1",
                "agency": "police",
                "event_type": "incident",
                "role": "suspect",
                "offense_date": "2024-01-05T21:00:00-05:00",
                "recorded_at": "2024-01-06T08:00:00Z",
                "ipv": True,
                "victim_id": example["person_id"],  # a dual arrest: the subject is the victim
            }
        ],
    }
    request = ScoreRequest.model_validate_json(json.dumps({"histories": [example, partner]}))
    events, mentions, crosswalk = (table.to_frame() for table in history_frames(request.histories))
    n_events = len(example["events"]) + 1
    with_victim = [e for e in [*example["events"], *partner["events"]] if e.get("victim_id")]
    assert len(events) == n_events and list(events.columns) == list(EVENT_COLUMNS)
    assert len(mentions) == len(crosswalk) == n_events + len(with_victim)
    links = dict(zip(crosswalk["record_id"], crosswalk["person_id"], strict=True))
    assert links["PD-PARTNER-1"] == "partner-1"
    assert links["PD-PARTNER-1#victim"] == example["person_id"]
    partner_event = events.set_index("event_id").loc["PD-PARTNER-1"]
    # Offsets become naive UTC; flags are booleans.
    assert partner_event["offense_date"] == pd.Timestamp("2024-01-06 02:00:00")
    assert events["ipv"].dtype == bool
    assert partner_event["victim_record_id"] == "PD-PARTNER-1#victim"


def test_request_dates_outside_the_registry_range_are_refused_naming_the_field():
    history = SCORE_EXAMPLE["histories"][0]
    first = history["events"][0]
    for when, ok in [
        ("1899-12-31T23:59:59Z", False),
        ("1900-01-01T00:00:00Z", True),
        ("2099-12-31T23:59:59.999999+05:00", True),
        ("2150-06-01T12:00:00", False),
    ]:
        body = {"histories": [{**history, "events": [{**first, "recorded_at": when}]}]}
        if ok:
            ScoreRequest.model_validate_json(json.dumps(body))
            continue
        with pytest.raises(ValidationError) as refused:
            ScoreRequest.model_validate_json(json.dumps(body))
        (error,) = refused.value.errors()
        assert error["loc"] == ("histories", 0, "events", 0, "recorded_at")
        assert when not in str(refused.value)  # errors never repeat the input


def test_inline_histories_refuse_repeated_ids_naming_the_field():
    example = SCORE_EXAMPLE["histories"][0]
    twice = ScoreRequest.model_validate_json(json.dumps({"histories": [example, example]}))
    with pytest.raises(ApiError) as person:
        history_frames(twice.histories)
    assert person.value.status == 422 and person.value.field == "histories.1.person_id"
    other = {**example, "person_id": "someone-else"}
    shared = ScoreRequest.model_validate_json(json.dumps({"histories": [example, other]}))
    with pytest.raises(ApiError) as event:
        history_frames(shared.histories)
    assert event.value.field == "histories.1.events.0.event_id"
    # The position counts within its own history, not across the request.
    later = {
        **other,
        "events": [{**e, "event_id": f"{e['event_id']}-own"} for e in other["events"]]
        + [example["events"][1]],
    }
    shared_later = ScoreRequest.model_validate_json(json.dumps({"histories": [example, later]}))
    with pytest.raises(ApiError) as event:
        history_frames(shared_later.histories)
    assert event.value.field == f"histories.1.events.{len(other['events'])}.event_id"


def test_a_link_index_that_cannot_be_built_is_a_clear_error_and_leaves_no_file(
    sqlite_url, tmp_path, monkeypatch
):
    open_registry(sqlite_url).dispose()  # migrated, nothing linked
    monkeypatch.setenv("IPVI_DATABASE_URL", sqlite_url)
    folder = tmp_path / "spool"
    with pytest.raises(IpviError, match="building the link index failed: .*no linked mentions"):
        shared_index(folder, "LR-none")
    assert not list(folder.glob("link-index-*"))


def test_request_times_become_naive_utc():
    from serving.scoring import utc_naive_array

    given = [
        datetime(2024, 1, 5, 21, 0, 0, 123456, tzinfo=timezone(timedelta(hours=-5))),
        None,
        datetime(1901, 3, 1),  # naive: UTC already
        datetime(2099, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    ]
    expected = np.array(
        ["2024-01-06T02:00:00.123456", "NaT", "1901-03-01", "2099-12-31T23:59:59.999999"],
        dtype="datetime64[ns]",
    )
    np.testing.assert_array_equal(utc_naive_array(given), expected)


def test_served_keep_alive_outlasts_the_clients_idle_expiry():
    # A server that closes idle connections no later than its clients do races them: a client
    # sends on a connection as the server closes it (a read error under load).
    keep_alive = load_config().serving.keep_alive_seconds
    assert keep_alive > httpx.Limits(max_connections=1).keepalive_expiry
    command = serve_command("127.0.0.1", 3000, keep_alive)
    assert command[command.index("--timeout-keep-alive") + 1] == str(keep_alive)


def test_test_servers_take_the_keep_alive_of_their_configuration(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text("serving:\n  keep_alive_seconds: 33\n")
    server = ServerProcess(env={"IPVI_CONFIG": str(config)}, log_path=tmp_path / "log")
    command = server.command()
    assert command[command.index("--timeout-keep-alive") + 1] == "33"
