"""``ipvi purge --person-id`` reaches every copy, on a registry built by the real pipeline with a
server running: afterwards ``ipvi purge --verify`` finds nothing, an independent search of every
file and every table the project writes finds neither the person id nor any of its record ids,
and ``/v1/link`` stops returning the person at once.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from pathlib import Path

import httpx
import pytest
from sqlalchemy import MetaData, Table, inspect, select, text

from ipvi.cli import main
from ipvi.db import make_engine
from ipvi.site_key import SiteKey
from ipvi.tables.linkage import crosswalk, review_pairs
from ipvi.tables.monitoring import issued_scores
from ipvi.tables.serving import decisions
from ipvi.tables.training import model_training_persons, scores
from serving.schemas import DECISION_EXAMPLE
from tests.conftest import TEST_SITE_KEY
from tests.pipeline_support import fresh_keys, identifiers, victim_share

pytestmark = [pytest.mark.security, pytest.mark.service, pytest.mark.slow]


def _whole(values) -> re.Pattern:
    """Any of ``values`` as a whole identifier (``PD-12`` does not match inside ``PD-123``)."""
    alternatives = b"|".join(re.escape(v.encode()) for v in sorted(values, key=len, reverse=True))
    return re.compile(rb"(?<![A-Za-z0-9_.:-])(?:" + alternatives + rb")(?![A-Za-z0-9_:-])")


def _files_naming(folder: Path, pattern: re.Pattern, skip: Path) -> list[str]:
    found = []
    for path in folder.rglob("*"):
        if path.is_file() and skip not in path.parents and pattern.search(path.read_bytes()):
            found.append(str(path.relative_to(folder)))
    return found


def _tables_naming(url: str, pattern: re.Pattern) -> list[str]:
    engine = make_engine(url)
    found = []
    try:
        for name in inspect(engine).get_table_names():
            table = Table(name, MetaData(), autoload_with=engine)
            with engine.connect() as connection:
                for row in connection.execute(select(table)):
                    if pattern.search(json.dumps(list(row), default=str).encode()):
                        found.append(name)
                        break
    finally:
        engine.dispose()
    return found


def test_a_purged_person_is_found_nowhere(pipeline, pipeline_server, monkeypatch, capsys):
    folder, url = pipeline["folder"], pipeline["url"]
    for name, value in pipeline["env"].items():  # the commands run in this process
        monkeypatch.setenv(name, value)

    def ipvi(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = main(list(args))
        out, err = capsys.readouterr()
        return code, out, err

    keys = fresh_keys(url, ["scoring", "admin"])
    # Every copy the probe found: a tier list, a review export among the reports, scores,
    # a decision with a reason, audit rows, MLflow's list of trained persons, the link index.
    assert ipvi("score", "--all", "--as-of", "2026-01-01")[0] == 0
    engine = make_engine(url)
    with engine.connect() as connection:
        listed = set(connection.execute(select(scores.c.person_id)).scalars())
        reviewed = set(
            connection.execute(
                select(crosswalk.c.person_id).join(
                    review_pairs, review_pairs.c.record_id_a == crosswalk.c.record_id
                )
            ).scalars()
        )
    with engine.connect() as connection:
        offenders = set(connection.execute(victim_share(upper=0.5)).scalars())
        trained = set(connection.execute(select(model_training_persons.c.person_hash)).scalars())
    key = SiteKey(TEST_SITE_KEY.encode())
    chosen = sorted(p for p in listed & reviewed & offenders if key.pseudonym(p) in trained)
    person, body = identifiers(engine, crosswalk.c.person_id == chosen[0])
    with engine.connect() as connection:
        records = set(
            connection.execute(
                select(crosswalk.c.record_id).where(crosswalk.c.person_id == person)
            ).scalars()
        )
    engine.dispose()
    assert ipvi("review", "export", "--out", str(folder / "reports" / "review.csv"))[0] == 0
    server, admin = pipeline_server.url, keys["admin"]
    decision = {
        **DECISION_EXAMPLE,
        "decision_id": f"d-{uuid.uuid4().hex}",
        "person_id": person,
        "reason": "no names here",
    }
    assert httpx.post(f"{server}/v1/decision", json=decision, headers=admin).status_code == 200
    scored = httpx.post(f"{server}/v1/score", json={"person_ids": [person]}, headers=admin)
    assert scored.status_code == 200

    def linked() -> list[str]:
        answer = httpx.post(f"{server}/v1/link", json=body, headers=keys["scoring"])
        assert answer.status_code == 200, answer.text
        return [c["person_id"] for c in answer.json()["candidates"]]

    assert person in linked()
    # Both the list and the answer were kept as issued scores (the answer through the spool).
    deadline = time.monotonic() + 10
    while True:
        engine = make_engine(url)
        with engine.connect() as connection:
            sources = set(
                connection.execute(
                    select(issued_scores.c.source).where(issued_scores.c.person_id == person)
                ).scalars()
            )
        engine.dispose()
        if sources == {"api", "batch"} or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert sources == {"api", "batch"}
    pattern = _whole({person, *records})
    data = folder / "data"  # the agency extracts ipvi generate wrote: the input, not a copy
    assert _files_naming(folder, pattern, data) and _tables_naming(url, pattern)
    code, out, _ = ipvi("purge", "--verify", person)
    assert code == 1 and "table crosswalk" in out

    code, out, err = ipvi("purge", "--person-id", person, "--reason", "court order 22", "--json")
    assert code == 0, err
    summary = json.loads(out.splitlines()[-1])
    assert person not in linked()  # at once: the server checks each answer against the registry
    assert summary["tier_lists_rewritten"] == 1
    assert summary["reports_redacted"] == [str(folder / "reports" / "review.csv")]
    assert summary["database_compacted"] is True

    code, out, err = ipvi("purge", "--verify", person)
    assert code == 0, out + err
    assert "found nowhere" in err
    time.sleep(1)  # audit rows of the last requests flushed
    assert _files_naming(folder, pattern, data) == []
    assert _tables_naming(url, pattern) == []
    # What is kept names no one: decisions point to the tombstone, without their reason...
    engine = make_engine(url)
    with engine.connect() as connection:
        kept = connection.execute(
            select(decisions.c.person_id, decisions.c.reason).where(
                decisions.c.decision_id == decision["decision_id"]
            )
        ).one()
        pseudonym = key.pseudonym(person)
        still_trained = connection.execute(
            select(model_training_persons).where(model_training_persons.c.person_hash == pseudonym)
        ).all()
        tombstones = connection.execute(text("SELECT count(*) FROM purge_tombstones")).scalar()
    engine.dispose()
    assert kept == (f"purged:{summary['tombstone_id']}", None) and tombstones >= 1
    assert still_trained == []
    assert summary["model_versions_to_retrain"] == [pipeline["store"]["model_version"]]
    # ...and MLflow's list of the persons a version was trained on lost the person too.
    for path in (folder / "mlartifacts").rglob("trained_persons.json"):
        assert pseudonym not in path.read_text()
