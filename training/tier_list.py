"""The coordinators' list: every person with an IPV offence, by tier, with what changed.

One row per person: tier (and whether it is provisional, and why), band, lethality markers,
the tier reasons with the records they rest on, and the top reason codes, with a ``change``
column against the previous list: new, tier up/down, band changed, unchanged; persons who left
the list are listed at the end.

Written as CSV (:data:`LIST_COLUMNS`; every cell a spreadsheet could read as a formula is
escaped) and as one self-contained HTML file for coordinators: a summary at the top (persons
by tier, what changed since the last list, provisional tiers awaiting review), then the list,
sortable and filterable by tier, band, provisional, lethality marker and change, with a search
by person id; yes/no cells as words; each reason's record ids folded under it. The rows travel
as JSON inside the page (repeated texts stored once, each person's record ids once) and a small
inline script shows them a page at a time, so a list of 100,000 persons opens quickly; nothing
is fetched from anywhere.
"""

from __future__ import annotations

import csv
import html
import json
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
# Structured forms of the flags, reasons and reason codes, for the HTML only.
DETAIL_COLUMNS: tuple[str, ...] = ("_flags", "_reasons", "_codes")
TEMPLATE = Path(__file__).with_name("templates") / "tier_list.html"


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
            # The structured forms the HTML folds (not written to the CSV).
            "_flags": [list(flags) for flags in scored["lethality_flags"]],
            "_reasons": [
                [(r["reason"], list(r["record_ids"])) for r in reasons]
                for reasons in scored["tier_reasons"]
            ],
            "_codes": [
                [(c["text"], list(c["record_ids"])) for c in codes]
                for codes in scored["reason_codes"]
            ],
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
    return rows[[*LIST_COLUMNS, *DETAIL_COLUMNS]]


def _texts(column: pd.Series) -> list[str]:
    """A column's cells as text, missing as ``""``."""
    missing = column.isna().tolist()
    return ["" if gap else str(value) for value, gap in zip(column, missing, strict=True)]


def write_list(
    rows: pd.DataFrame, folder: str | Path, *, stem: str, title: str
) -> tuple[Path, Path]:
    """Write ``stem.csv`` and ``stem.html`` into ``folder``; returns both paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    csv_path = folder / f"{stem}.csv"
    html_path = folder / f"{stem}.html"
    texts = [_texts(rows[name]) for name in LIST_COLUMNS]
    with csv_path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(LIST_COLUMNS)
        escaped = [[escape_cell(text) for text in column] for column in texts]
        writer.writerows(zip(*escaped, strict=True))
    html_path.write_text(render_html(rows, title), encoding="utf-8")
    return csv_path, html_path


def _positions(wanted: list[str], place: dict[str, int]) -> str:
    """Positions of ``wanted`` in a person's record list, as ranges: ``"0-4 7 9-10"``."""
    numbers = sorted({place[w] for w in wanted})
    parts, start = [], None
    for k, number in enumerate(numbers):
        if start is None:
            start = number
        if k + 1 == len(numbers) or numbers[k + 1] != number + 1:
            parts.append(str(start) if start == number else f"{start}-{number}")
            start = None
    return " ".join(parts)


def list_data(rows: pd.DataFrame) -> dict:
    """The rows as the HTML page carries them: repeated texts once (``lookups``), each
    person's record ids once, reasons citing them by position."""
    lookups: dict[str, dict[str, int]] = {
        name: {} for name in ("bands", "flags", "reasons", "codes", "changes", "reviews")
    }

    def code(kind: str, text) -> int:
        text = "" if text is None or text != text else str(text)
        return lookups[kind].setdefault(text, len(lookups[kind]))

    out = []
    columns = [rows[name].tolist() for name in (*LIST_COLUMNS, *DETAIL_COLUMNS)]
    for values in zip(*columns, strict=True):
        row = dict(zip((*LIST_COLUMNS, *DETAIL_COLUMNS), values, strict=True))
        # Persons who left the list have no detail (NaN) and no tier reasons.
        present = isinstance(row["_reasons"], list)
        reasons = row["_reasons"] if present else []
        codes = row["_codes"] if present else []
        flags = row["_flags"] if present else []
        ids: dict[str, int] = {}
        for _, cited in [*reasons, *codes]:
            for record in cited:
                ids.setdefault(record, len(ids))
        probability = row["probability"]
        out.append(
            [
                row["tier"] if isinstance(row["tier"], str) else "",
                row["person_id"],
                None if not present else int(bool(row["provisional"])),
                code("reviews", row["review_needed"]),
                code("bands", row["band"]),
                None if probability is None or probability != probability else probability,
                [code("flags", flag) for flag in flags],
                " ".join(ids),
                [[code("reasons", text), _positions(cited, ids)] for text, cited in reasons],
                [[code("codes", text), _positions(cited, ids)] for text, cited in codes],
                "" if not isinstance(row["index_event_id"], str) else row["index_event_id"],
                code("changes", row["change"]),
            ]
        )
    return {"lookups": {k: list(v) for k, v in lookups.items()}, "rows": out}


def summary_of(rows: pd.DataFrame) -> dict:
    """Persons by tier, changes since the last list, and provisional tiers awaiting review."""
    current = rows[rows["change"] != "left the list"]
    changes = rows["change"].fillna("")
    provisional = current["provisional"].astype(bool)
    return {
        "persons": int(len(current)),
        "by_tier": {tier: int((current["tier"] == tier).sum()) for tier in sorted(TIER_ORDINAL)},
        "new": int((changes == "new").sum()),
        "tier_up": int(changes.str.startswith("tier up").sum()),
        "tier_down": int(changes.str.startswith("tier down").sum()),
        "band_changed": int((changes == "band changed").sum()),
        "left": int((changes == "left the list").sum()),
        "provisional": int(provisional.sum()),
        "provisional_review": int((provisional & (current["review_needed"] != "")).sum()),
    }


def _script_json(value) -> str:
    """JSON safe inside a ``<script>`` element (no ``</script>``, no HTML comment)."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def render_html(rows: pd.DataFrame, title: str) -> str:
    """The list page (see the module docstring)."""
    summary = summary_of(rows)
    tiers = "".join(
        f"<tr><td>{html.escape(tier)}</td><td>{count:,}</td></tr>"
        for tier, count in sorted(summary["by_tier"].items())
    )
    page = TEMPLATE.read_text(encoding="utf-8")
    return (
        page.replace("{{title}}", html.escape(title))
        .replace("{{tier_rows}}", tiers)
        .replace("{{summary}}", _script_json(summary))
        .replace("{{data}}", _script_json(list_data(rows)))
    )
