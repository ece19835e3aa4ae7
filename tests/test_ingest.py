"""Ingestion: every quarantine reason and field issue, canonical values, versions, idempotency.

The extracts are the hand-written fixtures of tests/fixtures/ingest_extracts.py (one row per
case, in all five agency formats); every test runs on SQLite and, when available, PostgreSQL.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from datetime import date, datetime

import pandas as pd
import pytest
from sqlalchemy import func, select

from ingest.load import ingest_directory
from ipvi.cli import main
from ipvi.config import load_config
from ipvi.db import open_registry
from ipvi.errors import ConfigError, IpviError
from ipvi.tables.ingest import (
    event_versions,
    events,
    field_issues,
    ingest_runs,
    mention_versions,
    mentions,
    quarantine,
)
from tests.fixtures.ingest_extracts import (
    AGENCIES,
    PO_GOOD,
    POLICE_GOOD,
    expected,
    rows_of,
    write_csv,
    write_extracts,
    write_large_probation,
)

ISSUE_TABLES = (mentions, mention_versions, events, event_versions, field_issues, quarantine)


@pytest.fixture
def config():
    return load_config().ingest


@pytest.fixture
def engine(db_url):
    engine = open_registry(db_url)
    yield engine
    engine.dispose()


def _expected_counts() -> tuple[Counter, dict[tuple[str, str], str]]:
    """Quarantine reasons and field issues (record id, field) -> problem the fixtures hold."""
    reasons: Counter = Counter({"malformed_row": 1})
    issues: dict[tuple[str, str], str] = {}
    for agency in AGENCIES:
        prefix = load_config().ingest.agencies[agency].record_prefix
        id_column = load_config().ingest.agencies[agency].columns["record_id"]
        for row, outcome in zip(rows_of(agency), expected(agency), strict=True):
            if ":" in outcome:
                field, problem = outcome.split(":")
                issues[(f"{prefix}-{row[id_column]}", field)] = problem
            elif outcome != "ok":
                reasons[outcome] += 1
    return reasons, issues


def _count(engine, table) -> int:
    with engine.connect() as connection:
        return connection.execute(select(func.count()).select_from(table)).scalar_one()


def _counts(engine) -> dict[str, int]:
    return {table.name: _count(engine, table) for table in ISSUE_TABLES}


def test_every_quarantine_reason_and_field_issue_is_counted_and_stored(engine, config, tmp_path):
    folder = write_extracts(tmp_path / "extracts")
    report = ingest_directory(engine, folder, config)

    reasons, issues = _expected_counts()
    rows_in = sum(len(AGENCIES[agency][2]) for agency in AGENCIES) + 1  # + the malformed line
    assert report.rows_in == rows_in == report.accepted + report.quarantined
    assert report.by_reason == dict(sorted(reasons.items()))
    assert report.quarantined == sum(reasons.values()) == 12
    assert report.accepted_with_issues == len(issues) == 11
    for agency_report in report.files.values():
        assert agency_report.rows_in == agency_report.accepted + agency_report.quarantined

    with engine.connect() as connection:
        stored_issues = {
            (row.record_id, row.field): row.problem
            for row in connection.execute(select(field_issues))
        }
        raw = {
            (row.record_id, row.field): row.raw_value
            for row in connection.execute(select(field_issues))
        }
        stored_reasons = Counter(connection.execute(select(quarantine.c.reason)).scalars())
        details = dict(connection.execute(select(quarantine.c.reason, quarantine.c.detail)).all())
        n_mentions = connection.execute(select(func.count()).select_from(mentions)).scalar_one()
    assert stored_issues == issues
    assert raw[("PD-1003", "dob")] == "13/45/1980"  # the raw value is kept in the database
    assert raw[("JL-B-2", "ssn_last4")] == "12a4"
    assert stored_reasons == reasons
    assert n_mentions == report.accepted
    assert details["offense_date_unparseable"] == "offense_date: unparseable"
    assert details["event_type_unknown"] == "event_type: unknown_code"
    assert details["duplicate_row"] == "row: repeats an earlier row of the file"
    assert details["record_id_conflict"] == "record_id: on rows with different content"
    assert details["malformed_row"] == "row: wrong number of columns"


def test_bad_field_is_nulled_but_its_row_kept(engine, config, tmp_path):
    ingest_directory(engine, write_extracts(tmp_path / "x"), config)
    with engine.connect() as connection:
        rows = {
            row.record_id: row
            for row in connection.execute(
                select(mentions).where(
                    mentions.c.record_id.in_(
                        ["PD-1003", "PD-1005", "PD-1006", "PD-1007", "PD-1008"]
                    )
                )
            )
        }
    assert rows["PD-1003"].dob is None and rows["PD-1003"].dob_raw == "13/45/1980"
    assert rows["PD-1005"].dob is None and rows["PD-1005"].dob_raw == "01/01/2015"
    assert rows["PD-1006"].phone is None and rows["PD-1006"].zip == "27260"
    assert rows["PD-1007"].zip is None and rows["PD-1007"].phone == "3365550142"
    assert rows["PD-1008"].sex is None


def test_canonical_values_of_each_format(engine, config, tmp_path):
    ingest_directory(engine, write_extracts(tmp_path / "x"), config)
    with engine.connect() as connection:
        m = {row.record_id: row for row in connection.execute(select(mentions))}
        e = {row.event_id: row for row in connection.execute(select(events))}
    offender = m["PD-1001"]
    assert (offender.first_name, offender.last_name, offender.dob) == (
        "Jose",
        "Alvarez",
        date(1985, 3, 14),
    )
    assert (offender.sex, offender.race, offender.ethnicity, offender.role) == (
        "male",
        "white",
        "hispanic",
        "suspect",
    )
    assert offender.phone == "3365550142" and offender.address_confidential is False
    assert m["PD-1002"].address_confidential is True and m["PD-1002"].role == "victim"
    incident = e["PD-I-1"]
    assert incident.event_type == "incident" and incident.case_ref == "K-100"
    assert incident.offense_date == datetime(2020, 6, 1, 22, 15)
    assert incident.recorded_at == datetime(2020, 6, 2, 8, 0)
    assert incident.strangulation is True and incident.weapon is False and incident.ipv is True
    # The victim's row leaves the victim column empty; the offender's row fills it.
    assert incident.victim_record_id == "PD-1002"

    maria = m["JL-B-1"]  # "GARCIA LOPEZ, MARIA ELENA": a double surname stays the surname
    assert (maria.first_name, maria.middle_name, maria.last_name, maria.suffix) == (
        "MARIA",
        "ELENA",
        "GARCIA LOPEZ",
        None,
    )
    assert maria.zip == "27262" and maria.ssn_last4 == "0123" and maria.role == "arrestee"
    john = m["JL-B-2"]  # "SMITH JR, JOHN PAUL"
    assert (john.first_name, john.middle_name, john.last_name, john.suffix) == (
        "JOHN",
        "PAUL",
        "SMITH",
        "JR",
    )
    assert e["JL-MV-2"].event_type == "custody_end"
    assert e["CT-E-2"].disposition == "convicted" and e["CT-E-2"].recorded_at == datetime(
        2020, 11, 1
    )
    assert e["CT-E-3"].disposition is None  # unknown code: a field issue
    po = m["PO-R-1"]  # "Jose Luis Alvarez"
    assert (po.first_name, po.middle_name, po.last_name) == ("Jose", "Luis", "Alvarez")
    assert e["PO-PO-1"].ipv is True and e["PO-PO-1"].victim_record_id == "PO-R-2"
    assert m["PO-R-2"].address_confidential is True
    assert e["PO-PO-3"].event_type == "order_violation"
    probation = m["PB-900"]
    assert probation.event_id == "PB-900" and probation.ssn_last4 is None
    assert e["PB-900"].event_type == "probation_start"


def test_reingest_of_unchanged_files_is_a_no_op(engine, config, tmp_path):
    folder = write_extracts(tmp_path / "x")
    first = ingest_directory(engine, folder, config)
    before = _counts(engine)
    second = ingest_directory(engine, folder, config)
    assert _counts(engine) == before
    assert _count(engine, ingest_runs) == 2  # at most one run-log row per ingest
    assert second.summary()["by_reason"] == first.summary()["by_reason"]
    for report in second.files.values():
        assert report.mentions_new == report.mentions_changed == 0
        assert report.mentions_unchanged == report.accepted
        assert report.quarantine_stored == report.field_issues_stored == 0
    with engine.connect() as connection:
        statuses = list(connection.execute(select(ingest_runs.c.status)).scalars())
    assert statuses == ["completed", "completed"]


def test_changed_content_makes_a_new_version_and_keeps_history(engine, config, tmp_path):
    folder = write_extracts(tmp_path / "x")
    ingest_directory(engine, folder, config)
    police = rows_of("police")
    police[0] = {**police[0], "ADDRESS": "99 Pine Rd", "PHONE": "bad"}  # PD-1001 moved
    police[17] = dict(police[0])  # keep the duplicate a duplicate
    write_csv(folder / "police_incidents.csv", police)
    court = rows_of("court")
    court[1] = {**court[1], "DISPOSITION": "DISMISSED"}  # a corrected disposition
    write_csv(folder / "court_cases.csv", court)

    report = ingest_directory(engine, folder, config)
    assert report.files["police"].mentions_changed == 1
    assert report.files["court"].events_changed == 1
    assert report.files["court"].mentions_changed == 0
    with engine.connect() as connection:
        current = connection.execute(
            select(mentions).where(mentions.c.record_id == "PD-1001")
        ).one()
        old = connection.execute(
            select(mention_versions).where(mention_versions.c.record_id == "PD-1001")
        ).one()
        issue = connection.execute(
            select(field_issues).where(field_issues.c.record_id == "PD-1001")
        ).one()
        event = connection.execute(select(events).where(events.c.event_id == "CT-E-2")).one()
        old_event = connection.execute(
            select(event_versions).where(event_versions.c.event_id == "CT-E-2")
        ).one()
    assert (current.version, current.street, current.phone) == (2, "99 Pine Rd", None)
    assert (old.version, old.street, old.phone) == (1, "12 Elm St", "3365550142")
    assert old.superseded_by_run_id == report.run_id == current.ingest_run_id
    assert (issue.version, issue.field, issue.problem) == (2, "phone", "invalid")
    assert (event.version, event.disposition) == (2, "dismissed")
    assert (old_event.version, old_event.disposition) == (1, "convicted")


def test_quarantined_row_is_stored_once_and_a_new_bad_row_is_added(engine, config, tmp_path):
    folder = write_extracts(tmp_path / "x")
    ingest_directory(engine, folder, config)
    stored = _count(engine, quarantine)
    police = rows_of("police") + [{**POLICE_GOOD, "RPT_PERSON_ID": "3000", "OCCURRED": "x"}]
    write_csv(folder / "police_incidents.csv", police)
    report = ingest_directory(engine, folder, config)
    assert report.files["police"].quarantine_stored == 1
    assert _count(engine, quarantine) == stored + 1
    assert report.by_reason["offense_date_unparseable"] == 2


def test_missing_file_is_skipped_with_a_warning(engine, config, tmp_path, caplog):
    folder = write_extracts(tmp_path / "x", agencies=("court", "probation"))
    with caplog.at_level(logging.INFO):
        report = ingest_directory(engine, folder, config)
    assert report.files["police"].status == "missing"
    assert report.files["court"].status == "loaded"
    assert report.accepted == 4
    assert any("police_incidents.csv not found" in warning for warning in report.warnings)
    assert "police_incidents.csv not found" in caplog.text


def test_mapping_column_missing_from_the_file_is_an_error_naming_both(engine, config, tmp_path):
    folder = write_extracts(tmp_path / "x")
    rows = [{k: v for k, v in row.items() if k != "DEF_DOB"} for row in rows_of("court")]
    write_csv(folder / "court_cases.csv", rows)
    with pytest.raises(IpviError, match=r"court_cases\.csv: missing column\(s\) DEF_DOB"):
        ingest_directory(engine, folder, config)
    assert _count(engine, mentions) == 0  # checked before anything is written


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty file"),
        (b"\n\n", "empty file"),
        (b"\xff\xfeP\x00O\x00\n", "not UTF-8 text"),  # UTF-16
        (",".join(PO_GOOD).encode() + b"\n" + b"1,\xe9\xff" + b"," * 15 + b"\n", "not UTF-8 text"),
    ],
)
def test_unreadable_file_is_a_clear_error(engine, config, tmp_path, content, message):
    folder = write_extracts(tmp_path / "x", agencies=("court",))
    (folder / "protective_orders.csv").write_bytes(content)
    with pytest.raises(IpviError, match=f"protective_orders.csv: {message}"):
        ingest_directory(engine, folder, config)


def test_non_utf8_deep_in_a_file_fails_that_file_only(engine, config, tmp_path):
    folder = write_extracts(tmp_path / "x", agencies=("court",))
    path = write_large_probation(folder / "probation.csv", rows=5000)
    path.write_bytes(path.read_bytes() + b"901,K,START,O,\xe9,,,,,,,,,,,,2020/01/01,2020/01/01,Y\n")
    with pytest.raises(IpviError, match="probation.csv: not UTF-8 text"):
        ingest_directory(engine, folder, config)
    with engine.connect() as connection:
        agencies = set(connection.execute(select(mentions.c.agency)).scalars())
        run = connection.execute(select(ingest_runs)).one()
    assert agencies == {"court"}  # the file before it is committed
    assert run.status == "failed" and "probation.csv" in run.error


def test_header_only_file_loads_nothing(engine, config, tmp_path):
    folder = write_extracts(tmp_path / "x", agencies=("court",))
    (folder / "probation.csv").write_text(",".join(rows_of("probation")[0]) + "\n")
    report = ingest_directory(engine, folder, config)
    assert report.files["probation"].rows_in == 0
    assert report.accepted == 3


def test_missing_folder_and_empty_folder_are_errors(engine, config, tmp_path):
    with pytest.raises(IpviError, match="not a folder"):
        ingest_directory(engine, tmp_path / "nowhere", config)
    (tmp_path / "empty").mkdir()
    with pytest.raises(IpviError, match="no agency extract found"):
        ingest_directory(engine, tmp_path / "empty", config)


def test_dob_plausibility_follows_the_config(engine, config, tmp_path):
    config.min_age_years = 40  # the 1985 DOBs are 35 at their 2020 events
    ingest_directory(engine, write_extracts(tmp_path / "x", agencies=("court",)), config)
    with engine.connect() as connection:
        problems = set(connection.execute(select(field_issues.c.problem)).scalars())
    assert problems == {"age_out_of_range", "unknown_code"}


def test_parquet_extract(engine, config, tmp_path):
    folder = tmp_path / "x"
    folder.mkdir()
    pd.DataFrame(rows_of("probation")).to_parquet(folder / "probation.parquet")
    config.agencies["probation"].file = "probation.parquet"
    report = ingest_directory(engine, folder, config)
    assert report.files["probation"].accepted == 1


def test_cli_json_is_one_line_and_nothing_personal_is_printed(
    db_url, tmp_path, monkeypatch, capsys, caplog
):
    monkeypatch.setenv("IPVI_DATABASE_URL", db_url)
    folder = write_extracts(tmp_path / "x", agencies=("police", "jail", "court"))
    with caplog.at_level(logging.DEBUG):
        assert main(["ingest", str(folder), "--json"]) == 0
    out, err = capsys.readouterr()
    lines = out.strip().splitlines()
    assert len(lines) == 1
    payload = json.loads(lines[0])
    assert {"rows_in", "accepted", "accepted_with_issues", "quarantined", "by_reason"} <= set(
        payload
    )
    assert payload["rows_in"] == payload["accepted"] + payload["quarantined"] == 26
    assert "protective_orders.csv not found" in err
    printed = out + err + caplog.text
    for secret in ("Alvarez", "GARCIA", "03/14/1985", "1985-03-14", "13/45/1980", "Elm St"):
        assert secret not in printed


def test_cli_error_is_one_line_naming_the_column(db_url, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("IPVI_DATABASE_URL", db_url)
    folder = write_extracts(tmp_path / "x", agencies=("jail",))
    rows = [{k: v for k, v in row.items() if k != "INMATE_NAME"} for row in rows_of("jail")]
    write_csv(folder / "jail_bookings.csv", rows)
    assert main(["ingest", str(folder)]) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [
        f"error: {folder / 'jail_bookings.csv'}: missing column(s) INMATE_NAME named in the mapping"
    ]


def test_two_agencies_with_one_record_prefix_is_a_config_error(engine, config, tmp_path):
    config.agencies["court"].record_prefix = "PD"
    with pytest.raises(ConfigError, match=r"record_prefix \['PD'\] used twice"):
        ingest_directory(engine, write_extracts(tmp_path / "x"), config)


def test_a_file_whose_rows_are_all_quarantined(engine, config, tmp_path):
    folder = tmp_path / "x"
    folder.mkdir()
    write_csv(folder / "probation.csv", [{**rows_of("probation")[0], "EVENT_DT": "never"}])
    report = ingest_directory(engine, folder, config)
    assert (report.accepted, report.quarantined) == (0, 1)
    assert report.by_reason == {"offense_date_unparseable": 1}


def test_long_values_and_nul_characters_are_stored(engine, config, tmp_path):
    folder = tmp_path / "x"
    folder.mkdir()
    long_ref = "K-" + "9" * 200
    row = {
        **rows_of("court")[0],
        "AGENCY_CASE_REF": long_ref,
        "DEF_SUFFIX": "JUNIOR THE THIRD",
        "DEF_FIRST": "Jo\x00se",
    }
    write_csv(folder / "court_cases.csv", [row])
    assert ingest_directory(engine, folder, config).accepted == 1
    with engine.connect() as connection:
        mention = connection.execute(select(mentions)).one()
        event = connection.execute(select(events)).one()
    assert event.case_ref == long_ref and mention.suffix == "JUNIOR THE THIRD"
    assert mention.first_name == "Jose"
