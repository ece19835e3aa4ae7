"""The coordinators' list: every person with an IPV offence, by tier, with what changed.

One row per person: tier (and whether it is provisional, and why), band, lethality markers,
the tier reasons with the records they rest on, and the top reason codes. Written as CSV (every
cell that a spreadsheet could read as a formula is escaped) and as HTML (every value escaped),
with a ``change`` column against the previous list: new, tier up/down, band changed, unchanged;
persons who left the list are listed at the end.
"""

from __future__ import annotations

import csv
import html
from pathlib import Path

import pandas as pd

from ipvi.export import escape_cell
from training.tiers import TIER_ORDINAL

LIST_COLUMNS: tuple[str, ...] = (
    "tier",
    "person_id",
    "provisional",
    "review_needed",
    "band",
    "probability",
    "lethality_flags",
    "tier_reasons",
    "reason_codes",
    "index_event_id",
    "change",
)


# The score columns a list is built from (stored in ``scores``, so a list can be rebuilt).
LIST_SOURCE_COLUMNS: tuple[str, ...] = (
    "person_id",
    "tier",
    "provisional",
    "identity_review_required",
    "possible_dual_arrest",
    "band",
    "probability",
    "lethality_flags",
    "tier_reasons",
    "reason_codes",
    "index_event_id",
)


def _reasons_text(reasons: list[dict]) -> str:
    return "; ".join(f"{r['reason']} [{', '.join(r['record_ids'])}]" for r in reasons)


def _codes_text(codes: list[dict]) -> str:
    return "; ".join(f"{c['text']} [{', '.join(c['record_ids'])}]" for c in codes)


def build_list(scored: pd.DataFrame, previous: pd.DataFrame | None) -> pd.DataFrame:
    """The list rows, ordered by tier (A first) then probability, with changes vs ``previous``.

    ``previous`` holds the last list's ``person_id``, ``tier`` and ``band`` (or is None).
    """
    review = []
    for dual, identity in zip(
        scored["possible_dual_arrest"], scored["identity_review_required"], strict=True
    ):
        review.append(
            ", ".join(
                name
                for name, flag in (("identity", identity), ("possible dual arrest", dual))
                if flag
            )
        )
    rows = pd.DataFrame(
        {
            "tier": scored["tier"].to_numpy(),
            "person_id": scored["person_id"].to_numpy(),
            "provisional": scored["provisional"].to_numpy(),
            "review_needed": review,
            "band": scored["band"].to_numpy(),
            "probability": scored["probability"].round(3).to_numpy(),
            "lethality_flags": [", ".join(flags) for flags in scored["lethality_flags"]],
            "tier_reasons": [_reasons_text(r) for r in scored["tier_reasons"]],
            "reason_codes": [_codes_text(c) for c in scored["reason_codes"]],
            "index_event_id": scored["index_event_id"].to_numpy(),
        }
    )
    change = pd.Series("new", index=rows.index)
    if previous is not None and len(previous):
        before = previous.drop_duplicates("person_id", keep="last").set_index("person_id")
        old_tier = rows["person_id"].map(before["tier"])
        old_band = rows["person_id"].map(before["band"])
        known = old_tier.notna()
        rank_new = rows["tier"].map(TIER_ORDINAL)
        rank_old = old_tier.map(TIER_ORDINAL)
        change[known] = "unchanged"
        change[known & (old_band != rows["band"])] = "band changed"
        change[known & (rank_new > rank_old)] = "tier up from " + old_tier
        change[known & (rank_new < rank_old)] = "tier down from " + old_tier
        gone = before.index.difference(rows["person_id"])
        left = pd.DataFrame(
            {
                "tier": before.loc[gone, "tier"].to_numpy(),
                "person_id": gone.to_numpy(),
                "change": "left the list",
            }
        )
    else:
        left = pd.DataFrame(columns=["tier", "person_id", "change"])
    rows["change"] = change
    rows = rows.assign(_rank=rows["tier"].map(TIER_ORDINAL)).sort_values(
        ["_rank", "probability", "person_id"], ascending=[False, False, True], kind="stable"
    )
    rows = pd.concat([rows.drop(columns="_rank"), left], ignore_index=True)
    return rows[list(LIST_COLUMNS)]


def _texts(column: pd.Series) -> list[str]:
    """A column's cells as text, missing as ``""``."""
    missing = column.isna().tolist()
    return ["" if gap else str(value) for value, gap in zip(column, missing, strict=True)]


def _html_escaped(texts: list[str]) -> list[str]:
    """``html.escape`` of every text: on the column joined once when a separator is free
    (five replacements over one string, not five per cell of a 100k-person list)."""
    joined = "\x00".join(texts)
    if joined.count("\x00") != max(len(texts) - 1, 0):
        return [html.escape(text) for text in texts]
    return html.escape(joined).split("\x00") if texts else []


def write_list(
    rows: pd.DataFrame, folder: str | Path, *, stem: str, title: str
) -> tuple[Path, Path]:
    """Write ``stem.csv`` and ``stem.html`` into ``folder``; returns both paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    csv_path = folder / f"{stem}.csv"
    html_path = folder / f"{stem}.html"
    texts = [_texts(rows[name]) for name in rows.columns]
    with csv_path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(rows.columns)
        escaped = [[escape_cell(text) for text in column] for column in texts]
        writer.writerows(zip(*escaped, strict=True))
    head = "".join(f"<th>{html.escape(c)}</th>" for c in rows.columns)
    cells = [[f"<td>{t}</td>" for t in _html_escaped(column)] for column in texts]
    body = "".join("<tr>" + "".join(record) + "</tr>" for record in zip(*cells, strict=True))
    html_path.write_text(
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title>"
        "<style>body{font-family:sans-serif}td,th{border:1px solid #ccc;padding:4px;"
        "font-size:13px;vertical-align:top}table{border-collapse:collapse}</style></head><body>"
        f"<h1>{html.escape(title)}</h1><p>Bands describe how likely a recorded re-offence is; "
        "they never mean a person is safe. Lethality markers are shown for everyone.</p>"
        f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></body></html>",
        encoding="utf-8",
    )
    return csv_path, html_path
