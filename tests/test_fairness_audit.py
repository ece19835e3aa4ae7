"""The generic audit (`ipvi audit --data FILE ...`): numbers, exclusions, errors, gate, report."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from fairness.gate import FAIL, INSUFFICIENT, PASS
from ipvi.cli import main

HAND = pd.DataFrame(
    {
        "group": ["a"] * 5 + ["b"] * 6,
        "outcome": [1, 1, 0, 0, 0, 1, 1, 1, 0, 0, 0],
        "flag": ["Y", "N", "Y", "N", "N", "Y", "Y", "N", "Y", "N", "N"],
    }
)


def _audit(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["audit", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def _scored(n: int, *, seed: int, bias: float = 0.0, small: int = 0) -> pd.DataFrame:
    """Calibrated scores for two groups; ``bias`` raises the scores of black non-re-offenders."""
    rng = np.random.default_rng(seed)
    race = rng.choice(["black", "white"], n)
    p = rng.beta(2, 4, n)
    y = (rng.random(n) < p).astype(int)
    score = np.where((race == "black") & (y == 0), np.minimum(p + bias, 1.0), p)
    frame = pd.DataFrame(
        {"person": rng.integers(0, n, n), "race": race, "sex": rng.choice(["f", "m"], n)}
    )
    frame["reoffended"] = y
    frame["score"] = score
    if small:
        frame.loc[: small - 1, "race"] = "asian"
    return frame


def test_generic_audit_matches_the_hand_computation(tmp_path, capsys):
    data = tmp_path / "hand.csv"
    HAND.to_csv(data, index=False)
    out = tmp_path / "audit.json"
    code, stdout, _ = _audit(
        capsys,
        "--data", data, "--label", "outcome", "--prediction", "flag", "--positive", "Y",
        "--group", "group", "--json", out,
    )  # fmt: skip
    assert code == 0
    audit = json.loads(out.read_text())
    a, b = audit["groups"]["group"]["a"], audit["groups"]["group"]["b"]
    assert (a["n"], b["n"]) == (5, 6)
    assert a["base_rate"] == pytest.approx(0.4) and b["base_rate"] == pytest.approx(0.5)
    assert a["fpr"] == pytest.approx(1 / 3) and a["fnr"] == pytest.approx(1 / 2)
    assert a["ppv"] == pytest.approx(1 / 2) and a["npv"] == pytest.approx(2 / 3)
    assert b["fnr"] == pytest.approx(1 / 3) and b["selection_rate"] == pytest.approx(0.5)
    for rate in ("base_rate", "selection_rate", "fpr", "fnr", "ppv", "npv"):
        low, high = a["ci"][rate]
        assert 0 <= low <= a[rate] <= high <= 1, rate
    # The largest group is the reference by default.
    disparity = audit["disparities"]["decision"]["group"]
    assert disparity["reference"] == "b"
    assert disparity["groups"]["a"]["fnr"]["ratio"] == pytest.approx(1.5)
    assert disparity["groups"]["a"]["fnr"]["difference"] == pytest.approx(1 / 6)
    assert "gate" not in audit  # no policy file: described, not judged
    assert json.loads(stdout)["status"] is None
    assert audit["excluded_rows"] == {"total": 0, "by_reason": {}}


def test_rows_with_missing_values_are_counted_not_dropped_silently(tmp_path, capsys):
    frame = _scored(400, seed=1)
    frame.loc[0:2, "reoffended"] = np.nan
    frame.loc[3:4, "score"] = np.nan
    frame.loc[5, "race"] = None
    frame.loc[6, "sex"] = ""
    data = tmp_path / "scored.parquet"
    frame.to_parquet(data)
    out = tmp_path / "a.json"
    code, _, _ = _audit(
        capsys,
        "--data", data, "--label", "reoffended", "--score", "score", "--threshold", "0.5",
        "--group", "race", "--group", "sex", "--json", out,
    )  # fmt: skip
    assert code == 0
    audit = json.loads(out.read_text())
    assert audit["excluded_rows"] == {
        "total": 7,
        "by_reason": {
            "missing label": 3,
            "missing score": 2,
            "missing group: race": 1,
            "missing group: sex": 1,
        },
    }
    assert audit["n_rows"] == 393
    assert "race & sex" in audit["groups"]  # intersections come with two or more attributes


@pytest.mark.parametrize(
    ("change", "args", "message"),
    [
        (None, ["--group", "ethnicity"], "no column 'ethnicity'"),
        ("label", ["--group", "race"], "label column 'reoffended' is not binary"),
        ("score", ["--group", "race"], "has values outside [0, 1]"),
        ("group", ["--group", "race"], "group column 'race' is empty"),
        (None, ["--group", "race", "--reference", "purple"], "reference group 'purple'"),
        (None, ["--group", "race", "--reference", "race=purple"], "race=purple"),
    ],
)
def test_bad_input_is_a_one_line_error_naming_it(tmp_path, capsys, change, args, message):
    frame = _scored(100, seed=2)
    if change == "label":
        frame["reoffended"] = frame["reoffended"] + 1
    elif change == "score":
        frame["score"] = frame["score"] * 10
    elif change == "group":
        frame["race"] = None
    data = tmp_path / "bad.csv"
    frame.to_csv(data, index=False)
    threshold = [] if change == "score" else ["--threshold", "0.5"]
    code, _, err = _audit(
        capsys, "--data", data, "--label", "reoffended", "--score", "score", *threshold, *args
    )
    assert code == 2
    assert message in err and err.startswith("error: ") and "Traceback" not in err


def test_bare_reference_applies_to_the_attributes_holding_it(tmp_path, capsys):
    frame = _scored(300, seed=3)
    data = tmp_path / "s.csv"
    frame.to_csv(data, index=False)
    out = tmp_path / "a.json"
    _audit(
        capsys,
        "--data", data, "--label", "reoffended", "--score", "score", "--threshold", "0.4",
        "--group", "race", "--group", "sex", "--reference", "white", "--reference", "sex=m",
        "--json", out,
    )  # fmt: skip
    references = json.loads(out.read_text())["references"]
    assert references["race"] == "white" and references["sex"] == "m"
    counts = frame.groupby(["race", "sex"]).size()
    largest = " & ".join(counts.sort_values(ascending=False).index[0])
    assert references["race & sex"] == largest  # no reference named for it: the largest


def _policy(tmp_path, text: str = "") -> str:
    path = tmp_path / "policy.yaml"
    path.write_text("fairness_policy:\n  n_bootstrap: 100\n" + text)
    return str(path)


def test_gate_fails_on_a_false_positive_disparity_and_still_exits_zero(tmp_path, capsys):
    data = tmp_path / "biased.csv"
    _scored(4000, seed=5, bias=0.25).to_csv(data, index=False)
    out = tmp_path / "a.json"
    code, stdout, err = _audit(
        capsys,
        "--data", data, "--label", "reoffended", "--score", "score", "--threshold", "0.5",
        "--group", "race", "--reference", "white", "--person", "person",
        "--policy", _policy(tmp_path), "--json", out,
    )  # fmt: skip
    assert code == 0
    audit = json.loads(out.read_text())
    assert audit["gate"]["status"] == FAIL
    assert json.loads(stdout)["status"] == FAIL
    failure = [f for f in audit["gate"]["failures"] if f["kind"] == "disparity"][0]
    assert (failure["attribute"], failure["group"], failure["metric"]) == ("race", "black", "fpr")
    assert failure["ratio_ci"][0] > 1.25
    assert any(r.startswith("False positive rate at") for r in audit["gate"]["reasons"])
    # The policy file changed one value from the shipped defaults; the audit lists it.
    assert audit["policy"]["changed_from_defaults"] == {
        "n_bootstrap": {"value": 100, "default": 200}
    }


def test_gate_passes_a_calibrated_unbiased_score(tmp_path, capsys):
    data = tmp_path / "fair.csv"
    _scored(4000, seed=6).to_csv(data, index=False)
    out = tmp_path / "a.json"
    _audit(
        capsys,
        "--data", data, "--label", "reoffended", "--score", "score", "--threshold", "0.5",
        "--group", "race", "--policy", _policy(tmp_path), "--json", out,
    )  # fmt: skip
    gate = json.loads(out.read_text())["gate"]
    assert gate["status"] == PASS, gate["reasons"]


def test_small_groups_warn_and_block_only_when_the_policy_names_them(tmp_path, capsys):
    data = tmp_path / "small.csv"
    _scored(3000, seed=6, small=40).to_csv(data, index=False)
    out = tmp_path / "a.json"
    args = ["--data", data, "--label", "reoffended", "--score", "score", "--threshold", "0.5"]
    _audit(capsys, *args, "--group", "race", "--policy", _policy(tmp_path), "--json", out)
    audit = json.loads(out.read_text())
    asian = audit["groups"]["race"]["asian"]
    assert asian["sufficient"] is False and "warning" in asian
    assert any("asian" in w for w in audit["warnings"])
    assert all(row["group"] != "asian" for row in audit["worst_gaps"])
    assert audit["gate"]["status"] == PASS

    named = _policy(tmp_path, "  required_groups: {race: [asian]}\n")
    _audit(capsys, *args, "--group", "race", "--policy", named, "--json", out)
    gate = json.loads(out.read_text())["gate"]
    assert gate["status"] == INSUFFICIENT
    assert "race = asian is named by the policy" in gate["reasons"][0]


def test_report_escapes_data_values_and_public_output_suppresses_small_cells(tmp_path, capsys):
    frame = _scored(600, seed=7)
    frame.loc[:4, "race"] = "<script>alert(1)</script>"
    data = tmp_path / "s.csv"
    frame.to_csv(data, index=False)
    html, out = tmp_path / "r.html", tmp_path / "a.json"
    code, _, _ = _audit(
        capsys,
        "--data", data, "--label", "reoffended", "--score", "score", "--threshold", "0.5",
        "--group", "race", "--json", out, "--html", html, "--public",
    )  # fmt: skip
    assert code == 0
    text = html.read_text()
    assert "<script>" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "data:image/png;base64," in text  # plots embedded: one self-contained file
    assert "What it is" in text and "cannot all be equal" in text
    audit = json.loads(out.read_text())
    cell = audit["groups"]["race"]["<script>alert(1)</script>"]
    assert cell["n"] is None and cell["fpr"] is None and "suppressed" in cell
    assert audit["groups"]["race"]["white"]["n"] > 11


def test_policy_file_errors_name_the_key_and_hash_matches_the_config(tmp_path, capsys):
    from fairness.policy import default_policy, load_policy, policy_hash
    from ipvi.config import load_config

    assert policy_hash(default_policy()) == load_config().section_hash("fairness_policy")
    bad = tmp_path / "bad.yaml"
    bad.write_text("fairness_policy:\n  tolerance: {low: 0.8, hihg: 1.25}\n")
    data = tmp_path / "hand.csv"
    HAND.to_csv(data, index=False)
    code, _, err = _audit(
        capsys,
        "--data", data, "--label", "outcome", "--prediction", "flag", "--positive", "Y",
        "--group", "group", "--policy", bad,
    )  # fmt: skip
    assert code == 2
    assert "config key 'fairness_policy.tolerance.hihg': unknown key" in err
    bare = tmp_path / "bare.yaml"
    bare.write_text("decide_by: point\n")  # the section's keys alone are a policy too
    assert load_policy(bare).decide_by == "point"
