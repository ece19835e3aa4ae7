"""``generate``: people -> careers -> agency rows -> noisy extracts + truth, in one call.

The command line (``ipvi generate``) and the benchmark call :func:`generate`; tests that only
need the statistics call :func:`simulate`, which stops before any file is written.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ipvi.errors import IpviError
from synth import extracts as ex
from synth import malformed
from synth.events import FLAG_COLUMNS, build_rows
from synth.metrics import exact_match_quality, roc_auc
from synth.offending import Careers, drift_day, simulate_careers
from synth.params import DRIFTS, SynthParams
from synth.population import (
    GROUP_SHARES,
    GROUPS,
    Neighbourhoods,
    address_slot,
    make_neighbourhoods,
    make_people,
    pair_juniors,
    pick_slot,
)

AGENCIES = ("police", "jail", "court", "protective_orders", "probation")
TRUTH_DIR = "truth"
TRUTH_FILES = {
    "records": "records.csv",
    "persons": "persons.csv",
    "index_offences": "index_offences.csv",
    "malformed": "malformed_rows.csv",
    "summary": "summary.json",
    "drift": "drift.json",
}
Progress = Callable[[str, float], None]


@dataclass
class World:
    """Everything simulated, before it is written out."""

    params: SynthParams
    epoch0: int
    end_day: float
    people: pd.DataFrame  # offenders first, then victims; index = global person index
    n_offenders: int
    nbs: Neighbourhoods
    careers: Careers
    rows: pd.DataFrame  # mentions, with identifiers (noisy) and raw ids
    shifted: np.ndarray  # bool per neighbourhood: recording changed by the drift


def _check(params: SynthParams) -> None:
    problems = {
        "persons": params.persons >= 1,
        "years": 2 <= params.years <= 40,
        "label_bias": 0.0 <= params.label_bias <= 3.0,
        "segregation": 0.0 <= params.segregation <= 1.0,
    }
    if params.drift is not None:
        drift = params.drift
        start = params.extract_date.replace(year=params.extract_date.year - params.years)
        problems["drift"] = drift.name in DRIFTS and start < drift.start < params.extract_date
    bad = [name for name, ok in problems.items() if not ok]
    if bad:
        raise IpviError(
            f"generate: invalid value for {', '.join('--' + b.replace('_', '-') for b in bad)} "
            "(persons >= 1, 2 <= years <= 40, 0 <= label-bias <= 3, 0 <= segregation <= 1)"
        )


@dataclass
class Cohort:
    """The offenders and their simulated careers (no victims, no agency rows yet)."""

    epoch0: int
    end_day: float
    nbs: Neighbourhoods
    people: pd.DataFrame
    female: np.ndarray
    group: np.ndarray
    careers: Careers
    shifted: np.ndarray


def _seeds(seed: int) -> list[np.random.Generator]:
    """Independent streams per stage, so each stage's draws do not shift the others'."""
    return [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(9)]


def shifted_neighbourhoods(
    params: SynthParams, neighbourhood: np.ndarray, n_neighbourhoods: int
) -> np.ndarray:
    """The neighbourhoods whose recording ``recording_shift`` changes: taken in a random order
    (fixed by the seed) until they hold ``recording_share`` of the offenders (by their address
    on the drift day, ``neighbourhood``). None without that drift."""
    shifted = np.zeros(n_neighbourhoods, dtype=bool)
    drift = params.drift
    if drift is None or drift.name != "recording_shift":
        return shifted
    share = np.bincount(neighbourhood, minlength=n_neighbourhoods) / max(len(neighbourhood), 1)
    order = np.random.default_rng([params.seed, 18]).permutation(n_neighbourhoods)
    taken = np.cumsum(share[order])
    # the first k whose total is nearest the target share
    k = int(np.argmin(np.abs(taken - drift.recording_share))) + 1
    shifted[order[:k]] = True
    return shifted


def shifted_entries(
    params: SynthParams, entry: np.ndarray, moved: np.ndarray, day: float, end_day: float
) -> np.ndarray:
    """A career's first offence is a recorded one too: under ``recording_shift`` the offenders
    living in the shifted neighbourhoods (``moved``) have their first recorded offence
    ``recording_factor`` times as often per day from the drift ``day`` as before it (their
    entries redrawn from that piecewise-uniform density; the number of offenders stays).
    Entry times carry no information about frailty, so the closed form is untouched."""
    drift = params.drift
    if drift is None or drift.name != "recording_shift" or not moved.any():
        return entry
    rng = np.random.default_rng([params.seed, 21])
    last = end_day - 1.0
    before, after = day, drift.recording_factor * (last - day)
    u = rng.random(int(moved.sum())) * (before + after)
    redrawn = np.where(u < before, u, day + (u - before) / drift.recording_factor)
    out = entry.copy()
    out[moved] = redrawn
    return out


def simulate_offending(params: SynthParams, progress: Progress | None = None) -> Cohort:
    """Simulate the offenders and their careers only: enough for the statistics of
    ``p_recorded`` and the labels, at a fraction of the cost of :func:`simulate`."""
    _check(params)
    say = progress or (lambda stage, fraction: None)
    rng_pop, rng_sim = _seeds(params.seed)[:2]
    start = params.extract_date.replace(year=params.extract_date.year - params.years)
    epoch0 = (start - dt.date(1970, 1, 1)).days
    end_day = float((params.extract_date - start).days)
    noise = params.noise
    n = params.persons
    nbs = make_neighbourhoods(rng_pop, params.segregation)
    female = rng_pop.random(n) < 0.2
    group = rng_pop.choice(len(GROUPS), n, p=GROUP_SHARES)
    entry = rng_pop.uniform(0.0, end_day - 1.0, n)
    age = np.minimum(18 + rng_pop.gamma(2.2, 6.0, n), 75)
    dob = np.floor(epoch0 + entry - age * 365.25).astype(np.int64)
    people = make_people(
        rng_pop, female=female, group=group, dob=dob, nbs=nbs, end_day=end_day, noise=noise
    )
    males = np.flatnonzero(~female)
    pair_juniors(rng_pop, people, males, noise.junior_senior_share * n / max(len(males), 1))

    def neighbourhood_at(idx: np.ndarray, day: np.ndarray) -> np.ndarray:
        return pick_slot(people, "nb", idx, address_slot(people, idx, day))

    on_drift_day = np.full(n, min(drift_day(params, epoch0), end_day - 1.0))
    home = neighbourhood_at(np.arange(n), on_drift_day)
    shifted = shifted_neighbourhoods(params, home, len(nbs.zip))
    entry = shifted_entries(params, entry, shifted[home], on_drift_day[0], end_day)
    say("simulating careers", 0.0)
    careers = simulate_careers(
        rng_sim,
        entry=entry,
        dob=people["dob"].to_numpy(),
        female=people["female"].to_numpy(),
        neighbourhood_at=neighbourhood_at,
        presence=nbs.presence,
        epoch0=epoch0,
        end_day=end_day,
        params=params,
        shifted=shifted,
        progress=lambda f: say("simulating careers", f),
    )
    return Cohort(epoch0, end_day, nbs, people, female, group, careers, shifted)


def simulate(params: SynthParams, progress: Progress | None = None) -> World:
    """Simulate people, careers and every agency mention (no files written)."""
    say = progress or (lambda stage, fraction: None)
    cohort = simulate_offending(params, progress)
    _, _, rng_vic, rng_rows, rng_ids, rng_noise, rng_case, _, _ = _seeds(params.seed)
    epoch0, end_day, nbs, careers = cohort.epoch0, cohort.end_day, cohort.nbs, cohort.careers
    people, female, group = cohort.people, cohort.female, cohort.group
    noise = params.noise
    n = params.persons

    # ---- victims: one person per (offender, partner number)
    off = careers.offences
    pair_key = off["offender"].to_numpy() * 1000 + off["partner"].to_numpy()
    uniq, victim_idx = np.unique(pair_key, return_inverse=True)
    owner = uniq // 1000
    nv = len(uniq)
    v_female = np.where(rng_vic.random(nv) < 0.95, ~female[owner], female[owner])
    v_group = np.where(
        rng_vic.random(nv) < 0.8, group[owner], rng_vic.choice(len(GROUPS), nv, p=GROUP_SHARES)
    )
    # Partners are of similar age (women a little younger), and at least 16 when first harmed.
    first_harm = pd.Series(off["time"].to_numpy()).groupby(victim_idx).min().to_numpy()
    v_dob = people["dob"].to_numpy()[owner] + np.round(rng_vic.normal(600, 1100, nv))
    v_dob = np.minimum(v_dob, epoch0 + first_harm - 16 * 365.25).astype(np.int64)
    victims = make_people(
        rng_vic, female=v_female, group=v_group, dob=v_dob, nbs=nbs, end_day=end_day, noise=noise
    )
    people = pd.concat([people, victims], ignore_index=True)
    people["race_code"] = ex.race_codes(rng_vic, people["group"].to_numpy())
    people["kind"] = np.r_[np.full(n, "offender"), np.full(nv, "victim")]
    confidential = np.r_[np.zeros(n, dtype=bool), rng_vic.random(nv) < 0.04]
    people["confidential"] = confidential
    people["middle_initial"] = people["middle"].str[:1]
    people["person_id"] = np.char.add("P", ex.unique_ids(rng_vic, len(people), 7).astype(str))

    say("building agency rows", 0.0)
    rows = build_rows(
        careers,
        victim_of=n + victim_idx,
        female=people["female"].to_numpy(),
        rng=rng_rows,
    )
    # Only what exists by the extract date is in the extracts; rows in random order.
    keep = np.flatnonzero((rows["time"] < end_day) & (rows["rec"] <= end_day))
    rows = rows.iloc[rng_ids.permutation(keep)].reset_index(drop=True)
    rows["agency"] = pd.Categorical(rows["agency"], categories=AGENCIES)
    say("adding identifiers and noise", 0.0)
    ids = ex.identities(
        rng_noise,
        rows,
        people,
        zips=nbs.zip,
        cities=nbs.city,
        confidential=confidential,
        noise=noise,
    )
    agency_ids, id_bits = ex.agency_person_ids(rng_ids, rows, len(people), noise)
    case_time = np.r_[off["time"].to_numpy(), careers.violence["time"].to_numpy()]
    case_year = pd.to_datetime(np.floor(case_time) + epoch0, unit="D").year.to_numpy()
    refs, case_bits = ex.case_refs(rng_case, rows["case"].to_numpy(), case_year, noise)
    for column in ids.columns:
        rows[column] = ids[column].to_numpy()
    del ids
    rows["agency_person_id"] = agency_ids
    rows["case_ref"] = refs
    rows["noise"] = rows["noise"].to_numpy() | id_bits | case_bits
    rows = _assign_raw_ids(rng_ids, rows)
    if params.drift is not None and params.drift.name == "new_feed":
        _new_feed(params, rows, drift_day(params, epoch0))
    return World(params, epoch0, end_day, people, n, nbs, careers, rows, cohort.shifted)


def _new_feed(params: SynthParams, rows: pd.DataFrame, day: float) -> None:
    """The drift ``new_feed``: the agency's rows recorded from ``day`` on come from a new feed
    that leaves identifiers and incident flags blank far more often (in place)."""
    drift = params.drift
    rng = np.random.default_rng([params.seed, 19])
    new = ((rows["agency"] == drift.feed_agency) & (rows["rec"] >= day)).to_numpy()
    u = rng.random((len(rows), 2))
    rows.loc[new & (u[:, 0] < drift.feed_dob_missing), "dob"] = -1
    rows.loc[new, ["ssn4", "phone"]] = -1
    blank = new & (u[:, 1] < drift.feed_flag_missing)
    for flag in FLAG_COLUMNS:
        rows.loc[blank, flag] = -1


def _assign_raw_ids(rng: np.random.Generator, rows: pd.DataFrame) -> pd.DataFrame:
    """Give each agency's (already shuffled) rows and events random ids: no order, no person."""
    event_key = rows["event_key"].to_numpy()
    record = np.zeros(len(rows), dtype=np.int64)
    event = np.zeros(len(rows), dtype=np.int64)
    for i, name in enumerate(AGENCIES):
        m = (rows["agency"] == name).to_numpy()
        record[m] = ex.unique_ids(rng, int(m.sum()), 8 + i % 2)
        keys, inverse = np.unique(event_key[m], return_inverse=True)
        event[m] = ex.unique_ids(rng, len(keys), 7 + (i + 1) % 2)[inverse]
    probation = (rows["agency"] == "probation").to_numpy()
    event[probation] = record[probation]  # one column holds both ids in that extract
    # victim_row refers to the row key of the victim's row in the same event
    by_key = np.full(int(rows["row_key"].max()) + 1, -1, dtype=np.int64)
    by_key[rows["row_key"].to_numpy()] = record
    victim = rows["victim_row"].to_numpy()
    victim_raw = np.where(victim >= 0, by_key[np.maximum(victim, 0)], -1)
    text = victim_raw.astype(str).astype(object)
    text[victim_raw < 0] = ""
    rows["raw_record_id"] = record
    rows["raw_event_id"] = event
    rows["raw_victim_id"] = text
    return rows


def _prefixes(config) -> dict[str, str]:
    return {a: config.ingest.agencies[a].record_prefix for a in AGENCIES}


def summarise(world: World, config) -> dict:
    """The realised figures: volumes, rates, AUC ceiling, exact-match floor."""
    off = world.careers.offences
    shown = off[off["time"] < world.end_day - 1]
    observed = shown[shown["observed"].to_numpy()]
    rows = world.rows
    p = world.people
    by_group = {}
    obs_group = p["group"].to_numpy()[observed["offender"].to_numpy()]
    for g, name in enumerate(GROUPS):
        sel = obs_group == g
        if sel.sum() >= 20:
            by_group[name] = {
                "index_offences": int(sel.sum()),
                "recorded_rate": float(observed["label"].to_numpy()[sel].mean()),
                "true_rate": float(observed["true_reoffense"].to_numpy()[sel].mean()),
                "mean_p_recorded": float(observed["p_recorded"].to_numpy()[sel].mean()),
            }
    match = exact_match_quality(
        rows["first"].to_numpy(),
        rows["last"].to_numpy(),
        rows["dob"].to_numpy(),
        rows["person"].to_numpy(),
    )
    extract_date = world.params.extract_date
    last_two = observed["decision_time"].to_numpy() >= observed["decision_time"].max() - 730
    return {
        "persons": world.params.persons,
        "victims": int((p["kind"] == "victim").sum()),
        "years": world.params.years,
        "seed": world.params.seed,
        "extract_date": extract_date.isoformat(),
        "mentions": int(len(rows)),
        "mentions_by_agency": {a: int(n) for a, n in rows["agency"].value_counts().items()},
        "index_offences": int(len(shown)),
        "index_offences_per_offender": float(len(shown) / world.params.persons),
        "index_offences_observed": int(len(observed)),
        "index_offences_observed_last_2_years": int(last_two.sum()),
        "recorded_reoffense_rate_12m": float(observed["label"].mean()),
        "true_reoffense_rate_12m": float(observed["true_reoffense"].mean()),
        "mean_p_recorded": float(observed["p_recorded"].mean()),
        "auc_ceiling": roc_auc(observed["label"].to_numpy(), observed["p_recorded"].to_numpy()),
        "auc_ceiling_all_index": roc_auc(shown["label"].to_numpy(), shown["p_recorded"].to_numpy()),
        "by_group": by_group,
        **{k: match[k] for k in ("exact_match_recall", "exact_match_precision")},
        "prefixes": _prefixes(config),
    }


def generate(
    params: SynthParams,
    out_dir: str | Path,
    *,
    config=None,
    progress: Progress | None = None,
) -> dict:
    """Generate the five agency extracts into ``out_dir`` and the truth into ``out_dir/truth``.

    Parameters
    ----------
    params : generation parameters (persons, years, seed, knobs)
    out_dir : folder to write; created if missing
    config : the IPVI configuration (its ``ingest.agencies`` fix the formats); default config
        when None
    progress : optional callable(stage, fraction)

    Returns
    -------
    dict : the summary (also written to ``truth/summary.json``), with the wall time.
    """
    from ipvi.config import load_config

    started = time.perf_counter()
    config = config or load_config()
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise IpviError(f"generate: --out {out} exists and is not a folder")
    world = simulate(params, progress)
    say = progress or (lambda stage, fraction: None)
    (out / TRUTH_DIR).mkdir(parents=True, exist_ok=True)
    dates = ex.DateFormatter(world.epoch0)
    prefixes = _prefixes(config)
    rng = _seeds(params.seed)[8]
    bad_rows = []
    for i, agency in enumerate(AGENCIES):
        say("writing extracts", i / len(AGENCIES))
        m = (world.rows["agency"] == agency).to_numpy()
        part = world.rows[m].reset_index(drop=True)
        mapping = config.ingest.agencies[agency]
        frame = ex.format_agency(agency, part, mapping, dates)
        odd_age = malformed.implausible_ages(
            frame,
            part,
            mapping,
            agency=agency,
            prefix=prefixes[agency],
            epoch0=world.epoch0,
            min_age=config.ingest.min_age_years,
            max_age=config.ingest.max_age_years,
        )
        frame, bad = malformed.inject(
            rng,
            frame,
            part,
            mapping,
            agency=agency,
            prefix=prefixes[agency],
            share=params.noise.malformed_share,
        )
        # a row already broken otherwise (quarantined, or its DOB replaced) is listed once
        overwritten = bad["record_id"][bad["defect"] != "duplicate_row"]
        bad_rows += [bad, odd_age[~odd_age["record_id"].isin(overwritten)]]
        quoted = (mapping.columns["full_name"],) if mapping.full_name_format else ()
        _write_csv(frame, out / mapping.file, quoted=quoted)
    say("writing truth", 0.0)
    _write_truth(world, out / TRUTH_DIR, prefixes, pd.concat(bad_rows, ignore_index=True))
    if params.drift is not None:
        _write_drift(world, out / TRUTH_DIR)
    summary = summarise(world, config)
    summary["malformed_rows"] = int(sum(len(b) for b in bad_rows))
    summary["parameters"] = json.loads(json.dumps(asdict(params), default=str))
    (out / TRUTH_DIR / TRUTH_FILES["summary"]).write_text(
        json.dumps(summary, indent=2, sort_keys=True) + "\n", encoding="utf-8"
    )
    summary["wall_seconds"] = round(time.perf_counter() - started, 2)  # not in the file: varies
    say("done", 1.0)
    return summary


def _write_csv(frame: pd.DataFrame, path: Path, quoted: tuple[str, ...] = ()) -> None:
    """Write with minimal quoting (RFC 4180), as agency exports usually are.

    Faster than ``DataFrame.to_csv`` on a million rows. Only the ``quoted`` columns (full names
    written "LAST, FIRST") can hold a delimiter or quote by construction; every other value is
    a code, a number, a name without punctuation or a ";"-joined id list.
    """
    columns = []
    for name in frame.columns:
        column = frame[name]
        if column.dtype == object:
            values = column.tolist()
        elif column.dtype.kind == "f":
            values = column.astype(str).replace("nan", "").tolist()  # missing -> empty
        else:
            values = column.astype(str).tolist()
        if name in quoted:
            values = ['"' + v.replace('"', '""') + '"' for v in values]
        columns.append(values)
    lines = zip(*columns, strict=True)
    with open(path, "w", encoding="utf-8", newline="") as handle:
        handle.write(",".join(frame.columns) + "\n")
        while chunk := list(itertools.islice(lines, 100_000)):  # bounded memory
            handle.write("\n".join(map(",".join, chunk)) + "\n")


def _dual_arrest_index(world: World, event_id: np.ndarray) -> pd.DataFrame:
    """Index rows for victims arrested with their partner (dual arrests).

    To the records such an arrest is an IPV offence of the victim, so training will score it.
    Victims never offend in the simulation, so ``p_recorded`` is exactly 0 (and so is the label).
    """
    rows, people = world.rows, world.people
    person = rows["person"].to_numpy()
    dual = (rows["event_type"].to_numpy() == "arrest") & (
        people["kind"].to_numpy()[person] == "victim"
    )
    dual &= rows["time"].to_numpy() < world.end_day - 1
    when = np.floor(rows["time"].to_numpy()[dual])
    decision = when + world.params.decision_lag_days
    window_end = decision + world.params.window_days
    order = pd.DataFrame({"person": person[dual], "when": when}).sort_values("when")
    prior = order.groupby("person").cumcount().reindex(range(int(dual.sum()))).to_numpy()
    day = pd.to_datetime(np.r_[when, decision, window_end] + world.epoch0, unit="D").strftime(
        "%Y-%m-%d"
    )
    k = int(dual.sum())
    return pd.DataFrame(
        {
            "index_event_id": event_id[dual],
            "event_ids": event_id[dual],
            "person_id": people["person_id"].to_numpy()[person[dual]],
            "index_date": day[:k],
            "decision_date": day[k : 2 * k],
            "prior_recorded_offences": prior,
            "tier": "",
            "notified": False,
            "p_recorded": 0.0,
            "p_true": 0.0,
            "p_recorded_if_flipped": 0.0,
            "p_recorded_if_flipped_hazard": 0.0,
            "p_true_if_flipped": 0.0,
            "label_recorded": False,
            "true_reoffense": False,
            "window_end": day[2 * k :],
            "window_observed": window_end + world.params.horizon_grace_days <= world.end_day,
            "zip": "",
            "neighbourhood": -1,
            "recording_probability": np.nan,
            "recording_probability_after_drift": np.nan,
            "index_kind": "dual_arrest_victim",
        }
    )


def _write_drift(world: World, folder: Path) -> None:
    """``truth/drift.json``: the drift injected, its parameters and where it acts."""
    drift = world.params.drift
    payload = {
        "name": drift.name,
        "description": DRIFTS[drift.name],
        "start": drift.start.isoformat(),
        "parameters": json.loads(json.dumps(asdict(drift), default=str)),
        "neighbourhoods": np.flatnonzero(world.shifted).tolist(),
        "zips": sorted(world.nbs.zip[world.shifted].tolist()),
    }
    (folder / TRUTH_FILES["drift"]).write_text(
        json.dumps(payload, indent=2, sort_keys=True) + "\n", encoding="utf-8"
    )


def _write_truth(world: World, folder: Path, prefixes: dict[str, str], bad: pd.DataFrame) -> None:
    rows, people, off = world.rows, world.people, world.careers.offences
    prefix = rows["agency"].map(prefixes).to_numpy(dtype=object) + "-"
    record_id = prefix + rows["raw_record_id"].to_numpy().astype(str).astype(object)
    event_id = prefix + rows["raw_event_id"].to_numpy().astype(str).astype(object)
    bits = rows["noise"].to_numpy()
    uniq, inverse = np.unique(bits, return_inverse=True)
    labels = np.array(
        [";".join(k for k, b in ex.NOISE_BITS.items() if int(u) & b) for u in uniq], dtype=object
    )
    pid = people["person_id"].to_numpy()
    records = pd.DataFrame(
        {
            "record_id": record_id,
            "person_id": pid[rows["person"].to_numpy()],
            "agency": rows["agency"],
            "role": rows["role"],
            "person_kind": people["kind"].to_numpy()[rows["person"].to_numpy()],
            "event_id": event_id,
            "noise": labels[inverse],
        }
    )
    _write_csv(records, folder / TRUTH_FILES["records"])

    persons = pd.DataFrame(
        {
            "person_id": pid,
            "kind": people["kind"],
            "sex": np.where(people["female"], "female", "male"),
            "race_group": np.array(GROUPS, dtype=object)[people["group"].to_numpy()],
            "race_code": people["race_code"],
            "hispanic": people["group"].to_numpy() == GROUPS.index("hispanic"),
            "dob": pd.to_datetime(people["dob"], unit="D").dt.strftime("%Y-%m-%d"),
            "suffix": people["suffix"],
            "address_confidential": people["confidential"],
        }
    ).sort_values("person_id")
    _write_csv(persons, folder / TRUTH_FILES["persons"])

    shown_mask = off["time"].to_numpy() < world.end_day - 1
    in_offence = rows["offence"].to_numpy() >= 0
    ev = pd.DataFrame(
        {"offence": rows["offence"].to_numpy()[in_offence], "event_id": event_id[in_offence]}
    ).drop_duplicates()
    ev = ev.sort_values(["offence", "event_id"], kind="stable")
    # one ";"-joined list per offence, without a Python-level groupby
    starts = np.flatnonzero(np.r_[True, np.diff(ev["offence"].to_numpy()) != 0])
    joined = np.add.reduceat((ev["event_id"] + ";").to_numpy(dtype=object), starts)
    event_lists = pd.Series(
        [x[:-1] for x in joined], index=ev["offence"].to_numpy()[starts], dtype=object
    )
    # The index event: the incident report, or the call when the report is not in yet.
    etype = rows["event_type"].to_numpy()
    first = pd.DataFrame(
        {
            "offence": rows["offence"].to_numpy(),
            "rank": np.where(etype == "incident", 0, np.where(etype == "call", 1, 9)),
            "event_id": event_id,
        }
    )[in_offence]
    first = first[first["rank"] < 9].sort_values(["offence", "rank"], kind="stable")
    index_event = first.drop_duplicates("offence").set_index("offence")["event_id"]
    shown = off[shown_mask]
    oid = shown.index.to_numpy()
    day = lambda x: pd.to_datetime(np.floor(x) + world.epoch0, unit="D").strftime("%Y-%m-%d")  # noqa: E731
    truth = pd.DataFrame(
        {
            "index_event_id": index_event.reindex(oid).fillna("").to_numpy(),
            "event_ids": event_lists.reindex(oid).fillna("").to_numpy(),
            "person_id": pid[shown["offender"].to_numpy()],
            "index_date": day(shown["time"].to_numpy()),
            "decision_date": day(shown["decision_time"].to_numpy()),
            "prior_recorded_offences": shown["prior_offences"].to_numpy(),
            "tier": shown["tier"].to_numpy(),
            "notified": shown["notified"].to_numpy(),
            "p_recorded": shown["p_recorded"].round(6).to_numpy(),
            "p_true": shown["p_true"].round(6).to_numpy(),
            "p_recorded_if_flipped": shown["p_recorded_if_flipped"].round(6).to_numpy(),
            "p_recorded_if_flipped_hazard": shown["p_recorded_if_flipped_hazard"]
            .round(6)
            .to_numpy(),
            "p_true_if_flipped": shown["p_true_if_flipped"].round(6).to_numpy(),
            "label_recorded": shown["label"].to_numpy(),
            "true_reoffense": shown["true_reoffense"].to_numpy(),
            "window_end": day(shown["window_end"].to_numpy()),
            "window_observed": shown["observed"].to_numpy(),
            "zip": world.nbs.zip[shown["neighbourhood"].to_numpy()],
            "neighbourhood": shown["neighbourhood"].to_numpy(),
            "recording_probability": shown["r"].round(6).to_numpy(),
            "recording_probability_after_drift": shown["r_after_drift"].round(6).to_numpy(),
            "index_kind": "offender",
        }
    )
    truth = pd.concat([truth, _dual_arrest_index(world, event_id)], ignore_index=True)
    truth = truth.sort_values(["index_date", "index_event_id"], kind="stable")
    _write_csv(truth, folder / TRUTH_FILES["index_offences"])
    _write_csv(bad, folder / TRUTH_FILES["malformed"])
