"""Linkage that adapts to the file: blocking, conflicts, EM checks and thresholds learned from it.

Small versions of benchmarks/bench_linkage_robust.py: the generator's noise profiles, each
unlike its defaults, linked by ``ipvi dedupe`` with the same defaults and only --id and --map.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from ipvi.cli import main
from ipvi.config import load_config
from ipvi.errors import IpviError
from linkage.autoblock import plan_blocking
from linkage.blocking import candidate_pairs
from linkage.cluster import HardIdentifiers
from linkage.compare import Comparison, Exact, Initial, PostalArea, TokenOverlap, WithinDays
from linkage.evaluate import cluster_metrics
from linkage.fellegi_sunter import EM_INVERTED, FellegiSunter, expected_f1_threshold
from linkage.linker import Linker
from linkage.settings import KEY_SOURCES, LinkageSettings
from linkage.standardize import standardize_frame
from synth.mentions import IDENTIFIER_FIELDS, PROFILES, generate_mentions

EXTRAS = ("suffix", "street_number", "occupation", "state")


def _write(mentions: pd.DataFrame, path) -> str:
    columns = [c for c in (*IDENTIFIER_FIELDS, *EXTRAS) if c in mentions.columns]
    mentions[["record_id", *columns]].to_csv(path, index=False)
    return ",".join(f"{c}={c}" for c in columns)


def _dedupe(path, mapping: str, out, capsys) -> dict:
    args = ["dedupe", str(path), "--id", "record_id", "--map", mapping, "--out", str(out)]
    assert main([*args, "--json"]) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


# F1 floors at 1,500 mentions; "missing" leaves many true pairs with too little in common to
# link at all (both tools find about half of them, see the benchmark).
FLOORS = {"missing": 0.4, "lookalikes": 0.8}


@pytest.mark.parametrize("profile", PROFILES)
def test_noise_profiles_link_with_the_same_defaults(profile, tmp_path, capsys):
    mentions, truth = generate_mentions(1500, seed=21, profile=profile)
    mapping = _write(mentions, tmp_path / "in.csv")
    summary = _dedupe(tmp_path / "in.csv", mapping, tmp_path / "out.csv", capsys)
    out = pd.read_csv(tmp_path / "out.csv", dtype={"record_id": str})
    metrics = cluster_metrics(out["cluster_id"].to_numpy(), truth.reindex(out["record_id"]))
    assert metrics["pairwise_f1"] >= FLOORS.get(profile, 0.93), metrics
    # What dedupe reports of itself, without truth.
    for key in ("estimated_pair_completeness", "estimated_precision", "estimated_recall"):
        assert 0 < summary[key] <= 1
    assert summary["blocking_rules"] and all(r["pairs"] > 0 for r in summary["blocking_rules"])
    assert sum(r["pairs"] for r in summary["blocking_rules"]) <= 50 * len(mentions)
    assert isinstance(summary["conflict_fields"], list)


def test_a_low_cardinality_generic_column_never_chains_a_town(tmp_path, capsys):
    # A house number, an occupation and a nearly constant state and city, mapped as generic
    # columns: they may be compared, but never pull unrelated people into one cluster.
    mentions, truth = generate_mentions(3000, seed=4, profile="generic_columns")
    mapping = _write(mentions, tmp_path / "in.csv")
    summary = _dedupe(tmp_path / "in.csv", mapping, tmp_path / "out.csv", capsys)
    assert summary["largest_cluster"] <= 15
    assert not summary["warnings"]
    out = pd.read_csv(tmp_path / "out.csv", dtype={"record_id": str})
    metrics = cluster_metrics(out["cluster_id"].to_numpy(), truth.reindex(out["record_id"]))
    assert metrics["pairwise_precision"] >= 0.99


def test_a_file_without_duplicates_is_an_error_not_a_silent_split(tmp_path, capsys):
    # No two rows are one person: EM finds no match class, and says so rather than writing
    # one cluster per row as if it had linked the file.
    frame = pd.DataFrame(
        {
            "id": [str(i) for i in range(300)],
            "first": [f"name{i:03d}" for i in range(300)],
            "last": [f"surname{i % 150:03d}" for i in range(300)],
            "born": [f"19{50 + i % 40}-{1 + i % 12:02d}-{1 + i % 28:02d}" for i in range(300)],
        }
    )
    frame.to_csv(tmp_path / "in.csv", index=False)
    out = tmp_path / "o.csv"
    args = ["dedupe", str(tmp_path / "in.csv"), "--id", "id", "--out", str(out)]
    assert main([*args, "--map", "first_name=first,last_name=last,dob=born"]) == 2
    err = capsys.readouterr().err
    assert "EM found no credible match class" in err and "no two records are one person" in err
    assert not out.exists()


def test_rule_pair_counts_are_exact_and_within_the_budget():
    mentions, _ = generate_mentions(2000, seed=5)
    settings = LinkageSettings.from_config(load_config().linkage)
    linker = Linker(settings)
    result = linker.run(mentions[list(IDENTIFIER_FIELDS)])
    plan = result.plan
    assert plan is not None and plan.n_candidates > len(plan.rules)
    data = standardize_frame(mentions[list(IDENTIFIER_FIELDS)])
    for rule, counted in zip(plan.rules, plan.pairs, strict=True):
        # Counted from block sizes before any pair existed, equal to the pairs generated.
        assert len(candidate_pairs([rule], data, max_block_size=300)) == counted
    assert sum(plan.pairs) <= settings.config.pairs_per_record * len(mentions)
    assert 0.9 <= plan.estimated_pair_completeness <= 1


def test_listed_rules_still_work_for_dedupe(tmp_path, capsys):
    mentions, truth = generate_mentions(1200, seed=7)
    mapping = _write(mentions, tmp_path / "in.csv")
    config = tmp_path / "site.yaml"
    config.write_text("linkage:\n  blocking_rules: [[dob], [name_key]]\n")
    args = ["--config", str(config), "dedupe", str(tmp_path / "in.csv"), "--id", "record_id"]
    assert main([*args, "--map", mapping, "--out", str(tmp_path / "o.csv"), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert [r["rule"] for r in summary["blocking_rules"]] == ["dob", "name_key"]
    assert summary["estimated_pair_completeness"] is None


def test_fields_that_cannot_block_under_the_budget_are_an_error_naming_them(tmp_path, capsys):
    mentions, _ = generate_mentions(3000, seed=3)
    mentions[["record_id", "sex", "city"]].to_csv(tmp_path / "in.csv", index=False)
    code = main(
        ["dedupe", str(tmp_path / "in.csv"), "--id", "record_id", "--map", "sex=sex,city=city"]
        + ["--out", str(tmp_path / "o.csv")]
    )
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert "the mapped fields (city, sex) cannot block under the pair budget" in err


def _planned(frame: pd.DataFrame, budget: float):
    data = standardize_frame(frame)
    return plan_blocking(
        data,
        None,
        key_sources=KEY_SOURCES,
        pairs_per_record=budget,
        max_block_size=300,
        compare=lambda left, right: np.zeros((len(left), 0), dtype=np.int8),
        fit=lambda *args: pytest.fail("no seed pass expected"),
        excluded=lambda rule: set(),
    )


def test_plan_refuses_when_every_key_is_too_broad():
    frame = pd.DataFrame({"sex": ["m", "f"] * 200, "state": ["nc"] * 400})
    with pytest.raises(IpviError, match=r"the mapped fields \(sex, state\) cannot block"):
        _planned(frame, budget=50)


def test_an_inverted_em_solution_is_refused():
    # Pairs blocked on a postcode: half are households (same surname and phone, other first
    # names and dates of birth), half strangers; no two records are one person. EM's "match"
    # class is then the households, among whom first names and dates of birth agree LESS
    # often than among random pairs. Linking on it would chain households: it is refused.
    comparisons = [Comparison(c, [Exact()]) for c in ("zip", "last_name", "phone", "first_name")]
    comparisons.append(Comparison("dob", [Exact()]))
    rng = np.random.default_rng(0)
    n = 4000
    household = rng.random(n) < 0.5
    agree = np.where(household, 1, 2)
    levels = np.column_stack([np.ones(n), agree, agree, np.full(n, 2), np.full(n, 2)])
    random = np.column_stack(
        [rng.choice([1, 2], n, p=[p, 1 - p]) for p in (0.01, 0.01, 0.001, 0.05, 0.002)]
    )
    model = FellegiSunter(comparisons)
    with pytest.raises(IpviError) as error:
        model.fit(levels.astype(np.int8), random.astype(np.int8), [np.arange(n)], [{0}], 1e7)
    assert str(error.value) == EM_INVERTED.format(fields="first_name, dob")


def test_near_misses_are_never_conflicts():
    values = np.array(
        [
            ["1813-01-01"],  # 0
            ["1843-01-01"],  # 1: one digit off from 0
            ["2008-03-23"],  # 2
            ["2008-01-19"],  # 3: within a year of 2
            ["1980-03-04"],  # 4
            ["1980-04-03"],  # 5: day and month swapped
            ["1990-07-21"],  # 6: a wholly other date
            [""],  # 7: missing
        ],
        dtype=object,
    )
    hard = HardIdentifiers.from_values(values)
    left, right = np.array([0, 2, 4, 4, 6]), np.array([1, 3, 5, 6, 7])
    assert hard.conflict(left, right).tolist() == [False, False, False, True, False]


def test_conflicts_are_learned_not_assumed(tmp_path, capsys):
    # The generator's dates of birth are reliable: a hard constraint. With dates wrong in
    # every way (a third of the mentions), the same default treats them as evidence only.
    reports = {}
    for profile in (None, "dob_errors"):
        mentions, _ = generate_mentions(2000, seed=8, profile=profile)
        mapping = _write(mentions, tmp_path / "in.csv")
        summary = _dedupe(tmp_path / "in.csv", mapping, tmp_path / "out.csv", capsys)
        reports[profile] = {c["field"]: c for c in summary["conflict_fields"]}
    assert "dob" in reports[None] and reports[None]["dob"]["m_disagree"] <= 0.01
    assert "max_conflict_m" in reports[None]["dob"]["reason"]
    assert "dob" not in reports["dob_errors"]


def test_new_levels():
    left = standardize_frame(
        pd.DataFrame(
            {
                "first_name": ["jose luis", "j", "anna"],
                "dob": ["1990-03-08", "1990-03-08", "1990-03-08"],
                "zip": ["S11 8DQ", "27260", "27260"],
            }
        )
    )
    right = standardize_frame(
        pd.DataFrame(
            {
                "first_name": ["jose", "john", "maria"],
                "dob": ["1990-12-01", "1992-03-09", "1990-04-09"],
                "zip": ["S11 2AB", "27299", "28000"],
            }
        )
    )
    first = Comparison("first_name", [Exact(), TokenOverlap(), Initial()])
    assert first.levels_of(left, right).tolist() == [2, 3, 4]
    dob = Comparison("dob", [Exact(), WithinDays(365)])
    assert dob.levels_of(left, right).tolist() == [2, 3, 2]
    postcode = Comparison("zip", [Exact(), PostalArea()])
    assert postcode.levels_of(left, right).tolist() == [2, 2, 3]


def test_threshold_follows_the_probabilities():
    sure = np.r_[np.full(90, 0.999), np.full(10, 0.001)]
    assert expected_f1_threshold(sure, 0.2, 0.8) == 0.8  # anything works: the bound
    spread = np.linspace(0.01, 0.99, 99)
    assert 0.2 <= expected_f1_threshold(spread, 0.2, 0.8) < 0.5
