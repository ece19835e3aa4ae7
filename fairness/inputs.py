"""Audit inputs: a scored file an oversight board hands over, or a model version's predictions.

Both become an :class:`~fairness.audit.AuditInput`. Rows that cannot be audited (a missing
label, score, prediction or group) are counted by reason in ``excluded``, never dropped
silently; bad input raises :class:`~ipvi.errors.IpviError` naming the file and column.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from fairness.audit import AuditInput, Decision, data_fingerprint
from fairness.groups import UNKNOWN, age_band, person_attributes
from fairness.store import PREDICTION_COLUMNS
from ipvi.errors import IpviError

MISSING_COLUMN = "{file}: no column {column!r} (columns: {available})"
NON_BINARY_LABEL = "{file}: label column {column!r} is not binary (values include {values})"
SCORE_OUT_OF_RANGE = (
    "{file}: score column {column!r} has values outside [0, 1] ({low:g} to {high:g}) and no "
    "--threshold was given"
)
NON_NUMERIC_SCORE = "{file}: score column {column!r} is not numeric"
ALL_NULL_GROUP = "{file}: group column {column!r} is empty (every value is missing)"
UNKNOWN_REFERENCE = "reference group {group!r} is not a value of any group column ({columns})"
BAD_REFERENCE = "reference {attribute}={group}: {problem}"
NO_POSITIVE_VALUE = "{file}: no value of prediction column {column!r} is among --positive {values}"

# The prediction columns whose content the audit depends on (the data fingerprint): all that
# is read but the model version (named by the run) and the prior-offence count (not audited).
PREDICTION_FINGERPRINT = tuple(
    column for column in PREDICTION_COLUMNS if column not in ("model_version", "prior_ipv_offences")
)

_TRUE = {"1", "1.0", "true", "t", "yes", "y"}
_FALSE = {"0", "0.0", "false", "f", "no", "n"}


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a CSV or Parquet file (by extension), as strings where it is CSV."""
    file = Path(path)
    if not file.is_file():
        raise IpviError(f"data file not found: {file}")
    suffix = file.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            return pd.read_parquet(file)
        if suffix in (".csv", ".txt", ".gz"):
            return pd.read_csv(file, dtype=str, keep_default_na=True)
    except (ValueError, OSError) as error:
        raise IpviError(f"cannot read {file.name}: {str(error).splitlines()[0]}") from None
    raise IpviError(f"{file.name}: unsupported file type {suffix!r} (use .csv or .parquet)")


def binary_label(values: pd.Series, *, file: str, column: str) -> pd.Series:
    """Labels as a nullable 0/1 series; anything but 0/1/true/false/yes/no is an error."""
    text = values.astype("string").str.strip().str.lower()
    known = text.dropna()
    bad = sorted(set(known) - _TRUE - _FALSE)
    if bad:
        raise IpviError(
            NON_BINARY_LABEL.format(file=file, column=column, values=", ".join(bad[:3]))
        )
    label = pd.Series(pd.NA, index=values.index, dtype="Int64")
    label[text.isin(_TRUE).fillna(False).to_numpy()] = 1
    label[text.isin(_FALSE).fillna(False).to_numpy()] = 0
    return label


def _need(frame: pd.DataFrame, columns: Sequence[str], file: str) -> None:
    for column in columns:
        if column not in frame.columns:
            raise IpviError(
                MISSING_COLUMN.format(
                    file=file, column=column, available=", ".join(map(str, frame.columns[:20]))
                )
            )


def parse_references(references: Sequence[str], groups: dict[str, set[str]]) -> dict[str, str]:
    """``--reference`` values: ``ATTR=GROUP``, or a bare ``GROUP`` for each attribute holding it."""
    out: dict[str, str] = {}
    for text in references:
        attribute, sep, group = text.partition("=")
        if sep and attribute in groups:
            if group not in groups[attribute]:
                raise IpviError(
                    BAD_REFERENCE.format(
                        attribute=attribute, group=group, problem=f"no such group in {attribute!r}"
                    )
                )
            out[attribute] = group
            continue
        holders = [name for name, values in groups.items() if text in values]
        if not holders:
            raise IpviError(UNKNOWN_REFERENCE.format(group=text, columns=", ".join(groups)))
        for name in holders:
            out.setdefault(name, text)
    return out


def scored_file_input(
    path: str | Path,
    *,
    label: str,
    groups: Sequence[str],
    score: str | None = None,
    threshold: float | None = None,
    prediction: str | None = None,
    positive: Sequence[str] = (),
    person: str | None = None,
    references: Sequence[str] = (),
    gated: bool = False,
) -> AuditInput:
    """Build an audit input from a scored CSV or Parquet file.

    Parameters
    ----------
    path : path
        The file.
    label : str
        The outcome column (0/1, true/false, yes/no).
    groups : list of str
        Protected-attribute columns; each is audited alone and in intersection.
    score, threshold : str, float
        A score column and the cut at or above which a case is selected (the threshold may be
        omitted for a probability in [0, 1]: 0.5).
    prediction, positive : str, list of str
        Or a decision column and the values that mean "selected".
    person : str, optional
        Person id column: the bootstrap then resamples persons, else rows.
    references : list of str
        ``GROUP`` or ``ATTR=GROUP`` reference groups.
    gated : bool
        Whether the audit will be gated (a policy file was given).
    """
    file = Path(path).name
    frame = read_table(path)
    if (score is None) == (prediction is None):
        raise IpviError("give either --score COL (with --threshold) or --prediction COL")
    if score is None and threshold is not None:
        raise IpviError("--threshold goes with --score, not --prediction")
    if prediction is None and positive:
        raise IpviError("--positive goes with --prediction, not --score")
    if not groups:
        raise IpviError("give at least one --group COL")
    needed = [label, *groups] + [c for c in (score, prediction, person) if c is not None]
    _need(frame, needed, file)
    for column in groups:
        if frame[column].isna().all():
            raise IpviError(ALL_NULL_GROUP.format(file=file, column=column))

    out = pd.DataFrame(index=frame.index)
    out["label"] = binary_label(frame[label], file=file, column=label)
    reasons: list[tuple[str, pd.Series]] = [("missing label", out["label"].isna())]
    scores: dict[str, str] = {}
    calibration = None
    if score is not None:
        values = pd.to_numeric(frame[score], errors="coerce")
        if values.notna().sum() == 0 or (values.isna() & frame[score].notna()).any():
            raise IpviError(NON_NUMERIC_SCORE.format(file=file, column=score))
        in_unit = bool(values.dropna().between(0, 1).all())
        if threshold is None:
            if not in_unit:
                raise IpviError(
                    SCORE_OUT_OF_RANGE.format(
                        file=file, column=score, low=values.min(), high=values.max()
                    )
                )
            threshold = 0.5
        out["score"] = values
        reasons.append(("missing score", values.isna()))
        out["decision"] = values >= threshold
        scores["decision"] = "score"
        description = f"{score} at or above {threshold:g}"
        if in_unit:
            out["band"] = np.where(values >= threshold, "at or above threshold", "below threshold")
            calibration = ("score", "band")
    else:
        wanted = {str(v).strip() for v in positive}
        if not wanted:
            raise IpviError("--prediction needs --positive VALUE[,VALUE]")
        text = frame[prediction].astype("string").str.strip()
        if not text.isin(wanted).any():
            raise IpviError(
                NO_POSITIVE_VALUE.format(file=file, column=prediction, values=sorted(wanted))
            )
        out["decision"] = text.isin(wanted).fillna(False)
        reasons.append(("missing prediction", text.isna()))
        description = f"{prediction} in {{{', '.join(sorted(wanted))}}}"
    for column in groups:
        out[column] = frame[column].astype("string").str.strip()
        reasons.append((f"missing group: {column}", out[column].isna() | (out[column] == "")))
    if person is not None:
        out["person"] = frame[person].astype("string")
        reasons.append((f"missing person: {person}", out["person"].isna()))
    else:
        out["person"] = np.arange(len(out))

    # Each excluded row is counted once, under the first reason that applies.
    keep = pd.Series(True, index=out.index)
    excluded: dict[str, int] = {}
    for reason, mask in reasons:
        hit = keep & mask.fillna(False).astype(bool)
        if hit.any():
            excluded[reason] = int(hit.sum())
        keep &= ~hit
    out = out[keep].reset_index(drop=True)
    if out.empty:
        raise IpviError(f"{file}: no row has a label, a {score or prediction} and every group")
    out["label"] = out["label"].astype(int)
    out["decision"] = out["decision"].astype(bool)
    out[list(groups)] = out[list(groups)].astype(str)

    group_values = {column: set(out[column].unique()) for column in groups}
    return AuditInput(
        frame=out,
        attributes=list(groups),
        report_only=[],
        decisions=[
            Decision(
                id="decision",
                instrument="decision",
                use="both",
                description=description,
                column="decision",
                gated=gated,
            )
        ],
        scores=scores,
        calibration=calibration,
        excluded=excluded,
        source={
            "kind": "file",
            "file": file,
            "label": label,
            "groups": list(groups),
            "decision": description,
            "resampled_unit": "person" if person else "row",
            "rows_read": int(len(frame)),
        },
        references=parse_references(references, group_values),
    )


def _tier_rank(tiers: pd.Series) -> pd.Series:
    """Tiers as an ordinal score: A (most serious) highest; a missing tier is NaN."""
    levels = sorted(tiers.dropna().astype(str).unique(), reverse=True)  # D, C, B, A
    return tiers.astype("string").map({t: i for i, t in enumerate(levels)}).astype(float)


def _band_order(frame: pd.DataFrame, bands: list[dict] | None) -> pd.DataFrame:
    """Bands from lowest to highest with their use and cut-point (lowest probability).

    The frozen cut-points of the model version are used when given; otherwise the order and
    cut-points are read off the predictions (each band's lowest probability).
    """
    if bands:
        table = pd.DataFrame(
            {"cut": [float(b["lower"]) for b in bands], "use": [str(b["use"]) for b in bands]},
            index=pd.Index([str(b["name"]) for b in bands], name="band"),
        )
        unknown = sorted(set(frame["band"]) - set(table.index))
        if unknown:
            raise IpviError(f"predictions name band(s) not in the model's bands: {unknown}")
        return table.sort_values("cut")
    table = frame.groupby("band", observed=True).agg(
        cut=("probability", "min"), use=("band_use", "first")
    )
    return table.sort_values("cut")


def model_version_input(
    predictions: pd.DataFrame,
    mentions: pd.DataFrame,
    policy,
    *,
    model_version: str,
    model_name: str,
    bands: list[dict] | None = None,
) -> AuditInput:
    """Build the audit input of a model version from training's evaluation predictions.

    Parameters
    ----------
    predictions : DataFrame
        ``evaluation_predictions`` rows of the version (no protected attributes).
    mentions : DataFrame
        ``person_id`` and the policy's protected attributes for every linked mention; a
        person's value is the majority over their mentions (:func:`person_attributes`).
    policy : FairnessPolicy
        Which attributes, age bands and punitive tiers; which instruments are gated.
    model_version, model_name : str
        For the report.
    bands : list of dict, optional
        The version's frozen bands (``name``, ``lower``, ``use``); read off the predictions
        (each band's lowest probability) when not given.

    The model is audited at each band whose use is punitive or outreach ("this band or
    above"), the scorecard at the points threshold flagging the nearest share of people, and
    the rule tiers at the punitive tiers.
    """
    attributes = person_attributes(mentions, policy.attributes)
    frame = predictions.merge(attributes, left_on="person_id", right_index=True, how="left")
    frame[policy.attributes] = frame[policy.attributes].fillna(UNKNOWN)
    fingerprint = data_fingerprint(frame[[*PREDICTION_FINGERPRINT, *policy.attributes]].astype(str))
    report_only = []
    for name in policy.report_only_attributes:
        if name == "age_band":
            frame["age_band"] = age_band(frame["age"], policy.age_band_edges)
        elif name not in frame.columns:
            raise IpviError(f"report-only attribute {name!r} is not a prediction column")
        report_only.append(name)

    label = pd.to_numeric(frame["label"], errors="coerce")
    probability = pd.to_numeric(frame["probability"], errors="coerce")
    excluded = {}
    for reason, mask in (
        ("missing label", label.isna()),
        ("missing probability", probability.isna()),
    ):
        if mask.any():
            excluded[reason] = int(mask.sum())
    keep = label.notna() & probability.notna()
    frame = frame[keep].reset_index(drop=True)
    if frame.empty:
        raise IpviError(
            f"model version {model_version}: no prediction has a label and a probability"
        )
    frame["label"] = label[keep].astype(int).to_numpy()
    frame["probability"] = probability[keep].to_numpy()
    frame["person"] = frame["person_id"].astype(str)
    frame["band"] = frame["band"].astype(str)

    decisions: list[Decision] = []
    scores = {"model": "probability"}
    band_table = _band_order(frame, bands)
    rank = frame["band"].map({b: i for i, b in enumerate(band_table.index)}).to_numpy()
    points = pd.to_numeric(frame["scorecard_points"], errors="coerce")
    has_points = points.notna().all()
    if has_points:
        frame["scorecard_points"] = points.to_numpy(dtype=float)
        scores["scorecard"] = "scorecard_points"
    for i, (band, row) in enumerate(band_table.iterrows()):
        if row["use"] not in ("punitive", "outreach"):
            continue
        column = f"model:{band}"
        frame[column] = rank >= i
        decisions.append(
            Decision(
                id=column,
                instrument="model",
                use=row["use"],
                description=(
                    f"model band '{band}' or above (predicted likelihood from "
                    f"{100 * row['cut']:.1f} %)"
                ),
                column=column,
                gated="model" in policy.gated_instruments,
            )
        )
        if has_points:
            share = frame[column].mean()
            levels = np.unique(points)
            shares = np.array([(points >= t).mean() for t in levels])
            cut = float(levels[np.argmin(np.abs(shares - share))])
            sc_column = f"scorecard:{band}"
            frame[sc_column] = frame["scorecard_points"] >= cut
            decisions.append(
                Decision(
                    id=sc_column,
                    instrument="scorecard",
                    use=row["use"],
                    description=(
                        f"scorecard at {cut:g} points or more (about the share flagged by "
                        f"model band '{band}')"
                    ),
                    column=sc_column,
                    gated="scorecard" in policy.gated_instruments,
                )
            )
    if not decisions:
        raise IpviError(
            f"model version {model_version}: no band is marked punitive or outreach (band_use), "
            "so there is no decision point to audit"
        )
    if frame["tier"].notna().all():
        frame["tier_rank"] = _tier_rank(frame["tier"])
        scores["tiers"] = "tier_rank"
        tiers = sorted(policy.punitive_tiers)
        frame["tiers:punitive"] = frame["tier"].astype(str).isin(tiers)
        decisions.append(
            Decision(
                id="tiers:punitive",
                instrument="tiers",
                use="punitive",
                description=f"rule tier {' or '.join(tiers)}",
                column="tiers:punitive",
                gated="tiers" in policy.gated_instruments,
            )
        )
    return AuditInput(
        frame=frame,
        attributes=list(policy.attributes),
        report_only=report_only,
        decisions=decisions,
        scores=scores,
        calibration=("probability", "band"),
        excluded=excluded,
        source={
            "kind": "model_version",
            "model_name": model_name,
            "model_version": str(model_version),
            "run_ids": sorted(frame["run_id"].astype(str).unique().tolist()),
            "fingerprint": fingerprint,
            "resampled_unit": "person",
            "bands_from": "model version" if bands else "predictions",
            "bands": [
                {"band": str(b), "use": str(r["use"]), "lower": float(r["cut"])}
                for b, r in band_table.iterrows()
            ],
        },
    )
