"""``ipvi monitor`` on a registry built by the real pipeline, against a second path to each
answer: the test period's scores, issued at their decision dates as the service would have
issued them, must come back with training's labels, its AUC by period and the audit's gate;
``/v1/score`` keeps what it answered; the report opens in the system Chromium with nothing
fetched. Slow: the shared pipeline takes minutes to build.
"""

from __future__ import annotations

import json
import os
import time
from datetime import datetime

import httpx
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score
from sqlalchemy import func, select

from fairness.audit import run_audit
from fairness.model_version import build_input
from fairness.policy import policy_changes, policy_hash
from ipvi.config import load_config
from ipvi.db import make_engine, session_scope
from ipvi.tables.ingest import events
from ipvi.tables.monitoring import issued_scores
from monitoring.outcomes import NO_MATURED
from monitoring.programme import NO_FOLLOW_UP, NO_MATURED_OUTCOMES
from serving.launch import CHROMIUM, launch_chromium
from tests.cli_support import in_process
from tests.pipeline_support import fresh_keys
from training.data import SCORING_MENTIONS, read_history
from training.features import persons_table
from training.issued import issued_rows, store_issued
from training.offences import assign_offences, index_offences, person_events
from training.registry import version_info
from training.scoring import RiskScorer, score_index

pytestmark = [pytest.mark.slow]

IN_CI = os.environ.get("CI", "").lower() == "true"
KEYS = ("status", "reasons", "periods", "reaudit", "overrides", "notification_effect")


@pytest.fixture(scope="module")
def issued(pipeline):
    """The training run's test predictions, issued again (``source`` = api) at their decision
    dates through the scoring core, as the service would have issued them."""
    store, url = pipeline["store"], pipeline["url"]
    scorer = RiskScorer.from_registry(store["tracking_uri"], "ipvi-risk", store["model_version"])
    engine = make_engine(url)
    with engine.connect() as connection:
        predictions = pd.read_sql(
            f"SELECT * FROM evaluation_predictions WHERE run_id = '{store['run_id']}'", connection
        )
        extract = pd.Timestamp(connection.execute(select(func.max(events.c.recorded_at))).scalar())
    history = read_history(engine, mention_columns=SCORING_MENTIONS)
    settings = scorer.bundle.settings
    by_person = assign_offences(person_events(*history), window_days=settings.offence_window_days)
    index = index_offences(by_person, settings.decision_lag_days)
    wanted = set(zip(predictions["person_id"], predictions["index_event_id"], strict=True))
    keep = [
        (person, event) in wanted
        for person, event in zip(index["person_id"], index["index_event_id"], strict=True)
    ]
    index = index.take(np.array(keep, dtype=bool))
    n = len(index)
    scored = score_index(
        scorer.bundle,
        index,
        by_person,
        persons_table(history[1], history[2]),
        stamp={
            "model_name": np.full(n, "ipvi-risk", dtype=object),
            "model_version": np.full(n, scorer.model_version, dtype=object),
            "linkage_run_id": np.full(n, None, dtype=object),
        },
    )
    rows = issued_rows(
        scored,
        features=scorer.bundle.features,
        source="api",
        history="registry",
        issued_at=datetime(2026, 1, 1),
    )
    with session_scope(engine) as session:
        assert store_issued(session, rows) == n
    engine.dispose()
    frame = scored.to_frame().merge(
        predictions[["person_id", "index_event_id", "probability", "label"]],
        on=["person_id", "index_event_id"],
        suffixes=("", "_at_training"),
    )
    return {"frame": frame, "extract": extract, "version": scorer.model_version}


@pytest.fixture(scope="module")
def monitored(tmp_path_factory):
    """Where the monitor tests write their reports (the browser test opens them)."""
    return tmp_path_factory.mktemp("monitor")


def _monitor(pipeline, monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    return in_process(["monitor", *args], pipeline["env"], monkeypatch, capsys)


def test_the_test_period_issued_again_gives_trainings_labels_auc_and_gate(
    pipeline, issued, monitored, monkeypatch, capsys
):
    frame, version = issued["frame"], issued["version"]
    # The scoring core gives the stored predictions back (the parity the service relies on).
    assert np.abs(frame["probability"] - frame["probability_at_training"]).max() <= 1e-9
    out_json, out_html = monitored / "monitor.json", monitored / "monitor.html"
    code, _, err = _monitor(
        pipeline,
        monkeypatch,
        capsys,
        "--as-of",
        (issued["extract"] + pd.Timedelta(days=1)).date().isoformat(),
        "--model-version",
        version,
        "--json",
        str(out_json),
        "--html",
        str(out_html),
    )
    payload = json.loads(out_json.read_text())
    assert set(KEYS) <= set(payload)
    assert code == (1 if payload["status"] == "alarm" else 0), err
    assert payload["status"] in ("ok", "warn", "alarm")
    assert (payload["status"] == "ok") == (payload["reasons"] == [])
    # Every test-period score has matured, with training's label (one label definition).
    assert payload["counts"]["matured"] == len(frame)
    period = frame["as_of"].dt.to_period("Q").astype(str)
    performance = {p["period"]: p["performance"] for p in payload["periods"]}
    for name, rows in frame.groupby(period):
        cell = performance[name]
        assert cell["n"] == len(rows)
        assert cell["positives"] == int(rows["label"].sum())
        if rows["label"].nunique() == 2:
            expected = roc_auc_score(rows["label"], rows["probability"])
            assert cell["auc"] == pytest.approx(expected, abs=1e-12)
            assert cell["auc_ci"][0] <= cell["auc"] <= cell["auc_ci"][1]
    # The re-audit on matured outcomes is the audit of the version on the same rows.
    config = load_config(pipeline["env"]["IPVI_CONFIG"])
    policy = config.fairness_policy
    engine = make_engine(pipeline["url"])
    with session_scope(engine) as session:
        bands = version_info(pipeline["store"]["tracking_uri"], "ipvi-risk", version)["bands"]
        inp = build_input(session, version, policy=policy, model_name="ipvi-risk", bands=bands)
    engine.dispose()
    # The re-audit takes its rows in person order, so the same rows resample alike.
    inp.frame = inp.frame.sort_values(["person_id", "index_event_id"]).reset_index(drop=True)
    audited = run_audit(
        inp, policy, policy_digest=policy_hash(policy), changes=policy_changes(policy)
    )
    assert payload["reaudit"]["n_rows"] == audited.payload["n_rows"] == len(frame)
    assert payload["reaudit"]["gate"]["status"] == audited.payload["gate"]["status"]
    assert payload["reaudit"]["gate"]["reasons"] == audited.payload["gate"]["reasons"]
    # Input drift is measured against the training rows for every model input.
    features = payload["periods"][0]["drift"]["features"]
    assert set(features) == set(
        RiskScorer.from_registry(
            pipeline["store"]["tracking_uri"], "ipvi-risk", version
        ).bundle.features
    )
    assert all(f["psi"] is None or f["psi"] >= 0 for f in features.values())
    # No staff decision was recorded here: no one notified, a reason instead of a number.
    effect = payload["notification_effect"]
    assert effect["estimate"] is None and effect["truth"] is None
    assert effect["reason"].startswith("too few to compare: 0 notified")
    assert payload["programme"]["feedback_loop"]["uplifts"] == []
    # Everyone is followed: one re-offence curve (not notified) over every scored offence.
    curves = payload["programme"]["reoffence"]["groups"]
    assert list(curves) == ["not notified"] and curves["not notified"]["n"] == len(frame)
    assert curves["not notified"]["events"] == int(frame["label"].sum())
    # Monthly counts: by zip adds up to the city, each window tested or saying why not.
    counts = payload["event_counts"]
    for kind, city in counts["city"].items():
        by_zip = np.sum([zips[kind] for zips in counts["by_zip"].values()], axis=0)
        assert by_zip.tolist() == city
    assert sum(counts["city"]["incidents"]) > 0
    assert all(w["judged"] or w["reason"] for w in counts["windows"])
    assert out_html.read_text().count("<svg") >= 5


def test_before_any_outcome_matures_the_report_says_when_and_is_not_ok(
    pipeline, issued, monitored, monkeypatch, capsys
):
    first = issued["frame"]["as_of"].min()
    out_json = monitored / "early.json"
    code, _, err = _monitor(
        pipeline,
        monkeypatch,
        capsys,
        "--as-of",
        str(first.date()),
        "--model-version",
        issued["version"],
        "--json",
        str(out_json),
    )
    payload = json.loads(out_json.read_text())
    assert payload["status"] != "ok" and code in (0, 1), err
    assert payload["counts"]["matured"] == 0
    assert any("has a matured outcome by" in reason for reason in payload["reasons"])
    assert payload["reaudit"] is None and "matured outcome(s)" in payload["reaudit_reason"]
    assert NO_MATURED.split(" ")[0] == "no"
    assert payload["notification_effect"]["reason"] == NO_MATURED_OUTCOMES
    assert payload["programme"]["reoffence"]["reason"] == NO_FOLLOW_UP


def test_a_version_that_never_served_is_a_clear_error(pipeline, issued, monkeypatch, capsys):
    code, out, err = _monitor(
        pipeline, monkeypatch, capsys, "--as-of", "2030-01-01", "--model-version", "999"
    )
    assert code == 2 and out == ""
    assert "model version '999' never served" in err and "Traceback" not in err


@pytest.mark.service
def test_every_score_answered_is_kept_with_the_inputs_the_model_saw(pipeline, pipeline_server):
    keys = fresh_keys(pipeline["url"], ["scoring"])
    engine = make_engine(pipeline["url"])
    with engine.connect() as connection:
        row = pd.read_sql("SELECT person_id, as_of FROM evaluation_predictions LIMIT 1", connection)
    as_of = pd.Timestamp(row["as_of"][0]).isoformat() + "Z"
    answer = httpx.post(
        f"{pipeline_server.url}/v1/score",
        json={"person_ids": [row["person_id"][0]], "as_of": as_of},
        headers=keys["scoring"],
        timeout=60,
    )
    assert answer.status_code == 200, answer.text
    [result] = answer.json()["results"]
    deadline = time.monotonic() + 10
    while True:
        with engine.connect() as connection:
            kept = (
                connection.execute(
                    select(issued_scores).where(issued_scores.c.score_id == result["score_id"])
                )
                .mappings()
                .all()
            )
        if kept or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    engine.dispose()
    assert kept, "the answer never reached issued_scores"
    stored = kept[-1]
    assert (stored["source"], stored["history"]) == ("api", "registry")
    assert stored["probability"] == pytest.approx(result["probability"], abs=1e-12)
    assert (stored["band"], stored["tier"]) == (result["band"], result["tier"])
    assert stored["lethality_flags"] == result["lethality_flags"]
    # The stored inputs give the model's answer again.
    scorer = RiskScorer.from_registry(
        pipeline["store"]["tracking_uri"], "ipvi-risk", stored["model_version"]
    )
    inputs = np.array(
        [
            [
                np.nan if stored["features"][f] is None else stored["features"][f]
                for f in scorer.bundle.features
            ]
        ]
    )
    assert scorer.bundle.model.predict_proba(inputs)[0] == pytest.approx(
        result["probability"], abs=1e-12
    )


@pytest.mark.browser
def test_the_report_opens_in_chromium_and_fetches_nothing(monitored):
    report = monitored / "monitor.html"
    if not report.exists():
        pytest.skip("the monitor test that writes the report did not run")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None
    problem = (
        "playwright is not installed"
        if sync_playwright is None
        else None
        if CHROMIUM.exists()
        else f"no Chromium at {CHROMIUM}"
    )
    if problem:
        if IN_CI:
            pytest.fail(f"browser tests must run in CI: {problem}")
        pytest.skip(problem)
    payload = json.loads((monitored / "monitor.json").read_text())
    requested = []
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        page = browser.new_page()
        page.on("request", lambda request: requested.append(request.url))
        page.goto(report.as_uri())
        status = page.locator("#status")
        assert status.get_attribute("data-status") == payload["status"]
        assert status.is_visible()
        reasons = page.locator("#reasons li").all_inner_texts()
        assert reasons == payload["reasons"][:12]
        svgs = page.locator("svg")
        assert svgs.count() >= 3
        box = svgs.first.bounding_box()
        assert box and box["width"] > 200 and box["height"] > 100
        rows = page.locator("#performance tr").count()
        assert rows == len(payload["periods"]) + 1
        gate = page.locator("#reaudit-status").inner_text()
        assert payload["reaudit"]["gate"]["status"] in gate
        # Programme outcomes: the curves and their table, the comparison's number or its
        # reason with the assumptions, the feedback loop, the counts and every window tested.
        curves = payload["programme"]["reoffence"]["groups"]
        assert page.locator("#reoffence svg").count() == 1
        assert page.locator("#reoffence-table tr").count() == len(curves) + 1
        effect = payload["notification_effect"]
        notification = page.locator("#notification")
        assert notification.is_visible()
        if effect["estimate"] is None:
            assert effect["reason"] in notification.inner_text()
        assert page.locator("#assumptions li").count() == len(effect["assumptions"])
        if not payload["programme"]["feedback_loop"]["uplifts"]:
            assert "Not checked" in page.locator("#feedback").inner_text()
        counts = payload["event_counts"]
        assert page.locator("#counts svg").count() == 1
        assert page.locator("#count-alarms tr").count() == len(counts["windows"]) + 1
        browser.close()
    assert [url for url in requested if not url.startswith("file://")] == []
