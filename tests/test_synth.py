"""The synthetic generator: formats, determinism, truth separation, noise rates, ceilings."""

from __future__ import annotations

import datetime as dt
import json
import re

import numpy as np
import pandas as pd
import pytest

from ipvi.cli import main
from ipvi.config import load_config
from synth import SynthParams, generate, simulate
from synth.core import AGENCIES, TRUTH_DIR
from synth.metrics import exact_match_quality, roc_auc
from tests.conftest import SAMPLE_DIR

CONFIG = load_config()
MAPPINGS = CONFIG.ingest.agencies


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """A small generated set (seed 3), written once for the module."""
    out = tmp_path_factory.mktemp("synth") / "out"
    summary = generate(SynthParams(persons=400, seed=3), out, config=CONFIG)
    return out, summary


def _read(folder, agency: str) -> pd.DataFrame:
    return pd.read_csv(folder / MAPPINGS[agency].file, dtype=str, keep_default_na=False)


def _parses(values: pd.Series, formats: list[str]) -> pd.Series:
    ok = pd.Series(False, index=values.index)
    for fmt in formats:
        ok |= pd.to_datetime(values, format=fmt, errors="coerce").notna()
    return ok


def _malformed(folder) -> pd.DataFrame:
    return pd.read_csv(folder / TRUTH_DIR / "malformed_rows.csv", dtype=str, keep_default_na=False)


@pytest.mark.parametrize("agency", AGENCIES)
def test_extracts_follow_the_ingest_mapping(small, agency):
    folder, _ = small
    mapping = MAPPINGS[agency]
    frame = _read(folder, agency)
    assert list(frame.columns) == list(dict.fromkeys(mapping.columns.values()))
    bad = _malformed(folder)
    bad = bad[bad["agency"] == agency]
    raw_bad = set(bad["record_id"].str.split("-", n=1).str[1])
    clean = frame[~frame[mapping.columns["record_id"]].isin(raw_bad)]
    cols = mapping.columns
    # raw ids carry no prefix
    assert clean[cols["record_id"]].str.fullmatch(r"\d+").all()
    assert clean[cols["event_id"]].str.fullmatch(r"\d+").all()
    # every coded field uses the declared codes
    for field, codes in mapping.values.items():
        if field in cols:
            values = clean[cols[field]]
            assert set(values[values != ""]) <= set(codes), field
    assert _parses(clean[cols["offense_date"]], mapping.date_formats).all()
    assert _parses(clean[cols["recorded_at"]], mapping.date_formats).all()
    dob = clean[cols["dob"]]
    assert _parses(dob[dob != ""], mapping.dob_formats).all()
    # the victim's row id refers to a row of the same file and the same event
    if "victim_record_id" in cols:
        ref = frame[frame[cols["victim_record_id"]] != ""]
        assert len(ref) > 0
        rows = frame.drop_duplicates(cols["record_id"]).set_index(cols["record_id"])
        target = rows.loc[ref[cols["victim_record_id"]]]
        assert (target[cols["event_id"]].to_numpy() == ref[cols["event_id"]].to_numpy()).all()


def test_full_names_follow_their_declared_style(small):
    folder, _ = small
    jail = _read(folder, "jail")[MAPPINGS["jail"].columns["full_name"]]
    assert jail.str.fullmatch(r"[A-Z' .-]+, [A-Z' .-]+").mean() > 0.99
    orders = _read(folder, "protective_orders")[MAPPINGS["protective_orders"].columns["full_name"]]
    assert not orders.str.contains(",").any()
    assert (orders.str.split().str.len() >= 2).all()


def test_generation_is_deterministic_per_seed(small, tmp_path):
    folder, _ = small
    again = tmp_path / "again"
    generate(SynthParams(persons=400, seed=3), again, config=CONFIG)
    files = [MAPPINGS[a].file for a in AGENCIES] + [
        f"{TRUTH_DIR}/{name}"
        for name in ("records.csv", "persons.csv", "index_offences.csv", "malformed_rows.csv")
    ]
    for name in files:
        assert (folder / name).read_bytes() == (again / name).read_bytes(), name
    other = tmp_path / "other"
    generate(SynthParams(persons=400, seed=4), other, config=CONFIG)
    assert (folder / "police_incidents.csv").read_bytes() != (
        other / "police_incidents.csv"
    ).read_bytes()


def test_truth_stays_out_of_the_extracts(small):
    folder, _ = small
    truth = pd.read_csv(folder / TRUTH_DIR / "records.csv", dtype=str)
    person_ids = set(truth["person_id"])
    truth_columns = {"person_id", "p_recorded", "true_reoffense", "label_recorded", "noise"}
    for agency in AGENCIES:
        frame = _read(folder, agency)
        assert not truth_columns & {c.lower() for c in frame.columns}
        cells = set(np.unique(frame.to_numpy().astype(str)))
        assert not cells & person_ids, agency
    assert sorted(p.name for p in folder.glob("*.csv")) == sorted(
        MAPPINGS[a].file for a in AGENCIES
    )


def test_every_extract_row_has_a_true_person(small):
    folder, _ = small
    truth = pd.read_csv(folder / TRUTH_DIR / "records.csv", dtype=str)
    assert truth["record_id"].is_unique
    for agency in AGENCIES:
        mapping = MAPPINGS[agency]
        raw = _read(folder, agency)[mapping.columns["record_id"]]
        assert set(mapping.record_prefix + "-" + raw) <= set(truth["record_id"])
    assert set(truth["role"]) <= {
        "suspect",
        "arrestee",
        "defendant",
        "respondent",
        "probationer",
        "victim",
    }


def test_ids_do_not_follow_persons(small):
    """Record ids are random: sorting by them does not group a person's rows together."""
    folder, _ = small
    truth = pd.read_csv(folder / TRUTH_DIR / "records.csv", dtype=str)
    police = truth[truth["agency"] == "police"].sort_values("record_id")
    same_next = (police["person_id"].to_numpy()[1:] == police["person_id"].to_numpy()[:-1]).mean()
    assert same_next < 0.02


def test_malformed_rows_are_listed_and_present(small):
    folder, _ = small
    bad = _malformed(folder)
    assert {"duplicate_row", "bad_event_date", "unparseable_dob", "bad_zip"} <= set(bad["defect"])
    assert set(bad["expected"]) == {"quarantine", "field_issue"}
    for (agency, defect), group in bad.groupby(["agency", "defect"]):
        mapping = MAPPINGS[agency]
        frame = _read(folder, agency)
        raw = group["record_id"].str.split("-", n=1).str[1]
        rows = frame[frame[mapping.columns["record_id"]].isin(raw)]
        if defect == "duplicate_row":
            counts = frame[mapping.columns["record_id"]].value_counts()
            assert (counts.loc[raw] == 2).all()
            continue
        written = set(rows[group["column"].iloc[0]])
        assert written <= set(group["value"]), (agency, defect)
        if defect in {"unparseable_dob", "bad_event_date"}:
            formats = mapping.dob_formats if defect == "unparseable_dob" else mapping.date_formats
            assert not _parses(rows[group["column"].iloc[0]], formats).any()


def test_summary_reports_the_ceilings(small):
    """The summary's figures, recomputed from the files written beside it."""
    folder, summary = small
    truth = pd.read_csv(folder / TRUTH_DIR / "index_offences.csv")
    observed = truth[truth["window_observed"] & (truth["index_kind"] == "offender")]
    auc = roc_auc(observed["label_recorded"].to_numpy(), observed["p_recorded"].to_numpy())
    assert summary["auc_ceiling"] == pytest.approx(auc, abs=1e-4)  # p_recorded has 6 decimals
    by_agency = {
        agency: _read(folder, agency)[MAPPINGS[agency].columns["record_id"]].nunique()
        for agency in AGENCIES
    }
    assert summary["mentions_by_agency"] == by_agency
    records = pd.read_csv(folder / TRUTH_DIR / "records.csv", dtype=str)
    assert summary["mentions"] == len(records) == sum(by_agency.values()) > 10 * 400
    # From the extracts as written (full names split, first date format only), so close to
    # the generator's own figures rather than equal.
    quality = _exact_match_from_files(folder, AGENCIES)
    assert summary["exact_match_recall"] == pytest.approx(quality["exact_match_recall"], abs=0.01)
    assert summary["exact_match_precision"] == pytest.approx(
        quality["exact_match_precision"], abs=0.01
    )


def test_sample_meets_the_contract():
    """The shipped sample: AUC ceiling in range, re-offence rate, exact-match floor, sizes."""
    summary = json.loads((SAMPLE_DIR / TRUTH_DIR / "summary.json").read_text())
    truth = pd.read_csv(SAMPLE_DIR / TRUTH_DIR / "index_offences.csv")
    observed = truth[truth["window_observed"] & (truth["index_kind"] == "offender")]
    auc = roc_auc(observed["label_recorded"].to_numpy(), observed["p_recorded"].to_numpy())
    assert 0.70 <= auc <= 0.82
    assert auc == pytest.approx(summary["auc_ceiling"], abs=1e-4)
    assert 0.15 <= observed["label_recorded"].mean() <= 0.25
    assert summary["exact_match_recall"] <= 0.75
    assert summary["exact_match_precision"] <= 0.98
    for agency in AGENCIES:
        assert (SAMPLE_DIR / MAPPINGS[agency].file).stat().st_size < 5_000_000
    assert 20_000 <= summary["mentions"] <= 80_000


def _first_last(frame: pd.DataFrame, mapping) -> tuple[pd.Series, pd.Series]:
    """First and last names of an extract, split from a full name where it has one."""
    cols = mapping.columns
    if "full_name" not in cols:
        return frame[cols["first_name"]], frame[cols["last_name"]]
    full = frame[cols["full_name"]]
    if mapping.full_name_format == "last_comma_first":
        last, rest = full.str.split(",", n=1).str[0], full.str.split(",", n=1).str[1]
        return rest.str.split().str[0], last.str.strip()
    words = full.str.split()
    return words.str[0], words.str[-1]


def _exact_match_from_files(folder, agencies) -> dict[str, float]:
    """Exact (first, last, dob) matching recomputed from the written extracts of ``agencies``."""
    records = pd.read_csv(folder / TRUTH_DIR / "records.csv", dtype=str)
    person = records.set_index("record_id")["person_id"]
    parts = []
    for agency in agencies:
        mapping = MAPPINGS[agency]
        cols = mapping.columns
        frame = _read(folder, agency).drop_duplicates(cols["record_id"])
        first, last = _first_last(frame, mapping)
        dob = pd.to_datetime(frame[cols["dob"]], format=mapping.dob_formats[0], errors="coerce")
        parts.append(
            pd.DataFrame(
                {
                    "first": first.fillna("").str.upper(),
                    "last": last.fillna("").str.upper(),
                    "dob": (dob - pd.Timestamp(0)).dt.days.fillna(-1).astype(int),
                    "person": person.loc[
                        mapping.record_prefix + "-" + frame[cols["record_id"]]
                    ].to_numpy(),
                }
            )
        )
    both = pd.concat(parts)
    return exact_match_quality(
        both["first"].to_numpy(),
        both["last"].to_numpy(),
        both["dob"].to_numpy(),
        both["person"].to_numpy(),
    )


def test_exact_match_floor_on_the_sample_extracts():
    """Recompute exact (first, last, dob) matching from the written police and court files."""
    quality = _exact_match_from_files(SAMPLE_DIR, ("police", "court"))
    assert quality["exact_match_recall"] <= 0.75
    assert quality["exact_match_precision"] <= 0.98


def test_noise_rates_match_the_defaults():
    world = simulate(SynthParams(persons=3000, seed=11))
    noise = world.rows["noise"].to_numpy()
    from synth.extracts import NOISE_BITS

    def rate(name: str, mask=None) -> float:
        sel = noise if mask is None else noise[mask]
        return float((sel & NOISE_BITS[name] > 0).mean())

    assert rate("first_name_typo") == pytest.approx(0.08, abs=0.01)
    assert rate("nickname") == pytest.approx(0.06, abs=0.01)
    assert rate("last_name_typo") == pytest.approx(0.05, abs=0.01)
    assert rate("name_order_swap") == pytest.approx(0.02, abs=0.005)
    assert rate("dob_day_month_swap") == pytest.approx(0.02, abs=0.006)
    assert rate("dob_one_digit") == pytest.approx(0.03, abs=0.006)
    dob_missing = rate("dob_missing")
    assert 0.10 <= dob_missing <= 0.22  # 15 % on average, varying by agency
    by_agency = {a: rate("dob_missing", (world.rows["agency"] == a).to_numpy()) for a in AGENCIES}
    assert by_agency["jail"] < by_agency["police"] < by_agency["protective_orders"]
    ssn_rows = world.rows["agency"].isin(["jail", "probation"]).to_numpy()
    assert (world.rows["ssn4"].to_numpy()[ssn_rows] < 0).mean() == pytest.approx(0.6, abs=0.03)
    case_ref = world.rows["case_ref"].to_numpy()
    bad_ref = (case_ref == "") | (noise & NOISE_BITS["case_ref_garbled"] > 0)
    assert 0.10 <= bad_ref.mean() <= 0.20
    # about 15 % of women change surname over ten years
    women = world.people[world.people["female"]]
    assert (women["last_new"] != women["last"]).mean() == pytest.approx(0.15, abs=0.02)
    juniors = (world.people["suffix"] == "JR").sum() + (world.people["suffix"] == "SR").sum()
    assert juniors / world.n_offenders == pytest.approx(0.02, abs=0.005)
    hispanic = (world.people["group"] == 2).mean()
    assert hispanic >= 0.2
    # about 5 % of incident reports are entered more than 30 days late (never 90 or more)
    reports = world.rows[
        (world.rows["event_type"] == "incident") & (world.rows["role"] != "victim")
    ]
    delay = reports["rec"] - reports["time"]
    assert (delay > 30).mean() == pytest.approx(0.05, abs=0.012)
    assert delay.max() < 90
    # dispositions 30-300 days after the charge
    court = world.rows[world.rows["agency"] == "court"]
    charge = court[court["event_type"] == "charge"].set_index("case")["rec"]
    disposition = court[court["event_type"] == "disposition"].set_index("case")["rec"]
    gap = (disposition - charge.reindex(disposition.index)).dropna()
    assert gap.between(30, 300).all()
    # a few dual arrests: the victim arrested in the partner's arrest event
    arrests = world.rows[world.rows["event_type"] == "arrest"]
    dual = world.people["kind"].to_numpy()[arrests["person"].to_numpy()] == "victim"
    assert 0.005 < dual.mean() < 0.05


def test_no_offence_during_custody():
    world = simulate(SynthParams(persons=1500, seed=5))
    off = world.careers.offences
    arrests = off[off["arrested"]]
    spells = pd.DataFrame(
        {
            "offender": arrests["offender"],
            "s": arrests["arrest_time"] + 0.02,
            "e": arrests["release"],
        }
    )
    sentences = off[off["sentenced"]]
    spells = pd.concat(
        [
            spells,
            pd.DataFrame(
                {
                    "offender": sentences["offender"],
                    "s": sentences["sent_start"],
                    "e": sentences["sent_end"],
                }
            ),
        ]
    )
    pairs = off[["offender", "time"]].merge(spells, on="offender")
    inside = (pairs["time"] > pairs["s"]) & (pairs["time"] < pairs["e"])
    assert not inside.any()


def test_recording_bias_acts_through_neighbourhood_only():
    fair = simulate(SynthParams(persons=1500, seed=8, label_bias=0.0)).careers.offences
    base = fair[~fair["notified"]]
    assert base["r"].round(9).nunique() <= 2  # base rate, plus notified offenders' boost
    biased = simulate(SynthParams(persons=1500, seed=8)).careers.offences
    spread = biased.groupby("neighbourhood")["r"].min()
    assert spread.max() - spread.min() > 0.15


def test_cli_generate_and_bad_options(tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["generate", "--persons", "150", "--seed", "2", "--out", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["persons"] == 150 and (out / "truth" / "records.csv").is_file()
    assert main(["generate", "--persons", "10", "--segregation", "2", "--out", str(out)]) == 2
    assert "--segregation" in capsys.readouterr().err
    assert main(["generate", "--extract-date", "2026-13-01", "--out", str(out)]) == 2
    assert "--extract-date" in capsys.readouterr().err
    assert main(["generate", "--persons", "0", "--out", str(out)]) == 2
    assert "--persons" in capsys.readouterr().err
    afile = tmp_path / "a_file"
    afile.write_text("x")
    assert main(["generate", "--persons", "5", "--out", str(afile)]) == 2
    assert "--out" in capsys.readouterr().err


def test_extract_date_bounds_what_is_recorded(small, tmp_path):
    out = tmp_path / "early"
    generate(SynthParams(persons=200, seed=3, extract_date=dt.date(2020, 7, 1)), out, config=CONFIG)
    mapping = MAPPINGS["court"]
    frame = _read(out, "court")
    filed = pd.to_datetime(frame[mapping.columns["recorded_at"]], format="%Y%m%d", errors="coerce")
    assert filed.max() <= pd.Timestamp("2020-07-01")
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", str(filed.min().date()))


@pytest.mark.slow
def test_shipped_sample_is_what_the_generator_makes(tmp_path):
    """data_samples/ is exactly `ipvi generate --persons 3000 --seed 7` of the current code."""
    out = tmp_path / "sample"
    generate(SynthParams(persons=3000, seed=7), out, config=CONFIG)
    names = [MAPPINGS[a].file for a in AGENCIES] + [
        f"{TRUTH_DIR}/{name}"
        for name in ("records.csv", "persons.csv", "index_offences.csv", "malformed_rows.csv")
    ]
    for name in names:
        assert (out / name).read_bytes() == (SAMPLE_DIR / name).read_bytes(), name
