"""Purge: source rows removed in one transaction, a tombstone without identifiers, never
ingested again, and later stages' steps run in the same transaction."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from ingest.load import ingest_directory
from ingest.purge import purge_step
from ipvi.cli import main
from ipvi.config import load_config
from ipvi.db import open_registry, session_scope
from ipvi.errors import IpviError
from ipvi.purge import Purge, PurgeTarget
from ipvi.site_key import SiteKey
from ipvi.tables.ingest import (
    event_versions,
    events,
    field_issues,
    mention_versions,
    mentions,
    purge_tombstones,
    purged_records,
    quarantine,
)
from tests.conftest import TEST_SITE_KEY
from tests.fixtures.ingest_extracts import rows_of, write_csv, write_extracts
from workflows.purge import database_steps


@pytest.fixture
def loaded(db_url, tmp_path):
    """A registry holding the fixtures, with PD-1003 re-extracted once (two versions)."""
    engine = open_registry(db_url)
    folder = write_extracts(tmp_path / "x")
    config = load_config().ingest
    ingest_directory(engine, folder, config)
    police = rows_of("police")
    police[2] = {**police[2], "ADDRESS": "1 New Rd"}
    write_csv(folder / "police_incidents.csv", police)
    ingest_directory(engine, folder, config)
    yield engine, folder, config
    engine.dispose()


def _ids(engine, column) -> set:
    with engine.connect() as connection:
        return set(connection.execute(select(column)).scalars())


KEY = SiteKey(secret=TEST_SITE_KEY.encode())


def _purge(engine, *record_ids, reason="court order 2026-17", steps=None):
    with session_scope(engine) as session:
        return Purge(steps=steps or [purge_step], key=KEY).run(
            session, PurgeTarget(record_ids=record_ids), reason=reason
        )


def test_purge_removes_the_record_its_history_issues_and_orphan_events(loaded):
    engine, _, _ = loaded
    result = _purge(engine, "PD-1003")
    assert result.counts == {
        "mentions": 1,
        "mention_versions": 1,
        "field_issues": 2,  # the DOB issue of each version
        "quarantine": 0,
        "events": 1,
        "event_versions": 0,
        "victim_links_cleared": 0,
    }
    assert "PD-1003" not in _ids(engine, mentions.c.record_id)
    assert "PD-1003" not in _ids(engine, mention_versions.c.record_id)
    assert "PD-1003" not in _ids(engine, field_issues.c.record_id)
    assert "PD-I-3" not in _ids(engine, events.c.event_id)


def test_shared_event_stays_and_victim_pointer_is_cleared(loaded):
    engine, _, _ = loaded
    result = _purge(engine, "PD-1002")  # the victim of incident PD-I-1
    assert result.counts["events"] == 0  # the offender's mention still refers to it
    assert result.counts["victim_links_cleared"] >= 1
    with engine.connect() as connection:
        incident = connection.execute(select(events).where(events.c.event_id == "PD-I-1")).one()
        pointers = set(connection.execute(select(event_versions.c.victim_record_id)).scalars())
    assert incident.victim_record_id is None
    assert "PD-1002" not in pointers


def test_quarantined_rows_of_the_record_are_removed(loaded):
    engine, _, _ = loaded
    result = _purge(engine, "PD-1001")  # also has a quarantined duplicate row
    assert result.counts["quarantine"] == 1
    assert "PD-1001" not in _ids(engine, quarantine.c.record_id)


def test_tombstone_keeps_no_identifier(loaded):
    engine, _, _ = loaded
    _purge(engine, "PD-1003", reason="expunction order 55")
    with engine.connect() as connection:
        tombstone = connection.execute(select(purge_tombstones)).one()
        hashes = set(connection.execute(select(purged_records.c.record_hash)).scalars())
    stored = json.dumps([str(value) for value in tombstone])
    assert "1003" not in stored and "Alvarez" not in stored
    assert tombstone.reason == "expunction order 55"
    assert tombstone.record_count == 1 and tombstone.counts["mentions"] == 1
    assert hashes == {KEY.pseudonym("PD-1003")}


def test_purged_record_is_never_ingested_again(loaded):
    engine, folder, config = loaded
    _purge(engine, "PD-1003")
    with pytest.raises(IpviError, match="needs the site key"):
        ingest_directory(engine, folder, config)
    report = ingest_directory(engine, folder, config, key=KEY)
    assert report.by_reason["record_purged"] == 1
    assert report.rows_in == report.accepted + report.quarantined
    assert "PD-1003" not in _ids(engine, mentions.c.record_id)
    assert "PD-1003" not in _ids(engine, quarantine.c.record_id)


def test_a_failing_step_rolls_every_step_back(loaded):
    engine, _, _ = loaded
    calls = []

    def later_stage(session, target):
        calls.append(target)
        raise RuntimeError("linkage step failed")

    with pytest.raises(RuntimeError):
        _purge(engine, "PD-1003", steps=[purge_step, later_stage])
    assert [target.record_ids for target in calls] == [("PD-1003",)]
    assert "PD-1003" in _ids(engine, mentions.c.record_id)
    with engine.connect() as connection:
        assert (
            connection.execute(select(func.count()).select_from(purge_tombstones)).scalar_one() == 0
        )


def test_resolver_widens_the_target_for_every_step(loaded):
    engine, _, _ = loaded
    seen = []

    def person_records(session, target):  # what linkage does with its crosswalk
        return target.with_records(["PD-1004", "PD-1005"]) if target.person_id == "P-1" else target

    def record(session, target):
        seen.append(target.record_ids)
        return {"scores": 0}

    with session_scope(engine) as session:
        result = Purge(steps=[purge_step, record], key=KEY, resolvers=[person_records]).run(
            session, PurgeTarget(person_id="P-1"), reason="person expunged"
        )
    assert seen == [("PD-1004", "PD-1005")]
    assert result.record_count == 2 and result.counts["mentions"] == 2 and "scores" in result.counts
    assert not {"PD-1004", "PD-1005"} & _ids(engine, mentions.c.record_id)


def test_purge_needs_a_target_and_a_reason(loaded):
    engine, _, _ = loaded
    with pytest.raises(IpviError, match="at least one record id"):
        _purge(engine)
    with pytest.raises(IpviError, match="--reason"):
        _purge(engine, "PD-1003", reason="  ")


def _local_config(tmp_path, monkeypatch):
    """Every store the purge touches in ``tmp_path`` (not the project's .ipvi)."""
    config = tmp_path / "config.yaml"
    config.write_text(
        f"paths:\n  home: {tmp_path}\n  reports_dir: {tmp_path / 'reports'}\n"
        f"mlflow:\n  tracking_uri: sqlite:///{tmp_path / 'mlflow.db'}\n"
        f"training:\n  list_dir: {tmp_path / 'lists'}\n"
        f"serving:\n  audit_spool_dir: {tmp_path / 'spool'}\n"
    )
    monkeypatch.setenv("IPVI_CONFIG", str(config))


def test_cli_purge(db_url, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("IPVI_DATABASE_URL", db_url)
    _local_config(tmp_path, monkeypatch)
    folder = write_extracts(tmp_path / "x", agencies=("court",))
    assert main(["ingest", str(folder)]) == 0
    args = ["purge", "--record-id", "CT-C-1", "--record-id", "CT-C-2", "--reason", "correction"]
    assert main([*args, "--json"]) == 0
    payload = json.loads(capsys.readouterr().out.strip())
    assert payload["records"] == 2 and payload["counts"]["mentions"] == 2
    assert main(["purge", "--record-id", "CT-C-404", "--reason", "typo?"]) == 0
    assert "no rows for the given record id" in capsys.readouterr().err
    assert main(["purge", "--reason", "no target"]) == 2
    assert "--record-id ID (repeatable) or --person-id ID" in capsys.readouterr().err
    # Every stage contributes its step; the ingest rows go last, after what refers to them.
    modules = [getattr(step, "func", step).__module__ for step in database_steps(KEY)]
    assert modules == [
        "serving.audit_log",
        "serving.decisions",
        "training.issued",
        "training.store",
        "linkage.purge",
        "ingest.purge",
    ]


def test_cli_purge_warns_when_the_link_index_cannot_be_built(db_url, tmp_path, monkeypatch, capsys):
    from datetime import datetime

    from sqlalchemy import insert

    from ipvi.tables.linkage import linkage_runs

    _local_config(tmp_path, monkeypatch)
    monkeypatch.setenv("IPVI_DATABASE_URL", db_url)
    engine = open_registry(db_url)
    with session_scope(engine) as session:  # a run on record, but nothing linked to index
        session.execute(
            insert(linkage_runs).values(
                run_id="LR-empty", started_at=datetime(2026, 1, 1), status="succeeded"
            )
        )
    engine.dispose()
    assert main(["purge", "--record-id", "CT-C-404", "--reason", "typo?", "--json"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out.strip())["link_index"] is None
    assert (
        "warning: the service will build the link index itself: building the link index "
        "failed: error: no linked mentions in the registry" in err
    )
    assert not list((tmp_path / "spool").glob("link-index-*"))
