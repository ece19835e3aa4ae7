"""Frames to and from the Spark engine's working folder, as Parquet written in chunks by pyarrow.

Spark reads a folder of files, one per chunk, so no JDBC driver or registry connection is
needed in an executor, and the driver never holds a second whole copy of a frame in Arrow.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

CHUNK_ROWS = 250_000


def write_parquet(frame: pd.DataFrame, folder: Path, chunk_rows: int = CHUNK_ROWS) -> Path:
    """Write ``frame`` (its index dropped) to ``folder`` as ``part-NNNNN.parquet`` files.

    The schema is taken from the whole frame, so every chunk agrees (a chunk of all nulls
    keeps its column's type).
    """
    folder.mkdir(parents=True, exist_ok=False)
    schema = pa.Schema.from_pandas(frame, preserve_index=False)
    for number, start in enumerate(range(0, max(len(frame), 1), chunk_rows)):
        chunk = frame.iloc[start : start + chunk_rows]
        table = pa.Table.from_pandas(chunk, schema=schema, preserve_index=False)
        pq.write_table(table, folder / f"part-{number:05d}.parquet")
    return folder


def read_parquet(folder: Path, order_by: str | None = None) -> pd.DataFrame:
    """The Parquet files Spark wrote to ``folder``, as one frame sorted by ``order_by``."""
    files = sorted(folder.glob("*.parquet"))
    if not files:
        return pd.DataFrame()
    table = pa.concat_tables([pq.read_table(file) for file in files])
    # Each column's Arrow memory freed once converted (as pyspark's toPandas does with
    # selfDestruct), so the Arrow and pandas copies of only one column are held at once.
    frame = table.to_pandas(self_destruct=True, split_blocks=True, use_threads=False)
    del table
    if order_by is not None:
        order = np.argsort(frame[order_by].to_numpy(), kind="stable")
        frame = frame.iloc[order].reset_index(drop=True)
    return frame


def to_spark(session, frame: pd.DataFrame, folder: Path):
    """``frame`` written to ``folder`` (:func:`write_parquet`) and read by ``session``."""
    return session.read.parquet(str(write_parquet(frame, folder)))


def from_spark(frame, folder: Path, order_by: str | None = None) -> pd.DataFrame:
    """The Spark DataFrame ``frame`` written by Spark to ``folder`` and read back here
    (:func:`read_parquet`)."""
    frame.write.parquet(str(folder))
    return read_parquet(folder, order_by)
