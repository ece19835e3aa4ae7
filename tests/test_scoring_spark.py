"""`ipvi score --all --engine spark` on a real standalone cluster writes what the local engine
writes: the same scores, tiers and reasons, the same issued scores, the same tier list files.

The two engines score two copies of the shared pipeline registry (tests/pipeline_support.py)
with its champion, on the cluster the linkage tests use (tests/conftest.py, ``spark_cluster``).
The Spark engine runs as users run it, a command of its own with its own JVM; the local engine
and the commands that fail before Spark starts run in this process (a Python start less each).
"""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest
import yaml

from linkage.spark.session import JAVA_MISSING
from tests.cli_support import in_process, run_ipvi
from tests.spark_support import cluster_conf

pytestmark = [pytest.mark.spark]

AS_OF = "2020-06-01"
# Columns that say when a row was written, or a random id: all the rest must agree.
WHEN_WRITTEN = {"scored_at", "issue_id", "issued_at", "created_at", "csv_path", "html_path"}
TABLES = ("scores", "issued_scores", "tier_lists", "review_pairs")


def _copy(pipeline: dict, folder: Path, spark: dict) -> dict:
    """The pipeline's registry copied into ``folder``, with a config naming the copy, its own
    tier-list folder and the ``spark`` section; the commands' env."""
    folder.mkdir()
    with (
        closing(sqlite3.connect(pipeline["folder"] / "registry.sqlite")) as source,
        closing(sqlite3.connect(folder / "registry.sqlite")) as target,
    ):
        source.backup(target)
    url = f"sqlite:///{folder / 'registry.sqlite'}"
    config = yaml.safe_load(Path(pipeline["env"]["IPVI_CONFIG"]).read_text())
    config["database"] = {"url": url}
    config["training"] = {**config.get("training", {}), "list_dir": str(folder / "lists")}
    config["spark"] = spark
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return {**pipeline["env"], "IPVI_CONFIG": str(path), "IPVI_DATABASE_URL": url}


def _rows(folder: Path) -> dict[str, list[tuple]]:
    """Every row of the tables ``score --all`` writes, without when or under which id."""
    out = {}
    with closing(sqlite3.connect(folder / "registry.sqlite")) as connection:
        for table in TABLES:
            names = [row[1] for row in connection.execute(f"pragma table_info({table})")]
            kept = [name for name in names if name not in WHEN_WRITTEN]
            query = f"select {', '.join(kept)} from {table}"
            out[table] = sorted(connection.execute(query).fetchall(), key=repr)
    return out


@pytest.mark.slow
def test_score_all_on_a_standalone_cluster_writes_what_the_local_engine_writes(
    pipeline, spark_cluster, tmp_path, monkeypatch, capsys
):
    runs = {}
    for engine in ("local", "spark"):
        env = _copy(pipeline, tmp_path / engine, cluster_conf(spark_cluster.master_url))
        # Other tests issue scores in the shared pipeline too: count what the copy held.
        issued_before = len(_rows(tmp_path / engine)["issued_scores"])
        args = ["score", "--all", "--as-of", AS_OF, "--engine", engine, "--json"]
        if engine == "spark":
            out = run_ipvi(args, env)
        else:
            code, out, err = in_process(args, env, monkeypatch, capsys)
            assert code == 0, err[-2000:]
        runs[engine] = json.loads(out.splitlines()[-1])
    local, spark = runs["local"], runs["spark"]
    assert (local["engine"], spark["engine"]) == ("local", "spark")
    assert local["n_scored"] > 500 and set(local["tier_counts"]) == set("ABCD")
    for figure in ("n_scored", "tier_counts", "changes", "review_pairs_prioritised"):
        assert spark[figure] == local[figure], figure
    for kind in ("csv", "html"):
        assert Path(spark[kind]).read_bytes() == Path(local[kind]).read_bytes()
    local_rows, spark_rows = _rows(tmp_path / "local"), _rows(tmp_path / "spark")
    assert len(local_rows["issued_scores"]) == issued_before + local["n_scored"]
    for table in TABLES:
        assert spark_rows[table] == local_rows[table], table


def test_score_all_without_java_or_with_an_unknown_engine_fails_in_one_line_writing_nothing(
    pipeline, tmp_path, monkeypatch, capsys
):
    env = _copy(pipeline, tmp_path / "run", {"master": "local[1]"})
    before = _rows(tmp_path / "run")
    for options, extra, message in [
        (["--engine", "spark"], {"JAVA_HOME": str(tmp_path / "no-jdk")}, JAVA_MISSING),
        (["--engine", "dask"], {}, "--engine: give local or spark, not 'dask'"),
    ]:
        args = ["score", "--all", "--as-of", AS_OF, *options]
        code, _, err = in_process(args, {**env, **extra}, monkeypatch, capsys)
        assert code == 2
        assert err.strip().splitlines() == [f"error: {message}"]
    assert _rows(tmp_path / "run") == before
    assert not (tmp_path / "run" / "lists").exists()
