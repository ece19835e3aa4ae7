"""Run Splink 5 on a Parquet file as its own tutorials configure it (benchmark helper).

Runs inside the separate benchmark virtualenv (``.venv-bench``, ``pip install -e .[bench]``
or ``pip install splink==5.0.0``), never the project's: called by benchmarks/bench_linkage.py
as ``.venv-bench/bin/python benchmarks/linkage_splink_runner.py IN.parquet OUT.parquet PROFILE
[IN2.parquet]``. Input columns: ``unique_id`` plus the profile's columns; output: unique_id,
cluster_id. Prints one JSON line: wall seconds and peak RSS.

Profiles follow Splink's examples: ``people`` (the deduplicate-50k tutorial: forename/surname,
date of birth, postcode-like and exact columns, EM on two blocking rules), ``febrl``
(Splink's FEBRL examples) and ``generic`` (one configuration for any file of our canonical
columns, as its tutorial builds one: a comparison from its library for each field type,
``block_on`` over pairs of the identifying fields, m by EM on two blocking rules, term
frequencies on names).
"""

from __future__ import annotations

import json
import resource
import sys
import time

# Fields the generic profile pairs in its blocking rules (those present).
GENERIC_BLOCKING = ("first_name", "surname", "dob", "zip", "email", "street", "ssn_last4", "phone")


def generic_comparison(column: str):
    """The comparison library's comparison for one of our canonical field types."""
    import splink.comparison_library as cl

    if column in ("first_name", "surname", "middle_name"):
        return cl.NameComparison(column).configure(term_frequency_adjustments=True)
    if column == "dob":
        return cl.DateOfBirthComparison(column, input_is_string=True)
    if column == "zip":
        return cl.PostcodeComparison(column)
    if column == "email":
        return cl.EmailComparison(column)
    if column in ("ssn_last4", "phone"):
        return cl.DamerauLevenshteinAtThresholds(column, 1)
    if column in ("sex", "suffix", "city"):
        return cl.ExactMatch(column).configure(term_frequency_adjustments=True)
    return cl.JaroWinklerAtThresholds(column, [0.9, 0.7])


def generic_settings(columns: list[str]):
    from itertools import combinations

    from splink import block_on

    comparisons = [generic_comparison(column) for column in columns]
    blocking = [c for c in GENERIC_BLOCKING if c in columns]
    rules = [block_on(a, b) for a, b in combinations(blocking, 2)]
    training = [block_on("first_name", "surname"), block_on("dob")]
    deterministic = [block_on("first_name", "surname", "dob")]
    return comparisons, rules, training, deterministic


def settings_for(profile: str, link_type: str, columns: list[str]):
    import splink.comparison_library as cl
    from splink import SettingsCreator, block_on

    if profile == "generic":
        comparisons, rules, training, deterministic = generic_settings(columns)
    elif profile == "people":
        comparisons = [
            cl.NameComparison("first_name").configure(term_frequency_adjustments=True),
            cl.NameComparison("surname").configure(term_frequency_adjustments=True),
            cl.DateOfBirthComparison("dob", input_is_string=True),
            cl.ExactMatch("zip").configure(term_frequency_adjustments=True),
            cl.ExactMatch("ssn_last4"),
            cl.ExactMatch("sex"),
            cl.LevenshteinAtThresholds("street", 2),
            cl.ExactMatch("phone"),
        ]
        rules = [
            block_on("first_name", "surname"),
            block_on("surname", "dob"),
            block_on("first_name", "dob"),
            block_on("zip", "first_name"),
            block_on("ssn_last4", "dob"),
        ]
        training = [block_on("first_name", "surname"), block_on("dob")]
        deterministic = [block_on("first_name", "surname", "dob")]
    else:  # febrl
        comparisons = [
            cl.NameComparison("given_name").configure(term_frequency_adjustments=True),
            cl.NameComparison("surname").configure(term_frequency_adjustments=True),
            cl.DateOfBirthComparison(
                "date_of_birth", input_is_string=True, datetime_format="%Y%m%d"
            ),
            cl.DamerauLevenshteinAtThresholds("soc_sec_id", [1, 2]),
            cl.ExactMatch("street_number"),
            cl.DamerauLevenshteinAtThresholds("postcode", [1, 2]),
            cl.JaroWinklerAtThresholds("address_1", [0.9, 0.7]),
            cl.JaroWinklerAtThresholds("suburb", [0.9, 0.7]),
            cl.ExactMatch("state"),
        ]
        rules = [
            block_on("given_name", "surname"),
            block_on("date_of_birth"),
            block_on("soc_sec_id"),
            block_on("postcode", "street_number"),
        ]
        training = [block_on("given_name", "surname"), block_on("date_of_birth")]
        deterministic = [block_on("soc_sec_id"), block_on("given_name", "surname", "date_of_birth")]
    settings = SettingsCreator(
        link_type=link_type,
        comparisons=comparisons,
        blocking_rules_to_generate_predictions=rules,
        retain_intermediate_calculation_columns=False,
    )
    return settings, training, deterministic


def main(argv: list[str]) -> int:
    import duckdb
    from pyarrow import parquet
    from splink import DuckDBAPI, Linker

    source, out, profile = argv[:3]
    second = argv[3] if len(argv) > 3 else None
    start = time.perf_counter()
    connection = duckdb.connect()
    db_api = DuckDBAPI(connection=connection)
    first = parquet.read_table(source)
    tables = [db_api.register(first, table_name="a")]
    if second:
        tables.append(db_api.register(parquet.read_table(second), table_name="b"))
    columns = [c for c in first.column_names if c != "unique_id"]
    settings, training, deterministic = settings_for(
        profile, "link_only" if second else "dedupe_only", columns
    )
    linker = Linker(tables if second else tables[0], settings)
    linker.training.estimate_probability_two_random_records_match(deterministic, recall=0.7)
    linker.training.estimate_u_using_random_sampling(max_pairs=1e6)
    for rule in training:
        linker.training.estimate_parameters_using_expectation_maximisation(rule)
    predictions = linker.inference.predict(threshold_match_probability=0.5)
    clusters = linker.clustering.cluster_pairwise_predictions_at_threshold(predictions, 0.5)
    table = clusters.as_duckdbpyrelation().select("unique_id, cluster_id")
    if second:
        table = clusters.as_duckdbpyrelation().select("source_dataset, unique_id, cluster_id")
    table.write_parquet(out)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"seconds": round(seconds, 3), "peak_rss_bytes": peak}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
