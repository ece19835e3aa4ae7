"""Re-audits on matured outcomes (``ipvi audit --issued``) and what a failed one does.

The standing rules on the real registry schema (SQLite, and PostgreSQL when
``IPVI_TEST_POSTGRES_URL`` is set); then, on the registry the real pipeline built, the command
against the monitor's re-audit, its clear errors, and the three effects of a failure (the
MLflow tag, the warning on every ``/v1/score`` answer of the running server, the promotion
refusal) cleared by a later passing re-audit.
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path

import httpx
import pandas as pd
import pytest
import yaml
from sqlalchemy import func, select

from fairness.gate import FAIL, INSUFFICIENT, PASS
from fairness.policy import default_policy
from fairness.promotion import REAUDIT_REFUSAL, check_promotion
from ipvi.cli import main
from ipvi.db import make_engine, open_registry, session_scope
from ipvi.reaudits import save_reaudit, score_warning, standing
from ipvi.tables.fairness import reaudits
from ipvi.tables.monitoring import issued_scores
from monitoring.outcomes import read_issued
from monitoring.reaudit import NONE_SINCE, SINCE_AFTER_EXTRACT
from tests.pipeline_support import fresh_keys
from tests.test_monitoring import issued  # noqa: F401  (the test period issued again)
from tests.test_monitoring_units import _registry, _scored, _spooled
from training.issued import issued_rows, store_issued


def _payload(audit_id: str, status: str, version: str = "7") -> dict:
    return {
        "audit_id": audit_id,
        "n_rows": 100,
        "gate": {"status": status, "reasons": [f"a {status} reason"]},
        "source": {"model_name": "ipvi-risk", "model_version": version},
    }


def test_a_failed_reaudit_stands_until_a_later_one_passes(db_url):
    engine = open_registry(db_url)
    since, as_of = datetime(2024, 1, 1), datetime(2025, 6, 30)
    policy = default_policy()

    def record(audit_id: str, status: str, version: str = "7") -> None:
        with session_scope(engine) as session:
            save_reaudit(session, _payload(audit_id, status, version), since=since, as_of=as_of)
        time.sleep(0.01)  # created_at orders them

    def now() -> tuple[dict | None, str | None, list[str]]:
        with session_scope(engine) as session:
            found = standing(session, "7")
            check = check_promotion(session, "7", policy=policy, digest="d", model_name="ipvi-risk")
        return found, score_warning(found), check.reasons

    assert now()[:2] == (None, None)
    record("a" * 32, FAIL)
    record("b" * 32, PASS, version="8")  # another version's verdict changes nothing here
    found, warning, reasons = now()
    assert found["reaudit_id"] == "a" * 32 and found["status"] == FAIL
    assert warning.startswith("model version 7 failed its fairness re-audit " + "a" * 32)
    assert "issued since 2024-01-01, outcomes known by 2025-06-30" in warning
    refusal = REAUDIT_REFUSAL.split(" failed")[0].format(version="7")
    assert reasons[0].startswith(refusal + " failed its fairness re-audit " + "a" * 32)
    # Too little evidence is no verdict: the failure still stands.
    record("c" * 32, INSUFFICIENT)
    assert now()[0]["reaudit_id"] == "a" * 32
    record("d" * 32, PASS)
    found, warning, reasons = now()
    assert found["reaudit_id"] == "d" * 32 and warning is None
    assert not any("re-audit" in reason for reason in reasons)
    with session_scope(engine) as session:
        assert session.execute(select(func.count()).select_from(reaudits)).scalar() == 4
    engine.dispose()


def test_each_offence_is_read_once_at_its_first_score_with_its_count(db_url):
    """The monitor and the re-audit read one row per offence, chosen in the database."""
    engine = _registry(db_url, ["P0", "P1"])
    lists = [datetime(2025, 3, 1), datetime(2025, 2, 1), datetime(2025, 4, 1)]
    with session_scope(engine) as session:
        for k, when in enumerate(lists):  # three monthly lists re-score both offences
            rows = issued_rows(
                _scored(), features=["a", "b"], source="batch", history="registry", issued_at=when
            )
            for row in rows:
                row["as_of"] = when
                row["features"] = {"a": float(k), "b": None}
            store_issued(session, _spooled(rows[: 2 if k else 1]))  # P1 only from the second
    with session_scope(engine) as session:
        issued, _ = read_issued(session, until=pd.Timestamp("2025-03-15"))
    assert issued["person_id"].tolist() == ["P0", "P1"]
    assert issued["as_of"].tolist() == [pd.Timestamp("2025-02-01")] * 2
    assert issued["times_scored"].tolist() == [2, 1]  # the April list is after the date
    assert [f["a"] for f in issued["features"]] == [1.0, 1.0]
    engine.dispose()


# --------------------------------------------------------------------------- on the pipeline

STRICT = {  # every gap is a disparity: the re-audit fails
    "tolerance": {"low": 0.999, "high": 1.001},
    "min_difference": 0.0,
    "decide_by": "point",
    "min_positives": 1,
    "min_negatives": 1,
    "n_bootstrap": 30,
}
LENIENT = {  # no gap is: it passes
    "tolerance": {"low": 0.001, "high": 1000.0},
    "min_difference": 0.99,
    "min_positives": 1,
    "min_negatives": 1,
    "n_bootstrap": 30,
    "gate": {"calibration_tolerance": 0.99},
}


def _config(pipeline, name: str, policy: dict) -> str:
    """The pipeline's configuration with another fairness policy."""
    path = pipeline["folder"] / f"config-{name}.yaml"
    settings = yaml.safe_load(Path(pipeline["env"]["IPVI_CONFIG"]).read_text())
    path.write_text(yaml.safe_dump({**settings, "fairness_policy": policy}))
    return str(path)


@pytest.fixture
def ipvi(pipeline, monkeypatch, capsys):
    for name, value in pipeline["env"].items():
        monkeypatch.setenv(name, value)

    def run(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = main(list(args))
        out, err = capsys.readouterr()
        return code, out, err

    return run


def _reports(pipeline) -> set[str]:
    folder = pipeline["folder"] / "reports"
    return {p.name for p in folder.glob("reaudit-*")} if folder.exists() else set()


@pytest.mark.slow
def test_bad_input_is_a_clear_error_and_writes_nothing(pipeline, issued, ipvi):  # noqa: F811
    extract, first = issued["extract"], issued["frame"]["as_of"].min()
    before = _reports(pipeline)
    with session_scope(make_engine(pipeline["url"])) as session:
        rows = session.execute(select(func.count()).select_from(reaudits)).scalar()
    cases = [
        (
            ["--since", str(first.date()), "--as-of", str((first + pd.Timedelta(days=30)).date())],
            "has a matured outcome by",
        ),
        (["--since", "2020-01-01", "--model-version", "999"], "model version '999' never served"),
        (
            ["--since", str((extract + pd.Timedelta(days=1)).date())],
            SINCE_AFTER_EXTRACT.split("{extract}")[1],
        ),
        (["--since", "2020-13-01"], "--since must be a date YYYY-MM-DD"),
        ([], "--issued needs --since DATE"),
    ]
    for args, message in cases:
        code, out, err = ipvi("audit", "--issued", *args)
        assert code == 2 and out == "", (args, err)
        assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    # After the last score any test has issued so far (other tests score the shared pipeline
    # too), with the outcomes known a day later: nothing was issued since.
    with session_scope(make_engine(pipeline["url"])) as session:
        last = pd.Timestamp(session.execute(select(func.max(issued_scores.c.as_of))).scalar())
    since = last + pd.Timedelta(days=1)
    code, _, err = ipvi(
        "audit",
        "--issued",
        "--since",
        str(since.date()),
        "--as-of",
        str((since + pd.Timedelta(days=1)).date()),
    )
    assert code == 2 and NONE_SINCE.split("{since}")[1].split("{extract}")[0] in err
    assert _reports(pipeline) == before
    with session_scope(make_engine(pipeline["url"])) as session:
        assert session.execute(select(func.count()).select_from(reaudits)).scalar() == rows


def _score(server, url: str, person: str, as_of: str) -> dict:
    keys = fresh_keys(url, ["scoring"])
    answer = httpx.post(
        f"{server.url}/v1/score",
        json={"person_ids": [person], "as_of": as_of},
        headers=keys["scoring"],
        timeout=60,
    )
    assert answer.status_code == 200, answer.text
    return answer.json()


def _warnings_become(server, url: str, person: str, as_of: str, wanted) -> list[str]:
    """The /v1/score warnings once ``wanted(warnings)`` holds (the server re-reads the standing
    every second), or the last seen."""
    deadline = time.monotonic() + 15
    while True:
        warnings = _score(server, url, person, as_of)["warnings"]
        if wanted(warnings) or time.monotonic() > deadline:
            return warnings
        time.sleep(0.5)


@pytest.mark.slow
@pytest.mark.service
def test_a_failed_reaudit_tags_warns_and_blocks_until_one_passes(
    pipeline,
    pipeline_server,
    issued,  # noqa: F811
    ipvi,
):
    from mlflow import MlflowClient

    version, extract = issued["version"], issued["extract"]
    since = str(issued["frame"]["as_of"].min().date())
    as_of = str((extract + pd.Timedelta(days=1)).date())
    strict, lenient = _config(pipeline, "strict", STRICT), _config(pipeline, "lenient", LENIENT)
    client = MlflowClient(pipeline["store"]["tracking_uri"], pipeline["store"]["tracking_uri"])
    row = issued["frame"].iloc[0]
    person, scored_at = row["person_id"], pd.Timestamp(row["as_of"]).isoformat() + "Z"
    url = pipeline["url"]

    # The version's own audit passes under the lenient policy: only a re-audit can block it.
    code, out, err = ipvi("--config", lenient, "audit", "--model-version", version)
    assert code == 0 and json.loads(out.splitlines()[-1])["status"] == PASS, err

    # The re-audit is the monitor's, on the same matured rows: same rows, same gate.
    reports = pipeline["folder"] / "reaudit"
    code, out, err = ipvi(
        *("--config", strict, "audit", "--issued", "--since", since, "--as-of", as_of),
        *("--model-version", version, "--json", str(reports / "fail.json")),
        *("--html", str(reports / "fail.html")),
    )
    assert code == 0, err
    failed = json.loads((reports / "fail.json").read_text())
    assert json.loads(out.splitlines()[-1])["status"] == failed["gate"]["status"] == FAIL
    assert failed["source"]["kind"] == "issued_scores" and failed["n_rows"] == len(issued["frame"])
    assert (reports / "fail.html").read_text().count(failed["audit_id"]) >= 1
    code, _, err = ipvi(
        *("--config", strict, "monitor", "--as-of", as_of, "--model-version", version),
        *("--json", str(reports / "monitor.json")),
    )
    monitored = json.loads((reports / "monitor.json").read_text())["reaudit"]
    assert monitored["n_rows"] == failed["n_rows"]
    assert (
        monitored["gate"] == failed["gate"]
        and monitored["overall"] == (failed["decisions"][failed["primary_decision"]]["overall"])
    )

    # (a) the MLflow version is tagged with the failed re-audit.
    tags = client.get_model_version("ipvi-risk", version).tags
    assert (tags["reaudit_status"], tags["reaudit_id"]) == (FAIL, failed["audit_id"])
    # (b) every score answered names it.
    warnings = _warnings_become(pipeline_server, url, person, scored_at, bool)
    assert len(warnings) == 1 and failed["audit_id"] in warnings[0], warnings
    # (c) promotion refuses the version, saying why.
    code, _, err = ipvi("--config", lenient, "promote", version)
    assert code == 2 and f"failed its fairness re-audit {failed['audit_id']}" in err, err

    # A later passing re-audit clears all three.
    code, out, err = ipvi(
        *("--config", lenient, "audit", "--issued", "--since", since, "--as-of", as_of),
        *("--model-version", version),
    )
    assert code == 0, err
    passed = json.loads(out.splitlines()[-1])
    assert passed["status"] == PASS and passed["json"].endswith(".json")
    tags = client.get_model_version("ipvi-risk", version).tags
    assert (tags["reaudit_status"], tags["reaudit_id"]) == (PASS, passed["audit_id"])
    assert _warnings_become(pipeline_server, url, person, scored_at, lambda w: not w) == []
    code, out, err = ipvi("--config", lenient, "promote", version)
    assert code == 0, err
    assert json.loads(out.splitlines()[-1])["version"] == version
