"""Read one agency extract (CSV or Parquet) as text columns, with errors that name the file.

Every column is read as text so that codes, ZIP codes and SSN digits keep their leading zeros and
the mapping decides what each value means. Lines the CSV parser cannot split into the header's
columns are set aside (they are quarantined, never dropped silently). Error messages name the
file and the column, never a value: extracts hold names and dates of birth.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from ipvi.errors import IpviError
from ipvi.schema import TEXT


@dataclass(frozen=True)
class Extract:
    """One extract as text.

    Attributes
    ----------
    rows : DataFrame
        Every column as text, missing as the empty string.
    row_numbers : Series
        The file line of each row (header = line 1; exact unless a quoted value spans lines).
    malformed : DataFrame
        ``row_number, text`` of the lines with the wrong number of columns.
    """

    rows: pd.DataFrame
    row_numbers: pd.Series
    malformed: pd.DataFrame


def header(path: Path) -> list[str]:
    """The column names of an extract, checking it can be read at all."""
    if not path.is_file():
        raise IpviError(f"{path}: not a file")
    if path.suffix.lower() == ".parquet":
        try:
            return list(pq.read_schema(path).names)
        except (pa.ArrowException, OSError) as error:
            raise IpviError(
                f"{path}: not a readable Parquet file ({type(error).__name__})"
            ) from None
    try:
        with path.open("rb") as handle:
            line = handle.readline().decode("utf-8-sig")
        first = next(csv.reader([line]), None)
    except UnicodeDecodeError:
        raise IpviError(f"{path}: not UTF-8 text") from None
    except (OSError, csv.Error) as error:
        raise IpviError(f"{path}: cannot be read ({type(error).__name__})") from None
    if not first or not any(name.strip() for name in first):
        raise IpviError(f"{path}: empty file (no header line)")
    return [name.strip() for name in first]


def check_columns(path: Path, columns: list[str], needed: list[str]) -> None:
    """Fail, naming the file and the column, when a mapped column is absent."""
    missing = [name for name in needed if name not in columns]
    if missing:
        raise IpviError(f"{path}: missing column(s) {', '.join(missing)} named in the mapping")
    repeated = sorted({name for name in columns if columns.count(name) > 1})
    if repeated:
        raise IpviError(f"{path}: column(s) {', '.join(repeated)} appear more than once")


def read_extract(path: Path) -> Extract:
    """Read every row of a CSV or Parquet extract as text."""
    columns = header(path)
    if path.suffix.lower() == ".parquet":
        return _read_parquet(path)
    malformed: list[tuple[int, str]] = []

    def set_aside(row) -> str:
        malformed.append((row.number or 0, row.text))
        return "skip"

    try:
        table = pa_csv.read_csv(
            path,
            read_options=pa_csv.ReadOptions(use_threads=False, column_names=columns, skip_rows=1),
            parse_options=pa_csv.ParseOptions(
                newlines_in_values=True, invalid_row_handler=set_aside
            ),
            convert_options=pa_csv.ConvertOptions(
                column_types={name: pa.string() for name in columns},
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
    except pa.ArrowInvalid as error:
        if "UTF8" in str(error) or "utf8" in str(error).lower():
            raise IpviError(f"{path}: not UTF-8 text") from None
        raise IpviError(f"{path}: not a readable CSV file") from None
    except OSError as error:
        raise IpviError(f"{path}: cannot be read ({type(error).__name__})") from None
    rows = _without_nul(table).to_pandas(types_mapper={pa.string(): TEXT}.get)
    bad = pd.DataFrame(malformed, columns=["row_number", "text"])
    return Extract(rows=rows, row_numbers=_line_numbers(len(rows), bad), malformed=bad)


def _without_nul(table: pa.Table) -> pa.Table:
    """Drop NUL characters, which no text column of PostgreSQL accepts (corrupt exports)."""
    for index, column in enumerate(table.columns):
        if pc.any(pc.match_substring(column, "\x00")).as_py():
            cleaned = pc.replace_substring(column, "\x00", "")
            table = table.set_column(index, table.field(index), cleaned)
    return table


def _line_numbers(count: int, malformed: pd.DataFrame) -> pd.Series:
    """Line of each parsed row: its position after the header, shifted past set-aside lines."""
    lines = pd.RangeIndex(count).to_numpy() + 2
    skipped = malformed["row_number"].sort_values().to_numpy()
    for line in skipped:  # few: only malformed lines
        lines[lines >= line] += 1
    return pd.Series(lines)


def _read_parquet(path: Path) -> Extract:
    try:
        table = pq.read_table(path)
        table = table.cast(pa.schema([(name, pa.string()) for name in table.column_names]))
    except (pa.ArrowException, OSError) as error:
        raise IpviError(f"{path}: not a readable Parquet file ({type(error).__name__})") from None
    rows = _without_nul(table).to_pandas(types_mapper={pa.string(): TEXT}.get).fillna("")
    empty = pd.DataFrame({"row_number": pd.Series(dtype=int), "text": pd.Series(dtype=str)})
    return Extract(
        rows=rows.astype(TEXT), row_numbers=pd.Series(range(1, len(rows) + 1)), malformed=empty
    )
