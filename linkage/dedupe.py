"""Deduplicate one file, or link two, with nothing but a column mapping (``ipvi dedupe``).

For agencies whose data is not in the registry. Fields are compared as what they are, not
validated as a US registry would: a postal code is any code, a date any calendar date (an
unparseable one compared as a string), sex any string. Parameters are learned from the file
itself (u from random pairs, m by EM); no threshold is tuned on any truth.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ipvi.config import SparkConfig
from ipvi.errors import IpviError
from linkage.engine import open_linker
from linkage.report import file_report
from linkage.settings import LinkageSettings
from linkage.standardize import CANONICAL_FIELDS

EMPTY_FIELD = (
    "{file}: the column for {field} ({column}) is empty in every row: nothing to compare; "
    "remove it from --map"
)
NO_LINKS = "no two rows were linked: every row is its own cluster (check --map)"
GIANT_CLUSTER = (
    "the largest cluster holds {size} rows ({share:.0%} of all rows): check that no mapped "
    "column is shared by unrelated rows"
)
logger = logging.getLogger(__name__)
# A cluster holding more than this share of the rows (and more than a few) is reported.
GIANT_SHARE = 0.05


@dataclass
class DedupeResult:
    """One output row per input row, and what happened on the way."""

    output: pd.DataFrame
    warnings: list[str] = field(default_factory=list)
    summary: dict = field(default_factory=dict)
    report: dict = field(default_factory=dict)  # linkage.report.file_report


def parse_mapping(text: str) -> tuple[dict[str, str], list[str]]:
    """``first_name=COL,dob=COL,...`` -> ({canonical field: column}, [generic columns]).

    A column mapped to itself (``soc_sec_id=soc_sec_id``) or named alone is compared as a
    generic string; any other key must be a canonical field.

    >>> parse_mapping("first_name=given, dob=birth, ssn7")
    ({'first_name': 'given', 'dob': 'birth'}, ['ssn7'])
    """
    fields: dict[str, str] = {}
    generic: list[str] = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        key, _, column = item.partition("=")
        key, column = key.strip(), (column.strip() or key.strip())
        if key in CANONICAL_FIELDS:
            if key in fields:
                raise IpviError(f"--map names the field {key!r} twice")
            fields[key] = column
        elif key == column:
            generic.append(column)
        else:
            raise IpviError(
                f"--map: unknown canonical field {key!r} (known: {', '.join(CANONICAL_FIELDS)}; "
                f"to compare another column as a string, map it to itself: {column}={column})"
            )
    if not fields and not generic:
        raise IpviError("--map is empty: name at least one field, e.g. last_name=SURNAME")
    return fields, generic


def read_table(path: str | Path) -> pd.DataFrame:
    """A CSV or Parquet file as strings; unreadable, empty or non-UTF-8 files are clear errors."""
    file = Path(path)
    if not file.is_file():
        raise IpviError(f"input file not found: {file}")
    try:
        if file.suffix.lower() in (".parquet", ".pq"):
            frame = pd.read_parquet(file)
            frame = frame.astype(object).where(frame.notna(), None)
        else:
            frame = pd.read_csv(file, dtype=str, encoding="utf-8", encoding_errors="strict")
    except UnicodeDecodeError as error:
        raise IpviError(
            f"input file {file} is not UTF-8 text (bad byte at position {error.start}); "
            "convert it, e.g. iconv -f latin1 -t utf-8"
        ) from None
    except pd.errors.EmptyDataError:
        raise IpviError(f"input file {file} is empty") from None
    except pd.errors.ParserError as error:
        raise IpviError(
            f"input file {file} is not valid CSV: {str(error).splitlines()[0]}"
        ) from None
    except (OSError, ValueError) as error:
        kind = type(error).__name__
        raise IpviError(f"cannot read input file {file}: {kind}: {str(error)[:200]}") from None
    if frame.empty:
        raise IpviError(f"input file {file} has no data rows")
    return frame


def _canonical(
    frame: pd.DataFrame, file: str, id_column: str, fields: dict[str, str], generic: list[str]
) -> tuple[pd.DataFrame, list[str]]:
    needed = [id_column, *fields.values(), *generic]
    missing = [column for column in dict.fromkeys(needed) if column not in frame.columns]
    if missing:
        raise IpviError(
            f"{file}: column(s) not found: {', '.join(missing)} "
            f"(columns are: {', '.join(map(str, frame.columns[:30]))})"
        )
    warnings = []
    ids = frame[id_column]
    if ids.isna().any():
        warnings.append(f"{file}: {int(ids.isna().sum())} row(s) have an empty id column")
    if ids.duplicated().any():
        warnings.append(
            f"{file}: id column {id_column} has {int(ids.duplicated().sum())} duplicates"
        )
    canonical = pd.DataFrame({field: frame[column] for field, column in fields.items()})
    for column in generic:
        canonical[column] = frame[column]
    columns = {**fields, **{column: column for column in generic}}
    for name in canonical.columns:
        values = canonical[name]
        if values.isna().all() or (values.astype(str).str.strip() == "").all():
            raise IpviError(EMPTY_FIELD.format(file=file, field=name, column=columns[name]))
    return canonical.reset_index(drop=True), warnings


def dedupe(
    inputs: list[str | Path],
    id_column: str,
    mapping: str,
    settings: LinkageSettings,
    *,
    engine: str | None = None,
    spark: SparkConfig | None = None,
    report=logger.info,
) -> DedupeResult:
    """Deduplicate ``inputs[0]``, or link it to ``inputs[1]``.

    ``engine`` (``local`` or ``spark``, default the settings') and ``spark`` choose where the
    pairs are made, compared and clustered (:func:`linkage.engine.open_linker`).

    Returns
    -------
    DedupeResult
        ``output`` has the id column, ``cluster_id`` and ``confidence`` (the probability of the
        row's strongest link inside its cluster, 0 for a row alone), plus ``source`` (1 or 2)
        when linking two files.
    """
    if not 1 <= len(inputs) <= 2:
        raise IpviError("dedupe takes one input (deduplicate) or two (link)")
    fields, generic = parse_mapping(mapping)
    ids, canonical, warnings = [], [], []
    for path in inputs:
        frame = read_table(path)
        table, notes = _canonical(frame, str(path), id_column, fields, generic)
        ids.append(frame[id_column].to_numpy(dtype=object, copy=True))
        canonical.append(table)
        warnings += notes
    del frame  # only the ids and the mapped fields are needed from here on
    compared_fields = list(fields)
    if "full_name" in compared_fields:
        compared_fields = [f for f in compared_fields if f != "full_name"]
        compared_fields += [
            f for f in ("first_name", "middle_name", "last_name") if f not in compared_fields
        ]
    run_settings = settings.for_fields(compared_fields, generic)
    with open_linker(run_settings, engine, spark, report) as linker:
        # Popped: the linker holds the only references, and frees them once standardised.
        result = linker.run(canonical.pop(0), canonical.pop() if canonical else None)
    output = pd.DataFrame(
        {
            id_column: np.concatenate(ids),
            "cluster_id": result.labels,
            "confidence": np.round(result.link_confidence(), 6),
        }
    )
    if len(inputs) == 2:
        output.insert(1, "source", np.repeat([1, 2], [len(ids[0]), len(ids[1])]))
    sizes = np.bincount(result.labels)
    if sizes.max() == 1:
        warnings.append(NO_LINKS)
    elif sizes.max() > max(GIANT_SHARE * len(output), 20):
        warnings.append(GIANT_CLUSTER.format(size=sizes.max(), share=sizes.max() / len(output)))
    summary = result.summary()
    summary.update(
        {
            "records": int(len(output)),
            "clusters": int(result.labels.max() + 1),
            "largest_cluster": int(sizes.max()),
            "timings": {k: round(v, 3) for k, v in result.timings.items()},
            "compared": [c.name for c in run_settings.comparisons],
            "warnings": warnings,
        }
    )
    report = file_report(result, result.labels, run_settings.config, summary)
    return DedupeResult(output=output, warnings=warnings, summary=summary, report=report)
