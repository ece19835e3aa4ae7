"""SparkLinker: the local :class:`~linkage.linker.Linker` with its pair-heavy steps in Spark.

Each step runs the local engine's own function in the executors, so there is one
implementation of every standardiser, comparison and clustering rule:

* standardisation: ``mapInPandas`` over :func:`linkage.standardize.standardize_frame`;
* blocking: the records grouped by (rule, key), each block's pairs generated from its
  members, blocks over the rule's size limit left out (and counted) as
  :func:`linkage.blocking.candidate_pairs` does; the rules' pairs unioned with a bit per
  rule, so EM still learns rule by rule;
* comparison: ``mapInPandas`` over :func:`linkage.compare.compare_pairs`, on pairs joined to
  both records' values;
* iterative blocking: the components of the first-pass links (:mod:`linkage.spark.graph`),
  the pairs inside each component of at most ``max_block_size`` records, less the pairs
  already scored, in :func:`linkage.blocking.linked_component_pairs`'s order;
* clustering: the components of the links and clerks' "match" decisions, then
  :func:`linkage.cluster.cluster_records` per component with ``applyInPandas`` (a component's
  clustering reads nothing outside it, so the labels are the local engine's).

The model (EM over the comparison patterns, term frequencies, the threshold) is fitted on the
driver by the local code from the levels Spark computed: a few bytes a pair. Results come back
as Parquet (:mod:`linkage.spark.parquet`), in the local engine's pair order.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from linkage.blocking import CandidatePairs
from linkage.cluster import CHUNK_PAIRS, Clusters, cluster_records
from linkage.compare import compare_pairs, encode_for
from linkage.linker import Linker
from linkage.settings import LinkageSettings
from linkage.spark.graph import connected_components
from linkage.spark.parquet import from_spark, to_spark
from linkage.spark.session import stage
from linkage.standardize import standardize_frame

logger = logging.getLogger(__name__)

# Rules are unioned with one bit each in a long.
MAX_RULES = 62


class SparkLinker(Linker):
    """A :class:`~linkage.linker.Linker` whose pair-heavy steps run in a Spark session.

    Parameters
    ----------
    settings : LinkageSettings
        As for the local engine.
    session : pyspark.sql.SparkSession
        The session to run in (:func:`linkage.spark.session.spark_session`).
    work_dir : Path
        A folder the driver and the executors share, for the Parquet they exchange.
    report : callable, optional
        Receives one line per finished stage: its name and elapsed seconds.
    """

    def __init__(
        self,
        settings: LinkageSettings,
        session,
        work_dir: Path,
        report: Callable[[str], None] = logger.info,
    ):
        super().__init__(settings)
        self.session = session
        self.work_dir = work_dir
        self.report = report

    # ------------------------------------------------------------------ plumbing

    def _folder(self, name: str) -> Path:
        """A new folder for one exchange (unique, so linkers may share a working folder)."""
        return Path(tempfile.mkdtemp(prefix=f"{name}-", dir=self.work_dir)) / "data"

    def _to_spark(self, frame: pd.DataFrame, name: str):
        return to_spark(self.session, frame, self._folder(name))

    def _from_spark(self, frame, name: str, order_by: str | None = None) -> pd.DataFrame:
        return from_spark(frame, self._folder(name), order_by)

    def _stage(self, name: str):
        return stage(name, self.report)

    # ------------------------------------------------------------------ standardise

    def standardize(self, frame: pd.DataFrame) -> pd.DataFrame:
        """:func:`standardize_frame` in the executors, one batch of records at a time."""
        with self._stage("standardize"):
            fields = [c for c in frame.columns if c not in ("record_id",)]
            source = frame[fields].reset_index(drop=True)
            source.insert(0, "_pos", np.arange(len(source), dtype=np.int64))
            columns = list(standardize_frame(source[fields].head(1)).columns)
            schema = ", ".join(["_pos long"] + [f"`{c}` string" for c in columns])
            records = self._to_spark(source, "mentions").mapInPandas(_standardized, schema)
            out = self._from_spark(records, "standardized", order_by="_pos")
        return out.drop(columns="_pos")

    # ------------------------------------------------------------------ block

    def _candidate_pairs(self, rules, data, right, limits) -> CandidatePairs:
        """The pairs of every rule, from one grouping of the records by (rule, key).

        Each record gets one key per rule whose columns it has (the columns' values as a JSON
        array, so distinct tuples never share a key); blocks over their rule's limit are left
        out and counted; a pair's rules are kept as one bit each. Also stages the run's
        records in Spark for the later steps.
        """
        if len(rules) > MAX_RULES:
            raise ValueError(f"at most {MAX_RULES} blocking rules")
        from pyspark.sql import functions as F

        with self._stage("block"):
            self._stage_records(data, right)
            offset = 0 if right is None else len(data)
            # Each record's key of every rule whose columns it has, in one pass over the records.
            keys = F.explode(
                F.array(
                    *[
                        F.struct(
                            F.lit(k).alias("rule"),
                            F.when(
                                F.expr(" and ".join(f"`{c}` != ''" for c in rule)),
                                F.to_json(F.array(*[F.col(c) for c in rule])),
                            ).alias("key"),
                        )
                        for k, rule in enumerate(rules)
                    ]
                )
            )
            keyed = (
                self.records_.select("_pos", keys.alias("k"))
                .select("_pos", "k.rule", "k.key")
                .where(F.col("key").isNotNull())
            )
            limit = F.element_at(F.array(*[F.lit(int(n)) for n in limits]), F.col("rule") + 1)
            # One shuffle gathers each block's members; its pairs are generated in place.
            blocks = (
                keyed.groupBy("rule", "key")
                .agg(F.count("*").alias("size"), F.array_sort(F.collect_list("_pos")).alias("m"))
                .withColumn("limit", limit)
                .cache()
            )
            skipped_of = dict(
                blocks.where(F.col("size") > F.col("limit")).groupBy("rule").count().collect()
            )
            inside = F.expr(
                "inline(flatten(transform(sequence(0, size - 2), i -> transform("
                "sequence(i + 1, size - 1), j -> named_struct('left', m[i], 'right', m[j])))))"
            )
            pairs = blocks.where((F.col("size") > 1) & (F.col("size") <= F.col("limit"))).select(
                "rule", inside
            )
            if right is not None:
                pairs = pairs.where(
                    (F.col("left") < offset) & (F.col("right") >= offset)
                ).withColumn("right", F.col("right") - offset)
            union = pairs.groupBy("left", "right").agg(
                F.bit_or(F.expr("shiftleft(cast(1 as bigint), rule)")).alias("rules")
            )
            out = self._from_spark(union, "pairs")
            blocks.unpersist()
            left, right_, masks = (
                out[c].to_numpy(np.int64) if len(out) else np.zeros(0, np.int64)
                for c in ("left", "right", "rules")
            )
            del out
            # In the local engine's order, one array at a time.
            order = np.lexsort((right_, left))
            left = left[order]
            right_ = right_[order]
            masks = masks[order]
        return CandidatePairs(
            left=left,
            right=right_,
            rule_pairs=[np.flatnonzero(masks & (1 << k)) for k in range(len(rules))],
            skipped_blocks=[int(skipped_of.get(k, 0)) for k in range(len(rules))],
        )

    def _stage_records(self, data: pd.DataFrame, right: pd.DataFrame | None) -> None:
        """The run's standardised records (the second file's after the first's) in Spark."""
        frames = [data] if right is None else [data, right]
        records = pd.concat(frames, ignore_index=True)
        records.insert(0, "_pos", np.arange(len(records), dtype=np.int64))
        self.offset_ = 0 if right is None else len(data)
        self.records_ = self._to_spark(records, "records").cache()

    # ------------------------------------------------------------------ compare

    def _compare(self, left: np.ndarray, right: np.ndarray, encoded) -> np.ndarray:
        """:func:`compare_pairs` in the executors, on the pairs joined to both records."""
        from pyspark.sql import functions as F

        comparisons = self.settings.comparisons
        columns = list(dict.fromkeys(c for comparison in comparisons for c in comparison.columns))
        with self._stage(f"compare {len(left)} pairs"):
            # Written and let go: Spark reads the pairs from their files.
            pairs = self._to_spark(
                pd.DataFrame(
                    {
                        "_k": np.arange(len(left), dtype=np.int64),
                        "_l": np.asarray(left, np.int64),
                        "_r": np.asarray(right, np.int64) + self.offset_,
                    }
                ),
                "compare",
            )
            values = self.records_.select("_pos", *columns)
            joined = pairs.join(
                values.select(
                    F.col("_pos").alias("_l"), *[F.col(c).alias(f"l_{c}") for c in columns]
                ),
                "_l",
            ).join(
                values.select(
                    F.col("_pos").alias("_r"), *[F.col(c).alias(f"r_{c}") for c in columns]
                ),
                "_r",
            )
            schema = ", ".join(["_k long"] + [f"level_{k} byte" for k in range(len(comparisons))])

            def levels(batches):
                for batch in batches:
                    yield _levels(batch, comparisons, columns)

            out = self._from_spark(joined.mapInPandas(levels, schema), "levels", order_by="_k")
        if not len(out):
            return np.zeros((0, len(comparisons)), dtype=np.int8)
        return out.drop(columns="_k").to_numpy(dtype=np.int8)

    # ------------------------------------------------------------------ iterative blocking

    def _component_pairs(self, n_records, left, right, linked, max_block_size, n_left=None):
        """:func:`linkage.blocking.linked_component_pairs` with the components in Spark."""
        from pyspark.sql import functions as F

        with self._stage("link components"):
            edges = pd.DataFrame({"src": left[linked], "dst": right[linked]}).astype(np.int64)
            if not len(edges):
                return np.zeros(0, np.int64), np.zeros(0, np.int64)
            components = connected_components(
                self._to_spark(edges, "links"), self._folder("link-components")
            )
            sizes = components.groupBy("component").count()
            members = components.join(
                sizes.where(F.col("count") <= max_block_size), "component"
            ).select("node", "component")
            a = members.select(F.col("node").alias("left"), "component")
            b = members.select(F.col("node").alias("right"), "component")
            pairs = a.join(b, "component").where(F.col("left") < F.col("right"))
            if n_left is not None:
                pairs = pairs.where((F.col("left") < n_left) & (F.col("right") >= n_left))
            known = pd.DataFrame(
                {"left": np.minimum(left, right), "right": np.maximum(left, right)}
            ).astype(np.int64)
            fresh = pairs.join(self._to_spark(known, "scored"), ["left", "right"], "left_anti")
            out = self._from_spark(fresh, "component-pairs")
        if not len(out):
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        order = np.lexsort(
            (out["right"].to_numpy(), out["left"].to_numpy(), out["component"].to_numpy())
        )
        out = out.iloc[order]
        return out["left"].to_numpy(np.int64), out["right"].to_numpy(np.int64)

    # ------------------------------------------------------------------ cluster

    def _cluster(self, n_records, left, right, probability, **options) -> Clusters:
        """:func:`cluster_records` per component of the links and "match" decisions.

        The components here join every pair at or above the link threshold; a "non-match"
        decision can only cut one of them further, which :func:`cluster_records` does inside
        the group, so a group holds whole components of the local engine.
        """
        from pyspark.sql import functions as F

        must = np.asarray(list(options.pop("must_link", ())), dtype=np.int64).reshape(-1, 2)
        cannot = np.asarray(list(options.pop("cannot_link", ())), dtype=np.int64).reshape(-1, 2)
        strong = np.asarray(options.pop("strong"), dtype=object)
        exclusive = options.pop("exclusive", None)
        exclusive = (
            np.empty((n_records, 0), dtype=object)
            if exclusive is None
            else np.asarray(exclusive, dtype=object)
        )
        threshold = options["link_threshold"]
        with self._stage("cluster"):
            linked = probability >= threshold
            edges = pd.DataFrame(
                {"src": np.r_[left[linked], must[:, 0]], "dst": np.r_[right[linked], must[:, 1]]}
            ).astype(np.int64)
            labels = np.arange(n_records, dtype=np.int64)
            refused: list[tuple[int, int]] = []
            rebuilt = 0
            if len(edges):
                components = connected_components(
                    self._to_spark(edges, "cluster-links"), self._folder("cluster-components")
                )
                kinds = np.r_[
                    np.zeros(len(left), np.int8),
                    np.ones(len(must), np.int8),
                    np.full(len(cannot), 2, np.int8),
                ]
                pairs = self._to_spark(
                    pd.DataFrame(
                        {
                            "_k": np.arange(len(kinds), dtype=np.int64),
                            "left": np.r_[left, must[:, 0], cannot[:, 0]].astype(np.int64),
                            "right": np.r_[right, must[:, 1], cannot[:, 1]].astype(np.int64),
                            "p": np.r_[probability, np.ones(len(must)), np.zeros(len(cannot))],
                            "kind": kinds,
                        }
                    ),
                    "cluster-pairs",
                )
                # Fresh column names per use: both sides of the cogroup come from one frame.
                of_left = components.toDF("left", "component")
                of_right = components.toDF("right", "component_r")
                inside = (
                    pairs.join(of_left, "left")
                    .join(of_right, "right")
                    .where(F.col("component") == F.col("component_r"))
                    .drop("component_r")
                )
                identifiers = pd.DataFrame(
                    {"node": np.arange(n_records, dtype=np.int64)}
                    | {f"s{k}": strong[:, k] for k in range(strong.shape[1])}
                    | {f"x{k}": exclusive[:, k] for k in range(exclusive.shape[1])}
                )
                nodes = self._to_spark(
                    identifiers.astype({c: str for c in identifiers.columns[1:]}), "identifiers"
                ).join(components, "node")
                n_strong, n_exclusive = strong.shape[1], exclusive.shape[1]
                # Whole components in groups of about CHUNK_PAIRS pairs, as the local engine
                # clusters them chunk by chunk (one call per component would cost a Python
                # call each), and at least one group per shuffle partition.
                groups = max(
                    int(self.session.conf.get("spark.sql.shuffle.partitions")),
                    -(-len(kinds) // CHUNK_PAIRS),
                )
                group = (F.col("component") % groups).alias("group")

                def cluster_group(pair_rows: pd.DataFrame, node_rows: pd.DataFrame):
                    return _cluster_component(pair_rows, node_rows, n_strong, n_exclusive, options)

                out = self._from_spark(
                    inside.groupBy(group)
                    .cogroup(nodes.groupBy(group))
                    .applyInPandas(
                        cluster_group,
                        "node long, label long, refused_with long, rebuilt int",
                    ),
                    "clusters",
                )
                placed = out[out["label"] >= 0]
                labels[placed["node"].to_numpy()] = placed["label"].to_numpy()
                refusals = out[out["refused_with"] >= 0]
                refused = list(
                    zip(
                        refusals["node"].astype(int).tolist(),
                        refusals["refused_with"].astype(int).tolist(),
                        strict=True,
                    )
                )
                rebuilt = int(out["rebuilt"].clip(lower=0).sum())
        return Clusters(
            labels=pd.factorize(labels)[0], refused=refused, n_rebuilt_components=rebuilt
        )


# ---------------------------------------------------------------------- executor functions


def _standardized(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    for batch in batches:
        positions = batch["_pos"].to_numpy()
        out = standardize_frame(batch.drop(columns="_pos").reset_index(drop=True))
        out.insert(0, "_pos", positions)
        yield out


def _levels(batch: pd.DataFrame, comparisons, columns: list[str]) -> pd.DataFrame:
    """The level columns of one batch of joined pairs, by the local engine's kernels."""
    left = pd.DataFrame({c: batch[f"l_{c}"].to_numpy(dtype=object) for c in columns})
    right = pd.DataFrame({c: batch[f"r_{c}"].to_numpy(dtype=object) for c in columns})
    coded, vocabulary = encode_for(comparisons, [left, right])
    rows = np.arange(len(batch))
    levels = compare_pairs(comparisons, rows, rows, coded[0], coded[1], vocabulary)
    out = pd.DataFrame(levels, columns=[f"level_{k}" for k in range(levels.shape[1])])
    out.insert(0, "_k", batch["_k"].to_numpy())
    return out


def _cluster_component(
    pairs: pd.DataFrame, nodes: pd.DataFrame, n_strong: int, n_exclusive: int, options: dict
) -> pd.DataFrame:
    """Whole components clustered by :func:`cluster_records`: each node's label (the smallest
    node of its cluster), refused links (node, refused_with) and the rebuilt count."""
    nodes = nodes.sort_values("node", kind="stable")
    ids = nodes["node"].to_numpy(np.int64)
    pairs = pairs.sort_values("_k", kind="stable")
    local_left = np.searchsorted(ids, pairs["left"].to_numpy(np.int64))
    local_right = np.searchsorted(ids, pairs["right"].to_numpy(np.int64))
    kind = pairs["kind"].to_numpy()
    scored = kind == 0

    def listed(which):
        return list(zip(local_left[which].tolist(), local_right[which].tolist(), strict=True))

    def values(prefix: str, n: int) -> np.ndarray:
        columns = [nodes[f"{prefix}{k}"].to_numpy(dtype=object) for k in range(n)]
        return np.column_stack(columns) if n else np.empty((len(ids), 0), dtype=object)

    clusters = cluster_records(
        len(ids),
        local_left[scored],
        local_right[scored],
        pairs["p"].to_numpy(float)[scored],
        strong=values("s", n_strong),
        exclusive=values("x", n_exclusive),
        must_link=listed(kind == 1),
        cannot_link=listed(kind == 2),
        **options,
    )
    smallest = pd.Series(ids).groupby(clusters.labels).transform("min").to_numpy()
    out = pd.DataFrame({"node": ids, "label": smallest, "refused_with": -1, "rebuilt": -1})
    refused = pd.DataFrame(
        {
            "node": [int(ids[a]) for a, _ in clusters.refused],
            "label": -1,
            "refused_with": [int(ids[b]) for _, b in clusters.refused],
            "rebuilt": -1,
        }
    )
    summary = pd.DataFrame(
        {
            "node": [-1],
            "label": [-1],
            "refused_with": [-1],
            "rebuilt": [clusters.n_rebuilt_components],
        }
    )
    return pd.concat([out, refused, summary], ignore_index=True)
