"""The shipped sample (data_samples/) ingests cleanly: every row accounted for, and every defect
the generator injected (listed in its truth folder, which only this test reads) is found."""

from __future__ import annotations

import pandas as pd
import pytest
from sqlalchemy import select

from ingest.load import ingest_directory
from ipvi.config import load_config
from ipvi.db import open_registry
from ipvi.tables.ingest import field_issues, quarantine
from tests.conftest import SAMPLE_DIR

MALFORMED = SAMPLE_DIR / "truth" / "malformed_rows.csv"

pytestmark = pytest.mark.skipif(
    not (SAMPLE_DIR / "police_incidents.csv").exists(), reason="data_samples/ not generated yet"
)


@pytest.fixture(scope="module")
def ingested(tmp_path_factory):
    url = f"sqlite:///{tmp_path_factory.mktemp('sample') / 'registry.sqlite'}"
    engine = open_registry(url)
    report = ingest_directory(engine, SAMPLE_DIR, load_config().ingest)
    yield engine, report
    engine.dispose()


def test_sample_rows_in_equal_accepted_plus_quarantined(ingested):
    _, report = ingested
    assert not report.warnings
    assert report.rows_in == report.accepted + report.quarantined
    lines = sum((SAMPLE_DIR / f.file).read_bytes().count(b"\n") - 1 for f in report.files.values())
    assert report.rows_in == lines  # the sample has no value spanning lines
    assert 0 < report.quarantined < 0.01 * report.rows_in


@pytest.mark.skipif(not MALFORMED.exists(), reason="no list of injected defects")
def test_every_injected_defect_is_found(ingested):
    """Each defect row names its extract column and the outcome ingest should give it."""
    engine, report = ingested
    defects = pd.read_csv(MALFORMED, dtype=str, keep_default_na=False)
    agencies = load_config().ingest.agencies
    with engine.connect() as connection:
        quarantined = dict(
            connection.execute(select(quarantine.c.record_id, quarantine.c.reason)).all()
        )
        issues = set(connection.execute(select(field_issues.c.record_id, field_issues.c.field)))
    for defect in defects.itertuples():
        if defect.expected == "quarantine":
            assert defect.record_id in quarantined, f"{defect.defect} not quarantined"
            if defect.defect == "duplicate_row":
                assert quarantined[defect.record_id] == "duplicate_row"
        else:
            fields = {v: k for k, v in agencies[defect.agency].columns.items()}
            assert (defect.record_id, fields[defect.column]) in issues, f"{defect.defect} missed"
    # Nothing else in the sample is unusable.
    assert report.quarantined == (defects["expected"] == "quarantine").sum()
