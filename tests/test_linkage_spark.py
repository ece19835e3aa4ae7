"""The Spark engine gives the local engine's answers, on a real standalone cluster, and fails
in one line (registry untouched) when Spark cannot run.

A cluster of one master and one worker on loopback is started from the pyspark installation
(tests/spark_support.py). Each Spark run re-links a registry the local engine linked just
before: person ids are stable, so any cluster that differs shows as a merge, a split or a
changed crosswalk row.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pytest
import yaml

from ipvi.config import config_from_dict, default_config_dict
from ipvi.errors import ConfigError
from linkage.spark.session import JAVA_MISSING, JOB_FAILED, MASTER_UNREACHABLE
from tests.cli_support import in_process
from tests.spark_support import cluster_conf, free_port, kill, quick_conf

pytestmark = [pytest.mark.spark]


def _spark_link_started(
    env: dict, *options: str, until: str = "spark: standardize"
) -> tuple[subprocess.Popen, list[str]]:
    """`ipvi link --engine spark` started, up to its first standard error line that starts
    with ``until`` (default: once its first stage is done): the process and the lines read."""
    process = subprocess.Popen(
        [sys.executable, "-m", "ipvi.cli", "link", "--engine", "spark", "--no-link-index"]
        + list(options),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **env},
    )
    lines = []
    for line in process.stderr:
        lines.append(line)
        if line.startswith(until):
            break
    return process, lines


def _copy(registry: Path, folder: Path, spark: dict) -> dict:
    """A copy of the ``registry`` file in ``folder``, with a config naming the ``spark``
    section; the commands' env."""
    folder.mkdir()
    shutil.copy(registry, folder / "reg.sqlite")
    url = f"sqlite:///{folder / 'reg.sqlite'}"
    config = folder / "config.yaml"
    config.write_text(yaml.safe_dump({"database": {"url": url}, "spark": spark}))
    return {
        "registry": folder / "reg.sqlite",
        "env": {"IPVI_CONFIG": str(config), "IPVI_DATABASE_URL": url},
    }


def _state(registry: Path) -> dict:
    """The crosswalk, the pending review pairs, the runs and the linkage lock's holders of
    the ``registry`` file."""
    with sqlite3.connect(registry) as connection:
        return {
            "crosswalk": connection.execute(
                "select record_id, person_id, link_probability from crosswalk order by record_id"
            ).fetchall(),
            "pending": connection.execute(
                "select pair_id, queue from review_pairs where status = 'pending' order by pair_id"
            ).fetchall(),
            "runs": connection.execute(
                "select run_id, status from linkage_runs order by started_at"
            ).fetchall(),
            "lock": connection.execute("select * from linkage_lock").fetchall(),
        }


def test_engine_and_spark_settings_are_validated():
    config = default_config_dict()
    for section, key, value, where in [
        ("linkage", "engine", "dask", "linkage.engine"),
        ("spark", "master", "localhost:7077", "spark.master"),
        ("spark", "conf", {"spark.executor.memory": ["4g"]}, "spark.conf"),
        ("spark", "workers", 3, "spark.workers"),
    ]:
        bad = {**config, section: {**config[section], key: value}}
        with pytest.raises(ConfigError, match=f"config key '{where}"):
            config_from_dict(bad)
    assert config_from_dict(config).spark.master == "local[*]"


@pytest.mark.slow
def test_the_sample_on_a_standalone_cluster_gives_the_local_crosswalk(
    linked_sample, spark_cluster, tmp_path
):
    """`ipvi link --engine spark` through spark://127.0.0.1:PORT, its executor killed once the
    first stage is done: the lost tasks run again on the executor the worker starts in its
    place, and the run gives the local engine's clusters (no id merged, split or minted), the
    same confidences and the same review queue."""
    cluster = spark_cluster
    local = _state(linked_sample)
    copy = _copy(linked_sample, tmp_path / "run", cluster_conf(cluster.master_url))
    launched = (cluster.folder / "worker.log").read_text().count("Asked to launch executor")
    process, progress = _spark_link_started(copy["env"], "--json")
    executors = cluster.executors()
    assert executors, "no executor to kill"
    for executor in executors:
        kill(executor)
    progress += process.stderr.readlines()
    out = process.stdout.read()
    process.wait(timeout=600)
    progress = "".join(progress)
    assert process.returncode == 0, progress[-3000:]
    assert f"spark: {cluster.master_url}, UI http" in progress
    for stage in ("standardize", "block", "compare", "link components", "cluster"):
        assert f"spark: {stage} " in progress
    log = (cluster.folder / "worker.log").read_text()
    assert log.count("Asked to launch executor") >= launched + 2  # the first, its successor
    summary = json.loads(out.splitlines()[-1])
    assert summary["engine"] == "spark"
    assert (summary["minted"], summary["merged"], summary["split"]) == (0, 0, 0)
    spark = _state(copy["registry"])
    assert spark["crosswalk"] == local["crosswalk"]
    assert spark["pending"] == local["pending"]
    assert spark["runs"][-1][1] == "succeeded"


def test_unreachable_master_fails_in_one_line_registry_untouched(
    linked_sample, tmp_path, monkeypatch, capsys
):
    before = _state(linked_sample)
    master = f"spark://127.0.0.1:{free_port()}"
    copy = _copy(linked_sample, tmp_path / "run", {"master": master})
    started = time.monotonic()
    args = ["link", "--engine", "spark", "--no-link-index"]
    code, _, err = in_process(args, copy["env"], monkeypatch, capsys)
    assert code == 2
    assert time.monotonic() - started < 60
    message = MASTER_UNREACHABLE.format(master=master, why="Connection refused")
    assert err.strip().splitlines() == [f"error: {message}"]
    after = _state(copy["registry"])
    assert after["crosswalk"] == before["crosswalk"]
    assert after["pending"] == before["pending"]
    assert after["runs"][:-1] == before["runs"] and after["runs"][-1][1] == "failed"


@pytest.mark.slow
def test_spark_dying_mid_run_fails_in_one_line_registry_untouched(linked_sample, tmp_path):
    """Local mode runs the executors in the driver's JVM: killed once the session is up (the
    run under way, the lock held), the run ends in one error line, the lock is released, and
    the crosswalk stays as it was."""
    before = _state(linked_sample)
    copy = _copy(linked_sample, tmp_path / "run", {"master": "local[1]", "conf": quick_conf(1)})
    process, lines = _spark_link_started(copy["env"], until="spark: local[1], UI")
    jvms = [
        child
        for child in psutil.Process(process.pid).children(recursive=True)
        if child.name() == "java"
    ]
    assert jvms, "no JVM to kill"
    for jvm in jvms:
        jvm.kill()
    lines += process.stderr.readlines()
    process.wait(timeout=300)
    assert process.returncode == 2
    errors = [line for line in lines if line.startswith("error:")]
    prefix = JOB_FAILED.split("(")[0]
    assert len(errors) == 1 and errors[0].startswith(f"error: {prefix}"), lines[-5:]
    assert errors[0] == lines[-1]  # (pyspark's own accumulator thread may print a trace first)
    after = _state(copy["registry"])
    assert after["crosswalk"] == before["crosswalk"]
    assert after["runs"][-1][1] == "failed"
    assert before["lock"] == after["lock"] == []  # released


def test_missing_java_fails_in_one_line_registry_untouched(
    linked_sample, tmp_path, monkeypatch, capsys
):
    before = _state(linked_sample)
    copy = _copy(linked_sample, tmp_path / "run", {"master": "local[1]"})
    env = {**copy["env"], "JAVA_HOME": str(tmp_path / "no-jdk")}
    code, _, err = in_process(
        ["link", "--engine", "spark", "--no-link-index"], env, monkeypatch, capsys
    )
    assert code == 2
    assert err.strip().splitlines() == [f"error: {JAVA_MISSING}"]
    assert _state(copy["registry"])["crosswalk"] == before["crosswalk"]


@pytest.fixture(scope="module")
def local_spark():
    """A Spark session in local mode, as ``--engine spark`` opens it by default."""
    from ipvi.config import SparkConfig
    from linkage.spark.session import spark_session

    config = SparkConfig(master="local[2]", conf=quick_conf(2))
    with spark_session(config, report=lambda line: None) as opened:
        yield opened


@pytest.mark.slow
def test_spark_linker_matches_the_local_linker_step_by_step(local_spark):
    """Linking two files of generated mentions (deduplication runs on the cluster above): the
    same pairs (with their rules and skipped blocks), levels, weights and clusters; components
    as connected_labels finds them."""
    from ipvi.arrays import connected_labels
    from linkage.linker import Linker
    from linkage.settings import LinkageSettings
    from linkage.spark.graph import connected_components
    from linkage.spark.linker import SparkLinker
    from synth.mentions import IDENTIFIER_FIELDS, generate_mentions

    session, work = local_spark
    mentions, _ = generate_mentions(2400, seed=5)
    frame = mentions[list(IDENTIFIER_FIELDS)]
    settings = LinkageSettings.from_config(config_from_dict(default_config_dict()).linkage)
    settings = settings.for_fields(
        [f for f in IDENTIFIER_FIELDS if f not in ("race", "ethnicity")], []
    )
    # Two files holding mentions of the same persons: every other mention in each.
    first, other = frame.iloc[::2].reset_index(drop=True), frame.iloc[1::2].reset_index(drop=True)
    local = Linker(settings).run(first, other)
    spark = SparkLinker(settings, session, work, report=lambda line: None).run(first, other)
    assert len(local.pairs) > 1000 and local.labels.max() < len(frame) - 200
    assert np.array_equal(spark.pairs.left, local.pairs.left)
    assert np.array_equal(spark.pairs.right, local.pairs.right)
    assert spark.pairs.skipped_blocks == local.pairs.skipped_blocks
    assert spark.blocking == local.blocking  # per-rule pairs and matches
    assert np.array_equal(spark.levels, local.levels)
    assert np.array_equal(spark.weight, local.weight)
    assert np.array_equal(spark.labels, local.labels)
    assert sorted(spark.clusters.refused) == sorted(local.clusters.refused)
    rng = np.random.default_rng(3)
    left = rng.integers(0, 5000, 4000)
    right = np.minimum(left + rng.integers(0, 4, 4000), 4999)
    edges = session.createDataFrame(pd.DataFrame({"src": left, "dst": right}))
    found = connected_components(edges, work / "components").toPandas()
    labels = np.arange(5000)
    labels[found["node"].to_numpy()] = found["component"].to_numpy()
    assert found["node"].is_unique
    assert np.array_equal(labels, connected_labels(5000, left, right))
