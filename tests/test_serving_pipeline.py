"""The service on a registry built by the real pipeline: generate, ingest, link, train, promote.

Covers what needs linked persons: scoring by person id (merged and split ids), parity with the
training run's ``evaluation_predictions``, and intake linking (rate limit, a new linkage run
picked up while serving); what it must not reveal is in tests/security. Slow: the pipeline
(shared with those modules, tests/pipeline_support.py) takes a few minutes on 2 cores.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pandas as pd
import pytest
from sqlalchemy import func, insert, select

from ipvi.db import make_engine, session_scope
from ipvi.errors import IpviError
from ipvi.tables.linkage import crosswalk, person_id_changes, persons
from serving.link_index import shared_index
from tests.cli_support import run_ipvi
from tests.pipeline_support import fresh_keys, identifiers, victim_share

pytestmark = [pytest.mark.service, pytest.mark.slow]

PARITY_ROWS = 200


@pytest.fixture(scope="module")
def server(pipeline_server):
    return pipeline_server


@pytest.fixture(scope="module")
def keys(pipeline, server):
    return fresh_keys(pipeline["url"], ["scoring", "advocate", "admin"])


def test_person_id_scores_match_the_training_runs_predictions(pipeline, server, keys):
    engine = make_engine(pipeline["url"])
    with engine.connect() as connection:
        expected = pd.read_sql(
            "SELECT * FROM evaluation_predictions ORDER BY index_event_id", connection
        )
    engine.dispose()
    compared = 0
    with httpx.Client(timeout=60, headers=keys["admin"]) as client:
        for row in expected.itertuples():
            as_of = pd.Timestamp(row.as_of).isoformat() + "Z"
            answer = client.post(
                f"{server.url}/v1/score", json={"person_ids": [row.person_id], "as_of": as_of}
            )
            assert answer.status_code == 200, answer.text
            [result] = answer.json()["results"]
            # The service scores the latest IPV offence known at the date; compare only where
            # that is the evaluation's index offence (a later one may fall in the decision lag).
            if result["index_event_id"] != row.index_event_id:
                continue
            assert abs(result["probability"] - row.probability) <= 1e-9
            assert (result["band"], result["tier"]) == (row.band, row.tier)
            assert result["tier_reasons"] == json.loads(row.tier_reasons)
            assert result["reason_codes"] == json.loads(row.reason_codes)
            assert result["model_version"] == pipeline["store"]["model_version"]
            assert result["mlflow_run_id"] == pipeline["store"]["run_id"]
            assert result["linkage_run_id"] and result["id_status"] == "current"
            assert result["audit_status"] == "forced"
            compared += 1
            if compared == PARITY_ROWS:
                break
    assert compared == PARITY_ROWS


def test_merged_ids_answer_for_their_survivor_and_split_ids_are_409(pipeline, server, keys):
    engine = make_engine(pipeline["url"])
    with engine.connect() as connection:
        survivor = connection.scalar(select(crosswalk.c.person_id).limit(1))
        parts = connection.execute(select(crosswalk.c.person_id).distinct().limit(3)).scalars()
        parts = list(parts)[1:]
        top = connection.scalar(select(func.max(persons.c.seq)))
    with session_scope(engine) as session:
        for offset, (retired, successors, kind) in enumerate(
            [("PMERGED001", [survivor], "merge"), ("PSPLIT0001", parts, "split")], start=1
        ):
            session.execute(
                insert(persons).values(
                    person_id=retired,
                    seq=top + offset,
                    status="retired",
                    successor_ids=successors,
                    created_run_id="test",
                    retired_run_id="test",
                )
            )
            for successor in successors:
                session.execute(
                    insert(person_id_changes).values(
                        run_id="test", retired_id=retired, successor_id=successor, kind=kind
                    )
                )
    engine.dispose()
    merged = httpx.post(
        f"{server.url}/v1/tier", json={"person_ids": ["PMERGED001"]}, headers=keys["scoring"]
    )
    assert merged.status_code == 200, merged.text
    [result] = merged.json()["results"] or [None]
    if result is not None:
        assert (result["person_id"], result["id_status"]) == (survivor, "merged")
        assert result["requested_id"] == "PMERGED001"
    split = httpx.post(
        f"{server.url}/v1/score", json={"person_ids": ["PSPLIT0001"]}, headers=keys["scoring"]
    )
    assert split.status_code == 409
    assert split.json()["successor_ids"] == sorted(parts)
    unknown = httpx.post(
        f"{server.url}/v1/score", json={"person_ids": ["PNOBODY"]}, headers=keys["scoring"]
    )
    assert unknown.status_code == 404 and unknown.json()["field"] == "person_ids.0"


def test_link_finds_the_person_without_revealing_stored_values(pipeline, server, keys):
    engine = make_engine(pipeline["url"])
    offenders = victim_share(upper=0.5)
    person, body = identifiers(engine, crosswalk.c.person_id.in_(offenders))
    engine.dispose()
    answer = httpx.post(f"{server.url}/v1/link", json=body, headers=keys["scoring"])
    assert answer.status_code == 200, answer.text
    found = answer.json()
    assert person in [c["person_id"] for c in found["candidates"]]
    assert found["linkage_run_id"]
    text = answer.text.lower()
    assert body["last_name"].lower() not in text and body["dob"] not in answer.text


def test_link_is_rate_limited_per_key(pipeline, server, keys):
    codes = [
        httpx.post(f"{server.url}/v1/link", json={"last_name": "x"}, headers=keys["scoring"])
        for _ in range(6)
    ]
    assert 429 in [c.status_code for c in codes]
    limited = next(c for c in codes if c.status_code == 429)
    assert int(limited.headers["retry-after"]) >= 1


def test_a_new_linkage_run_is_picked_up_within_60_s(pipeline, server):
    before = httpx.get(f"{server.url}/readyz").json()["linkage_run_id"]
    spool = pipeline["folder"] / "spool"
    summary = json.loads(run_ipvi(["link", "--json"], pipeline["env"]).splitlines()[-1])
    finished = time.monotonic()
    # The run built the index of its own state for the server, and removed the old one.
    assert Path(summary["link_index"]).parent == spool
    assert summary["run_id"] in summary["link_index"]
    assert list(spool.glob("link-index-*.pickle")) == [Path(summary["link_index"])]
    assert Path(summary["link_index"]).stat().st_mode & 0o777 == 0o600
    while httpx.get(f"{server.url}/readyz").json()["linkage_run_id"] == before:
        assert time.monotonic() - finished < 60, server.tail()
        time.sleep(1)
    assert httpx.get(f"{server.url}/readyz").json()["linkage_run_id"] == summary["run_id"]


def test_an_index_of_a_replaced_run_is_refused_and_not_kept(pipeline, tmp_path, monkeypatch):
    for name, value in pipeline["env"].items():
        monkeypatch.setenv(name, value)
    spool = tmp_path / "spool"
    with pytest.raises(IpviError, match="linkage run LR-replaced is no longer current"):
        shared_index(spool, "LR-replaced")
    assert not list(spool.glob("link-index-*"))
