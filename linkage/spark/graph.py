"""Connected components of an edge list in Spark DataFrames: large-star / small-star.

Kiveris et al., "Connected Components in MapReduce and Beyond" (SoCC 2014). Edges are kept as
(node, parent) with parent < node. Large-star links every larger neighbour of a node to the
node's smallest neighbour (itself included); small-star links a node and its smaller
neighbours to the smallest of them. Both keep the components and shrink their diameter, until
every component is a star around its smallest node: each node then has one parent, and no
parent has one. The edge list is checkpointed each round (written as Parquet and read back:
one job a round, where Spark's own reliable checkpoint computes a round twice), so the plan
does not grow with the rounds, and a lost executor costs one round, not all. A component is
labelled by its smallest node, as :func:`ipvi.arrays.connected_labels` labels it.
"""

from __future__ import annotations

from pathlib import Path

MAX_ROUNDS = 64


def _both_ways(edges, F):
    """Each edge (node, parent) as itself and reversed, in one pass over ``edges``."""
    ends = F.explode(
        F.array(
            F.struct(F.col("node").alias("a"), F.col("parent").alias("b")),
            F.struct(F.col("parent").alias("a"), F.col("node").alias("b")),
        )
    )
    return edges.select(ends.alias("e")).select(
        F.col("e.a").alias("node"), F.col("e.b").alias("parent")
    )


def _large_star(edges, F, W):
    # Each neighbour larger than the node hangs from the node's smallest neighbour (itself
    # included): a window over the node's edges, one shuffle where a join would take two.
    low = F.least(F.min("parent").over(W.partitionBy("node")), F.col("node"))
    return (
        _both_ways(edges, F)
        .withColumn("low", low)
        .where(F.col("parent") > F.col("node"))
        .select(F.col("parent").alias("node"), F.col("low").alias("parent"))
    )


def _small_star(edges, F, W):
    low = F.min("parent").over(W.partitionBy("node"))
    # The node and each of its smaller neighbours hang from the smallest of them (the
    # smallest itself excepted).
    return (
        edges.withColumn("low", low)
        .select(F.explode(F.array("node", "parent")).alias("node"), F.col("low").alias("parent"))
        .where(F.col("node") != F.col("parent"))
    )


def _checkpointed(frame, folder: Path):
    """``frame`` written to ``folder`` and read back: its lineage cut."""
    frame.write.parquet(str(folder))
    return frame.sparkSession.read.parquet(str(folder))


def _stars(edges, F) -> bool:
    """Whether every component is a star: no node has two parents, no parent has a parent."""
    roles = edges.select("node", F.lit(1).alias("child"), F.lit(0).alias("parent")).unionByName(
        edges.select(
            F.col("parent").alias("node"), F.lit(0).alias("child"), F.lit(1).alias("parent")
        )
    )
    per_node = roles.groupBy("node").agg(
        F.sum("child").alias("parents"), F.max("parent").alias("is_parent")
    )
    bad = per_node.where(
        (F.col("parents") > 1) | ((F.col("parents") > 0) & (F.col("is_parent") > 0))
    )
    return bad.limit(1).count() == 0


def connected_components(edges, folder: Path):
    """(node, component) for every node of ``edges`` (columns ``src``, ``dst``, longs).

    ``component`` is the smallest node of the node's component; nodes without an edge (and
    self-loops alone) are not listed. ``folder`` (not yet existing) receives each round's edges.
    """
    from pyspark.sql import Window as W
    from pyspark.sql import functions as F

    current = _checkpointed(
        edges.where(F.col("src") != F.col("dst"))
        .select(F.greatest("src", "dst").alias("node"), F.least("src", "dst").alias("parent"))
        .distinct(),
        Path(folder) / "round-0",
    )
    for round_ in range(1, MAX_ROUNDS + 1):
        current = _small_star(_large_star(current, F, W), F, W)
        current = _checkpointed(current.distinct(), Path(folder) / f"round-{round_}")
        if _stars(current, F):
            break
    else:
        raise RuntimeError(f"connected components did not converge in {MAX_ROUNDS} rounds")
    roots = current.select(F.col("parent").alias("node"), F.col("parent").alias("component"))
    return current.select("node", F.col("parent").alias("component")).unionByName(roots.distinct())
