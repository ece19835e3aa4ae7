"""Bulk inserts through the database driver: ``executemany`` on SQLite, ``COPY`` on PostgreSQL.

SQLAlchemy's per-row parameter handling dominates inserts of many rows. Here each
column is converted once, by its declared type, to what SQLAlchemy itself would store (SQLite
keeps dates as ISO text, JSON as ``json.dumps`` text), so SQLAlchemy reads the rows back as it
would have written them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import numpy as np
import pandas as pd
import pyarrow as pa
from sqlalchemy import JSON, Connection, Table
from sqlalchemy.types import Boolean, Date, DateTime, Float, Integer

from ipvi.schema import TEXT

CHUNK_ROWS = 50_000


def bulk_insert(
    connection: Connection,
    table: Table,
    frame: pd.DataFrame,
    advance: Callable[[int], None] | None = None,
) -> None:
    """Insert the rows of ``frame`` (its columns named as ``table``'s) in chunks.

    Columns of ``table`` missing from ``frame`` take their defaults. ``advance(n)`` is called
    after each chunk of ``n`` rows.
    """
    if frame.empty:
        return
    names = [column.name for column in table.columns if column.name in frame.columns]
    dbapi = connection.connection.driver_connection
    postgres = connection.dialect.name == "postgresql"
    for chunk in _chunks(frame[names]):
        values = [_driver_values(chunk[name], table.c[name].type) for name in names]
        rows = list(zip(*values, strict=True))
        if postgres:
            with dbapi.cursor() as cursor:
                sql = f"COPY {table.name} ({', '.join(names)}) FROM STDIN"
                with cursor.copy(sql) as copy:
                    for row in rows:
                        copy.write_row(row)
        else:
            placeholders = ", ".join("?" for _ in names)
            dbapi.executemany(
                f"INSERT INTO {table.name} ({', '.join(names)}) VALUES ({placeholders})", rows
            )
        if advance is not None:
            advance(len(chunk))


def _chunks(frame: pd.DataFrame) -> Iterator[pd.DataFrame]:
    for start in range(0, len(frame), CHUNK_ROWS):
        yield frame.iloc[start : start + CHUNK_ROWS]


def _driver_values(values: pd.Series, column_type) -> list:
    """One column as plain Python values for the driver; missing values become ``None``."""
    if isinstance(column_type, DateTime | Date):
        unit = "D" if isinstance(column_type, Date) else "us"
        stamps = np.datetime_as_string(values.to_numpy(dtype="datetime64[us]"), unit=unit)
        text = pd.Series(stamps, dtype=TEXT).str.replace("T", " ", regex=False)
        return pa.array(text.mask(values.isna().to_numpy()).array).to_pylist()
    if isinstance(column_type, Boolean):
        flags = values.astype("boolean").astype("Int8")
        return flags.to_numpy(dtype=object, na_value=None).tolist()
    if isinstance(column_type, Integer):
        return values.astype("Int64").to_numpy(dtype=object, na_value=None).tolist()
    if isinstance(column_type, Float):
        return values.astype("Float64").to_numpy(dtype=object, na_value=None).tolist()
    if isinstance(column_type, JSON):
        # What SQLAlchemy's JSON type writes (its default serializer is json.dumps).
        return [json.dumps(value) for value in values.tolist()]
    return pa.array(values.astype(TEXT).array).to_pylist()
