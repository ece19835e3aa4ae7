"""Comparison levels, blocking, Fellegi-Sunter, clustering, evaluation, settings."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ipvi.config import config_from_dict, default_config_dict, load_config
from ipvi.errors import ConfigError, IpviError
from linkage import cluster as cluster_module
from linkage import compare as compare_module
from linkage import fellegi_sunter as fellegi_sunter_module
from linkage.blocking import candidate_pairs, linked_component_pairs
from linkage.cluster import cluster_records
from linkage.compare import (
    Comparison,
    DayMonthSwapped,
    Exact,
    JaroWinklerAtLeast,
    NameSwap,
    Nickname,
    OneCharOff,
    SameYear,
    TokenOverlap,
    Vocabulary,
    compare_pairs,
    encode_for,
)
from linkage.evaluate import blocking_metrics, cluster_metrics, metrics_by_group
from linkage.fellegi_sunter import NOT_FITTED, FellegiSunter
from linkage.linker import Linker
from linkage.rl import UnionBlocker, compare_with_recordlinkage
from linkage.settings import LinkageSettings
from linkage.standardize import standardize_frame
from synth.mentions import IDENTIFIER_FIELDS, generate_mentions


def frames(left: dict, right: dict):
    return standardize_frame(pd.DataFrame(left)), standardize_frame(pd.DataFrame(right))


def test_dob_levels_in_order_and_missing_is_not_disagreement():
    left, right = frames(
        {"dob": ["1980-03-04", "1980-03-04", "1980-03-04", "1980-03-04", "", "1980-03-04"]},
        {
            "dob": [
                "1980-03-04",
                "1980-03-05",
                "1980-04-03",
                "1980-11-30",
                "1980-01-01",
                "1990-01-01",
            ]
        },
    )
    dob = Comparison("dob", [Exact(), OneCharOff(), DayMonthSwapped(), SameYear()])
    assert dob.levels_of(left, right).tolist() == [1, 2, 3, 4, 0, 5]


def test_first_name_levels_nickname_and_swap():
    left, right = frames(
        {
            "first_name": ["robert", "robert", "maria", "jon"],
            "last_name": ["smith", "smith", "garcia", "doe"],
        },
        {
            "first_name": ["robert", "bob", "garcia", "zed"],
            "last_name": ["smith", "smith", "maria", "doe"],
        },
    )
    first = Comparison("first_name", [Exact(), Nickname(), JaroWinklerAtLeast(0.92), NameSwap()])
    assert first.levels_of(left, right).tolist() == [1, 2, 4, 5]


def test_compound_surname_shares_a_token():
    left, right = frames(
        {"last_name": ["Garcia Lopez", "Garcia-Lopez", "Smith"]},
        {"last_name": ["Lopez", "garcia lopez", "Smithers"]},
    )
    last = Comparison("last_name", [Exact(), TokenOverlap()])
    assert last.levels_of(left, right).tolist() == [2, 1, 3]


def test_token_overlap_of_a_pair_does_not_depend_on_the_other_pairs():
    """First and last tokens are compared in one code space: two single-token names that
    share nothing never agree because compound names came first (the Spark engine compares
    pairs in batches, so a pair's level must not depend on its batch)."""
    left = ["ana maria", "de la cruz", "garcia lopez", "branstead", "gomez", "lopez"]
    right = ["maria", "cruz", "lopez garcia", "marby", "white", "garcia lopez"]
    last = Comparison("last_name", [Exact(), TokenOverlap()])
    together = last.levels_of(
        pd.DataFrame({"last_name": left}), pd.DataFrame({"last_name": right})
    ).tolist()
    alone = [
        int(last.levels_of(pd.DataFrame({"last_name": [a]}), pd.DataFrame({"last_name": [b]}))[0])
        for a, b in zip(left, right, strict=True)
    ]
    assert together == alone == [2, 2, 2, 3, 3, 2]


def test_blocking_union_dedup_and_link_and_block_cap():
    frame = pd.DataFrame(
        {"dob": ["d1", "d1", "d2", "d2", "d2"], "ln_phon": ["A", "B", "B", "C", ""]}
    )
    pairs = candidate_pairs([["dob"], ["ln_phon"]], frame, max_block_size=10)
    assert sorted(zip(pairs.left.tolist(), pairs.right.tolist(), strict=True)) == [
        (0, 1),
        (1, 2),
        (2, 3),
        (2, 4),
        (3, 4),
    ]
    capped = candidate_pairs([["dob"]], frame, max_block_size=2)
    assert list(zip(capped.left, capped.right, strict=True)) == [(0, 1)]
    assert capped.skipped_blocks == [1]
    other = pd.DataFrame({"dob": ["d2", "d9"], "ln_phon": ["A", "A"]})
    linked = candidate_pairs([["dob"], ["ln_phon"]], frame, other, max_block_size=10)
    assert sorted(zip(linked.left.tolist(), linked.right.tolist(), strict=True)) == [
        (0, 0),
        (0, 1),
        (2, 0),
        (3, 0),
        (4, 0),
    ]
    index = UnionBlocker(rules=[["dob"]]).index(frame)
    assert len(index) == 4


def test_a_rule_can_have_its_own_block_size_limit():
    frame = pd.DataFrame(
        {"dob": ["d1", "d1", "d2", "d2", "d2"], "ln_phon": ["B", "B", "B", "C", "C"]}
    )
    # The surname rule alone is capped at 2: its block of three is skipped, the dob rule's not.
    pairs = candidate_pairs([["dob"], ["ln_phon"]], frame, max_block_size=[10, 2])
    assert pairs.skipped_blocks == [0, 1]
    assert sorted(zip(pairs.left.tolist(), pairs.right.tolist(), strict=True)) == [
        (0, 1),
        (2, 3),
        (2, 4),
        (3, 4),
    ]
    config = load_config().linkage.model_copy(
        update={"blocking_rules": [["dob"], ["ln_phon"]], "block_size_limits": {"ln_phon": 2}}
    )
    assert config.block_limits(config.blocking_rules) == [config.max_block_size, 2]
    data = default_config_dict()
    data["linkage"]["block_size_limits"] = {"surname": 2}
    with pytest.raises(ConfigError, match="not a blocking rule"):
        config_from_dict(data)


def test_linked_components_add_pairs_no_rule_found_and_only_across_files():
    # 0-1 and 1-2 link, 3-4 does not: 0-2 is compared through 1; 3-4 adds nothing
    left, right = np.array([0, 1, 3]), np.array([1, 2, 4])
    linked = np.array([True, True, False])
    new = linked_component_pairs(5, left, right, linked, max_block_size=10)
    assert [p.tolist() for p in new] == [[0], [2]]
    assert [p.tolist() for p in linked_component_pairs(5, left, right, linked, 2)] == [[], []]
    # two files (positions below 2 are the first): 0-1 would be a pair inside the first file
    both = (np.array([0, 1]), np.array([2, 2]), np.ones(2, bool))
    assert [p.tolist() for p in linked_component_pairs(3, *both, 10)] == [[0], [1]]
    assert [p.tolist() for p in linked_component_pairs(3, *both, 10, n_left=2)] == [[], []]


def test_iterative_blocking_raises_pair_completeness_on_generated_data():
    mentions, truth = generate_mentions(3000, seed=5)
    config = load_config().linkage
    fields = mentions.drop(columns=["record_id", "race", "ethnicity"])
    assert list(fields.columns) == list(IDENTIFIER_FIELDS)
    codes = pd.factorize(truth.to_numpy())[0]
    n_pairs = len(mentions) * (len(mentions) - 1) / 2
    completeness = {}
    for expand in (False, True):
        settings = LinkageSettings.from_config(
            config.model_copy(update={"expand_linked_components": expand})
        )
        result = Linker(settings).run(fields)
        metrics = blocking_metrics(result.pairs.left, result.pairs.right, codes, n_pairs)
        completeness[expand] = metrics["pair_completeness"]
    assert completeness[True] > completeness[False]


def test_model_not_fitted_is_a_clear_error():
    with pytest.raises(IpviError, match="not fitted"):
        FellegiSunter(comparisons=[]).predict_proba(np.zeros((1, 0), dtype=np.int8))
    assert "fit()" in NOT_FITTED


def test_fit_returns_self_and_learns_sensible_weights():
    mentions, truth = generate_mentions(3000, seed=3)
    settings = LinkageSettings.from_config(load_config().linkage)
    result = Linker(settings).run(mentions.drop(columns=["record_id", "race", "ethnicity"]))
    model = result.model
    weights = {c.name: w for c, w in zip(model.comparisons, model.level_weights(), strict=True)}
    assert weights["dob"][1] > 5 > weights["dob"][-1]  # exact dob strong, else against
    assert weights["first_name"][0] == 0  # missing: no evidence either way
    assert 0 < model.prior_ < 0.01
    metrics = cluster_metrics(result.labels, truth.to_numpy())
    assert metrics["pairwise_f1"] > 0.97 and metrics["bcubed_f1"] > 0.97
    contributions = model.contributions(result.levels[:3])
    assert {"dob_level", "dob_weight"} <= set(contributions.columns)


def test_term_frequency_makes_rare_surnames_stronger():
    mentions, _ = generate_mentions(3000, seed=4)
    settings = LinkageSettings.from_config(load_config().linkage)
    result = Linker(settings).run(mentions.drop(columns=["record_id", "race", "ethnicity"]))
    model = result.model
    k = [c.name for c in model.comparisons].index("last_name")
    levels = np.zeros((2, len(model.comparisons)), dtype=np.int8)
    levels[:, k] = 1
    frequencies = model.tf_["last_name"]
    common, rare = frequencies.index[0], frequencies.index[-1]
    adjusted = model.tf_adjustments(levels, {"last_name": np.array([common, rare], dtype=object)})
    assert adjusted[1, k] > adjusted[0, k]


def test_term_frequencies_of_categorical_values_equal_those_of_plain_values():
    # The linker passes categoricals (one lookup per distinct value); any array gives the same.
    mentions, _ = generate_mentions(2000, seed=6)
    settings = LinkageSettings.from_config(load_config().linkage)
    model = Linker(settings).run(mentions.drop(columns=["record_id", "race", "ethnicity"])).model
    k = [c.name for c in model.comparisons].index("last_name")
    values = np.array(list(model.tf_["last_name"].index[:50]) + ["NEVER SEEN"], dtype=object)
    levels = np.zeros((len(values), len(model.comparisons)), dtype=np.int8)
    levels[:, k] = 1
    plain = model.tf_adjustments(levels, {"last_name": values})
    categorical = model.tf_adjustments(levels, {"last_name": pd.Categorical(values)})
    np.testing.assert_allclose(plain, categorical)
    np.testing.assert_allclose(
        model.match_weight(levels, {"last_name": values}),
        model.match_weight(levels, {"last_name": pd.Categorical(values)}),
    )


def test_comparing_in_chunks_gives_the_same_levels(monkeypatch):
    mentions, _ = generate_mentions(1500, seed=8)
    settings = LinkageSettings.from_config(load_config().linkage)
    data = standardize_frame(mentions[list(IDENTIFIER_FIELDS)])
    comparisons = [c for c in settings.comparisons if set(c.columns) <= set(data.columns)]
    pairs = candidate_pairs([["ln_init"], ["dob_year"]], data, max_block_size=200)
    (coded,), vocabulary = encode_for(comparisons, [data])

    def levels():
        return compare_pairs(comparisons, pairs.left, pairs.right, coded, None, vocabulary)

    whole = levels()
    monkeypatch.setattr(compare_module, "COMPARE_CHUNK", 997)
    assert len(pairs) > 10 * 997
    np.testing.assert_array_equal(whole, levels())


def test_weighing_in_chunks_gives_the_same_weights(monkeypatch):
    # Each rule's pairs and the term-frequency values cut at the chunks' edges.
    mentions, _ = generate_mentions(2000, seed=6)
    settings = LinkageSettings.from_config(load_config().linkage)
    result = Linker(settings).run(mentions.drop(columns=["record_id", "race", "ethnicity"]))
    model, data = result.model, result.records
    pairs = candidate_pairs(result.rules, data, max_block_size=settings.config.max_block_size)
    (coded,), vocabulary = encode_for(model.comparisons, [data])
    levels = compare_pairs(model.comparisons, pairs.left, pairs.right, coded, None, vocabulary)
    tf_left = {c: pd.Categorical(data[c].to_numpy(dtype=object))[pairs.left] for c in model.tf_}
    whole = model.match_weight(levels, tf_left, pairs.rule_pairs)
    monkeypatch.setattr(fellegi_sunter_module, "WEIGHT_CHUNK", 97)
    assert len(pairs) > 10 * 97 and len(pairs.rule_pairs) > 1 and tf_left
    np.testing.assert_array_equal(whole, model.match_weight(levels, tf_left, pairs.rule_pairs))


def test_clustering_does_not_chain_through_weak_links():
    # two tight groups joined by one link that passes the threshold
    left = np.array([0, 0, 1, 3, 3, 4, 2, 0, 1])
    right = np.array([1, 2, 2, 4, 5, 5, 3, 3, 4])
    p = np.array([0.99, 0.99, 0.99, 0.99, 0.99, 0.99, 0.6, 0.01, 0.02])
    clusters = cluster_records(
        6,
        left,
        right,
        p,
        link_threshold=0.5,
        min_average_probability=0.5,
        strong=np.empty((6, 0), dtype=object),
    )
    assert len(set(clusters.labels[:3])) == 1 and len(set(clusters.labels[3:])) == 1
    assert clusters.labels[0] != clusters.labels[3]


@pytest.mark.parametrize(
    ("setting", "value"),
    [("CHUNK_PAIRS", 7), ("MAX_PRECHECK_IDENTITIES", 0), ("COMPACT_PAIRS", 0)],
    ids=["chunks of components", "every link conflict-tested", "compact arrays"],
)
def test_clustering_shortcuts_give_the_same_clusters(monkeypatch, setting, value):
    # Many small groups with weak bridges and conflicting identifiers: most components need a
    # rebuild, which runs chunk by chunk on large data and tests conflicts link by link only
    # in components where two records can conflict.
    rng = np.random.default_rng(3)
    n = 600
    group = rng.integers(0, 120, n)
    left, right = np.triu_indices(n, k=1)
    keep = rng.random(len(left)) < 0.02
    left, right = left[keep], right[keep]
    same = group[left] == group[right]
    p = np.where(same, rng.uniform(0.6, 0.999, len(left)), rng.uniform(0.0, 0.7, len(left)))
    # Identifiers of two groups lie more than a near miss apart (see HardIdentifiers).
    strong = np.array(
        [[f"{g % 7 * 1111:04d}", f"{1800 + g % 50 * 3}-{1 + g % 12:02d}-11"] for g in group],
        dtype=object,
    )
    strong[rng.random(n) < 0.05, 0] = "9999"

    def clusters():
        return cluster_records(
            n, left, right, p, link_threshold=0.5, min_average_probability=0.5, strong=strong
        )

    whole = clusters()
    monkeypatch.setattr(cluster_module, setting, value)
    chunked = clusters()
    assert whole.n_rebuilt_components > 1 and whole.refused
    np.testing.assert_array_equal(whole.labels, chunked.labels)
    assert whole.refused == chunked.refused


def test_conflicting_strong_identifiers_are_refused_and_queued():
    strong = np.array([["1111", "1980-01-01"], ["2222", "1975-05-05"]], dtype=object)
    clusters = cluster_records(
        2,
        np.array([0]),
        np.array([1]),
        np.array([0.97]),
        link_threshold=0.5,
        min_average_probability=0.5,
        strong=strong,
    )
    assert clusters.labels[0] != clusters.labels[1]
    assert clusters.refused == [(0, 1)]
    # a reviewer's "match" overrides
    forced = cluster_records(
        2,
        np.array([0]),
        np.array([1]),
        np.array([0.97]),
        link_threshold=0.5,
        min_average_probability=0.5,
        strong=strong,
        must_link=[(0, 1)],
    )
    assert forced.labels[0] == forced.labels[1]


def test_a_record_conflicting_with_any_member_of_a_group_is_refused():
    # 1 has no date of birth, so 1-2 conflicts on nothing; but 1 is merged with 0 first,
    # and 0 and 2 differ on SSN-4 and on date of birth: 2 may not join their group.
    strong = np.array([["1111", "1980-01-01"], ["1111", ""], ["2222", "1975-05-05"]], dtype=object)
    clusters = cluster_records(
        3,
        np.array([0, 1, 0]),
        np.array([1, 2, 2]),
        np.array([0.99, 0.95, 0.9]),
        link_threshold=0.5,
        min_average_probability=0.5,
        strong=strong,
    )
    assert clusters.labels[0] == clusters.labels[1] != clusters.labels[2]
    assert clusters.refused == [(1, 2)]


def test_exclusive_identifiers_conflict_on_any_difference():
    clusters = cluster_records(
        3,
        np.array([0, 0]),
        np.array([1, 2]),
        np.array([0.99, 0.99]),
        link_threshold=0.5,
        min_average_probability=0.5,
        strong=np.empty((3, 0), dtype=object),
        exclusive=np.array([["jr"], ["sr"], [""]], dtype=object),
    )
    assert clusters.labels[0] == clusters.labels[2] != clusters.labels[1]
    assert clusters.refused == [(0, 1)]


def test_vocabulary_derives_each_wanted_value_once():
    vocabulary = Vocabulary(np.array(["", "a", "bb", "ccc"], dtype=object))
    asked = []

    def length(values: pd.Series) -> pd.Series:
        asked.append(values.tolist())
        return values.str.len()

    out = vocabulary.derived("length", length, np.array([2, 2, 1], dtype=np.int32))
    assert (out[1], out[2]) == (1, 2)
    vocabulary.derived("length", length, np.array([3, 1, 2], dtype=np.int32))
    assert asked == [["a", "bb"], ["ccc"]]


def test_cannot_link_separates_a_confident_pair():
    clusters = cluster_records(
        2,
        np.array([0]),
        np.array([1]),
        np.array([0.99]),
        link_threshold=0.5,
        min_average_probability=0.5,
        strong=np.empty((2, 0), dtype=object),
        cannot_link=[(0, 1)],
    )
    assert clusters.labels[0] != clusters.labels[1]


def test_cluster_metrics_counts_splits_and_merges():
    predicted = np.array([0, 0, 1, 2, 2])
    truth = np.array(["a", "a", "a", "b", "c"])
    m = cluster_metrics(predicted, truth)
    assert m["pairwise_precision"] == 0.5 and m["pairwise_recall"] == pytest.approx(1 / 3)
    assert m["split_rate"] == 1.0 and m["false_merge_rate"] == 0.5
    groups = pd.DataFrame({"race": ["x", "x", "x", "y", "y"]})
    by = metrics_by_group(predicted, truth, groups)
    assert by["race"]["x"]["pairwise_precision"] == 1.0
    assert by["race"]["y"]["pairwise_precision"] == 0.0
    b = blocking_metrics(np.array([0, 1]), np.array([1, 2]), truth, 10)
    assert b["pair_completeness"] == pytest.approx(2 / 3) and b["reduction_ratio"] == 0.8


def test_settings_validate_once_and_name_the_key():
    base = load_config().linkage.model_dump()
    with pytest.raises(ConfigError, match="linkage.link_threshold"):
        LinkageSettings.from_dict({**base, "link_threshold": 0.95})
    with pytest.raises(ConfigError, match="unknown comparison level type 'sounds_like'"):
        LinkageSettings.from_dict(
            {**base, "comparisons": [{"column": "x", "levels": [{"type": "sounds_like"}]}]}
        )
    with pytest.raises(ConfigError, match="linkage.bogus"):
        LinkageSettings.from_dict({**base, "bogus": 1})
    custom = LinkageSettings.from_dict(
        {
            **base,
            "comparisons": [
                {"column": "zip", "levels": [{"type": "jaro_winkler", "threshold": 0.9}]}
            ],
        }
    )
    assert custom.comparisons[0].level_labels()[1] == "zip: Jaro-Winkler >= 0.9"


def test_settings_from_path(tmp_path):
    path = tmp_path / "linkage.yaml"
    path.write_text(
        "linkage:\n  comparisons:\n    - {column: dob, preset: dob}\n  blocking_rules: [[dob]]\n"
    )
    settings = LinkageSettings.from_path(path)
    assert [c.name for c in settings.comparisons] == ["dob"]


def test_recordlinkage_framework_gives_the_same_levels_as_the_fast_path():
    from linkage.compare import compare_pairs, encode_for

    mentions, _ = generate_mentions(400, seed=5)
    settings = LinkageSettings.from_config(load_config().linkage)
    linker = Linker(settings)
    data = linker._ensure_columns(linker.standardize(mentions.drop(columns=["record_id"])))
    pairs = UnionBlocker(rules=[["dob", "fn_init"], ["name_key", "sex"]]).index(data)
    (coded,), vocabulary = encode_for(settings.comparisons, [data])
    left = pairs.get_level_values(0).to_numpy()
    right = pairs.get_level_values(1).to_numpy()
    fast = compare_pairs(settings.comparisons, left, right, coded, None, vocabulary)
    framework = compare_with_recordlinkage(settings.comparisons, pairs, coded, None, vocabulary)
    assert len(pairs) > 100
    assert np.array_equal(fast, framework.to_numpy())


def test_supervised_scorer_learns_from_labels_and_refuses_too_few():
    from linkage.supervised import SupervisedScorer

    mentions, truth = generate_mentions(2000, seed=9)
    settings = LinkageSettings.from_config(load_config().linkage)
    result = Linker(settings).run(mentions.drop(columns=["record_id", "race", "ethnicity"]))
    t = truth.to_numpy()
    y = (t[result.pairs.left] == t[result.pairs.right]).astype(int)
    n_levels = [c.n_levels for c in settings.comparisons]
    with pytest.raises(IpviError, match="at least 5000 of each"):
        SupervisedScorer(n_levels, min_labels_per_class=5000).fit(result.levels, result.weight, y)
    scorer = SupervisedScorer(n_levels, min_labels_per_class=20)
    fitted = scorer.fit(result.levels[::2], result.weight[::2], y[::2])
    assert fitted is scorer and set(scorer.n_labels_) == {"match", "non-match"}
    p = scorer.predict_proba(result.levels[1::2], result.weight[1::2])
    assert ((p >= 0.5) == y[1::2]).mean() > 0.97
    with pytest.raises(IpviError, match="not fitted"):
        SupervisedScorer(n_levels).predict_proba(result.levels, result.weight)
