"""The linkage report: what a run learned and did, as JSON and as one self-contained HTML file.

``ipvi link-report --html F --json F`` reports the registry's last run, ``ipvi dedupe --report
F.html`` the run it just made. What only the run saw (every compared pair, the clusters as
they were formed) is summarised when the run makes it (:func:`run_report_data`, stored with
the run's parameters); the report adds what the registry holds now: person-id changes, the
review backlog and the accuracy estimate from clerks' decisions (:func:`registry_report`).

JSON keys: ``m_u`` (m and u per comparison level), ``blocking`` (pairs and estimated matches
per rule), ``estimated_pair_completeness``, ``cluster_sizes`` (``[size, clusters]``),
``changes`` (new, merged, split and retired person ids), ``review_backlog``,
``accuracy_from_labels`` (null until every stratum of the accuracy sample holds enough
decisions), plus ``run``, ``weight_histogram`` and ``largest_clusters``. Nothing in it is a
name, a date of birth or an address: person ids are pseudonymous, levels are labels.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import jinja2
import numpy as np
import pandas as pd
from sqlalchemy import Engine, func, select

from ipvi import charts
from ipvi.config import LinkageConfig
from ipvi.errors import IpviError
from ipvi.tables.linkage import (
    linkage_runs,
    person_id_changes,
    persons,
    review_pairs,
    review_sample,
)
from linkage.accuracy import estimate

TEMPLATES = Path(__file__).with_name("templates")
LARGEST_CLUSTERS = 10
LISTED_IDS = 50  # person ids listed per kind of change (all are counted)
NO_RUN = "no linkage run in the registry yet: run `ipvi link` first"


def _log_odds(probability: float) -> float:
    return float(np.log2(probability) - np.log2(1 - probability))


def run_report_data(result, person_ids, config: LinkageConfig) -> dict:
    """What only the run itself saw, summarised (JSON-safe, no personal values).

    Parameters
    ----------
    result : linkage.linker.LinkResult
    person_ids : array
        Each record's person id (or cluster label, for ``ipvi dedupe``).
    config : LinkageConfig
        Its thresholds are drawn on the weight histogram.
    """
    model = result.model
    m_u = []
    for comparison, m, u, weights in zip(
        model.comparisons, model.m_, model.u_, model.level_weights(), strict=True
    ):
        levels = [
            {
                "level": label,
                "m": round(float(mi), 6),
                "u": round(float(ui), 8),
                "weight": round(float(w), 3),
            }
            for k, (label, mi, ui, w) in enumerate(
                zip(comparison.level_labels(), m, u, weights, strict=True)
            )
            if k > 0  # level 0 is "missing": no evidence either way
        ]
        m_u.append({"comparison": comparison.name, "levels": levels})
    weight = np.clip(result.weight, -40, 40)
    low = float(np.floor(weight.min())) if len(weight) else -1.0
    high = float(np.ceil(weight.max())) if len(weight) else 1.0
    edges = np.arange(low, max(high, low + 1) + 1, 1.0)
    counts, _ = np.histogram(weight, bins=edges)
    labels = pd.factorize(pd.Series(np.asarray(person_ids, dtype=object)))[0]
    sizes = np.bincount(labels)
    size_counts = np.bincount(sizes)
    return {
        "m_u": m_u,
        "prior": float(model.prior_),
        "weight_histogram": {
            "edges": edges.tolist(),
            "counts": counts.astype(int).tolist(),
            "thresholds": {
                "link": _log_odds(result.link_threshold),
                "review lower": _log_odds(config.review_lower),
                "review upper": _log_odds(config.review_upper),
            },
        },
        "cluster_sizes": [[int(s), int(n)] for s, n in enumerate(size_counts) if s and n],
        "largest_clusters": _largest_clusters(result, labels, sizes, person_ids),
    }


def _largest_clusters(result, labels, sizes, person_ids) -> list[dict]:
    """The largest clusters with their cohesion: how strongly their compared pairs link."""
    largest = np.argsort(-sizes, kind="stable")[:LARGEST_CLUSTERS]
    largest = largest[sizes[largest] > 1]
    left, right = result.pairs.left, result.pairs.right
    inside = labels[left] == labels[right]
    owner = labels[left[inside]]
    p = result.probability[inside]
    ids = np.asarray(person_ids, dtype=object)
    first = np.zeros(len(sizes), dtype=np.int64)
    first[labels[::-1]] = np.arange(len(labels))[::-1]
    out = []
    for cluster in largest:
        mine = p[owner == cluster]
        size = int(sizes[cluster])
        out.append(
            {
                "person_id": str(ids[first[cluster]]),
                "records": size,
                "compared_pairs": int(len(mine)),
                "share_of_pairs_compared": round(len(mine) / (size * (size - 1) / 2), 4),
                "mean_probability": round(float(mine.mean()), 4) if len(mine) else None,
                "min_probability": round(float(mine.min()), 4) if len(mine) else None,
            }
        )
    return out


# ------------------------------------------------------------------ the registry's last run


def _runs(connection) -> tuple[dict, dict | None]:
    rows = (
        connection.execute(
            select(linkage_runs)
            .where(linkage_runs.c.status == "succeeded")
            .order_by(linkage_runs.c.finished_at.desc())
            .limit(2)
        )
        .mappings()
        .all()
    )
    if not rows:
        raise IpviError(NO_RUN)
    return dict(rows[0]), (dict(rows[1]) if len(rows) > 1 else None)


def changes_of(connection, run_id: str) -> dict:
    """New, merged, split and retired person ids of a run (counts and up to LISTED_IDS ids)."""
    minted = (
        connection.execute(select(persons.c.person_id).where(persons.c.created_run_id == run_id))
        .scalars()
        .all()
    )
    retired = (
        connection.execute(select(persons.c.person_id).where(persons.c.retired_run_id == run_id))
        .scalars()
        .all()
    )
    logged = connection.execute(
        select(
            person_id_changes.c.retired_id,
            person_id_changes.c.successor_id,
            person_id_changes.c.kind,
        ).where(person_id_changes.c.run_id == run_id)
    ).all()
    merged = sorted({(r, s) for r, s, kind in logged if kind == "merge"})
    split: dict[str, list[str]] = {}
    for retired_id, successor, kind in logged:
        if kind == "split":
            split.setdefault(retired_id, []).append(successor)
    successors = {s for parts in split.values() for s in parts}
    new = sorted(set(minted) - successors)
    return {
        "new": {"count": len(new), "person_ids": new[:LISTED_IDS]},
        "merged": {
            "count": len(merged),
            "pairs": [{"retired_id": r, "survivor_id": s} for r, s in merged[:LISTED_IDS]],
        },
        "split": {
            "count": len(split),
            "parts": [
                {"retired_id": r, "successor_ids": sorted(parts)}
                for r, parts in sorted(split.items())[:LISTED_IDS]
            ],
        },
        "retired": {"count": len(retired), "person_ids": sorted(retired)[:LISTED_IDS]},
    }


def review_backlog(connection) -> dict:
    """Pairs waiting for a clerk, by queue, and the decisions taken so far."""
    rows = connection.execute(
        select(
            review_pairs.c.status,
            review_pairs.c.queue,
            review_pairs.c.decision,
            (review_pairs.c.priority.is_not(None)).label("tier_related"),
            func.count(),
        ).group_by(
            review_pairs.c.status,
            review_pairs.c.queue,
            review_pairs.c.decision,
            review_pairs.c.priority.is_not(None),
        )
    ).all()
    out = {
        "pending": 0,
        "pending_tier_related": 0,
        "pending_accuracy_sample": 0,
        "decided": {"match": 0, "non-match": 0, "unsure": 0},
        "superseded": 0,
    }
    for status, queue, decision, tier_related, count in rows:
        if status == "pending" and queue == "sample":
            out["pending_accuracy_sample"] += count
        elif status == "pending":
            out["pending"] += count
            out["pending_tier_related"] += count if tier_related else 0
        elif status == "decided":
            out["decided"][decision] = out["decided"].get(decision, 0) + count
        else:
            out["superseded"] += count
    return out


def sample_decisions(connection, run_id: str) -> pd.DataFrame:
    """The run's accuracy sample with each pair's decision (None while undecided)."""
    query = (
        select(
            review_sample.c.pair_id,
            review_sample.c.stratum,
            review_sample.c.linked,
            review_pairs.c.decision,
        )
        .select_from(
            review_sample.outerjoin(review_pairs, review_pairs.c.pair_id == review_sample.c.pair_id)
        )
        .where(review_sample.c.run_id == run_id)
        .order_by(review_sample.c.draw)
    )
    return pd.DataFrame(
        connection.execute(query).all(), columns=["pair_id", "stratum", "linked", "decision"]
    )


def accuracy_from_labels(engine: Engine, config: LinkageConfig) -> dict:
    """Precision and recall of the current links from the decided accuracy sample
    (``ipvi link-eval --labels``); see :func:`linkage.accuracy.estimate`."""
    with engine.connect() as connection:
        run, _ = _runs(connection)
        decisions = sample_decisions(connection, run["run_id"])
    design = (run["parameters"] or {}).get("accuracy_design")
    if not design:
        raise IpviError(
            f"linkage run {run['run_id']} drew no accuracy sample "
            "(linkage.accuracy.sample_size is 0, or the run predates it): run `ipvi link`"
        )
    result = estimate(
        design,
        decisions.dropna(subset=["decision"]),
        min_labels_per_stratum=config.accuracy.min_labels_per_stratum,
        seed=config.seed,
    )
    return {"run_id": run["run_id"], "sample_pairs": int(len(decisions)), **result}


def registry_report(engine: Engine, config: LinkageConfig) -> dict:
    """The report of the registry's last linkage run (see the module docstring)."""
    with engine.connect() as connection:
        run, previous = _runs(connection)
        changes = changes_of(connection, run["run_id"])
        backlog = review_backlog(connection)
    parameters = run["parameters"] or {}
    data = parameters.get("report")
    if data is None:
        raise IpviError(
            f"linkage run {run['run_id']} predates the linkage report: run `ipvi link` again"
        )
    accuracy = accuracy_from_labels(engine, config) if parameters.get("accuracy_design") else None
    blocking = parameters.get("blocking") or {}
    return {
        "run": {
            "run_id": run["run_id"],
            "finished_at": run["finished_at"].isoformat(timespec="seconds"),
            "mentions": run["n_mentions"],
            "persons": run["n_persons"],
            "previous_run_id": previous["run_id"] if previous else None,
        },
        "m_u": data["m_u"],
        "prior": data["prior"],
        "blocking": blocking,
        "estimated_pair_completeness": blocking.get("estimated_pair_completeness"),
        "weight_histogram": data["weight_histogram"],
        "cluster_sizes": data["cluster_sizes"],
        "largest_clusters": data["largest_clusters"],
        "changes": changes,
        "review_backlog": backlog,
        "accuracy_from_labels": accuracy if accuracy and accuracy["enough"] else None,
        "accuracy_labels": None
        if accuracy is None
        else {
            "decided": accuracy["labels"],
            "needed": accuracy["labels_needed"],
            "missing": accuracy["missing"][:5],
        },
    }


def file_report(result, labels, config: LinkageConfig, summary: dict) -> dict:
    """The report of an ``ipvi dedupe`` run: the same sections, minus the registry's."""
    data = run_report_data(result, labels, config)
    return {
        "run": {"run_id": None, "mentions": summary["records"], "persons": summary["clusters"]},
        "m_u": data["m_u"],
        "prior": data["prior"],
        "blocking": result.blocking,
        "estimated_pair_completeness": result.blocking.get("estimated_pair_completeness"),
        "weight_histogram": data["weight_histogram"],
        "cluster_sizes": data["cluster_sizes"],
        "largest_clusters": data["largest_clusters"],
        "changes": None,
        "review_backlog": None,
        "accuracy_from_labels": None,
        "accuracy_labels": None,
    }


# ------------------------------------------------------------------ rendering


def charts_of(report: dict) -> dict[str, str]:
    """The report's charts as inline SVG."""
    histogram = report["weight_histogram"]
    out = {
        "m_u": charts.paired_bars(
            [
                (c["comparison"], [(lv["level"], lv["m"], lv["u"]) for lv in c["levels"]])
                for c in report["m_u"]
            ],
            title="m and u per comparison level",
        ),
        "weights": charts.histogram(
            histogram["edges"],
            histogram["counts"],
            title="match weight of every compared pair",
            x_label="match weight (log2 odds)",
            lines=histogram["thresholds"],
        ),
        "blocking": charts.horizontal_bars(
            [(r["rule"], r["pairs"]) for r in report["blocking"].get("rules", [])],
            title="candidate pairs per blocking rule",
        ),
        "cluster_sizes": charts.horizontal_bars(
            [(f"{size} record(s)", n) for size, n in report["cluster_sizes"][:30]],
            title="clusters by size",
        ),
    }
    return out


def render_html(report: dict) -> str:
    """The self-contained HTML report (autoescaped; charts inline, nothing fetched)."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["pct"] = lambda v: "—" if v is None else f"{100 * v:.2f} %"
    template = env.get_template("linkage_report.html.j2")
    return template.render(
        report=report,
        charts={k: jinja2.utils.markupsafe.Markup(v) for k, v in charts_of(report).items()},
        generated=datetime.now().isoformat(timespec="seconds"),
    )


def write_report(report: dict, html_path: str | Path | None, json_path: str | Path | None):
    """Write the report as HTML and / or JSON."""
    for path, text in (
        (html_path, lambda: render_html(report)),
        (json_path, lambda: json.dumps(report, indent=1, default=str)),
    ):
        if path is None:
            continue
        target = Path(path)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text(), encoding="utf-8")
        except OSError as error:
            raise IpviError(f"cannot write {target}: {error.strerror}") from None
