"""The one YAML configuration: defaults validate, bad keys and values are errors naming the key."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ipvi.config import default_config_dict, load_config
from ipvi.errors import ConfigError


def test_defaults_validate_and_name_every_agency():
    config = load_config()
    assert set(config.ingest.agencies) == {
        "police",
        "jail",
        "court",
        "protective_orders",
        "probation",
    }


def test_unknown_key_is_an_error_naming_the_key(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("ingest:\n  dob_min_yaer: 1900\n")
    with pytest.raises(ConfigError, match=r"config key 'ingest\.dob_min_yaer': unknown key"):
        load_config(path)


def test_bad_value_is_an_error_naming_the_key(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("ingest:\n  min_age_years: ten\n")
    with pytest.raises(ConfigError, match=r"config key 'ingest\.min_age_years'"):
        load_config(path)


def test_serving_connection_settings_are_bounded_and_named(tmp_path):
    for key, value, bound in (
        ("keep_alive_seconds", 0, "greater than or equal to 1"),
        ("max_requests_per_connection", -1, "greater than or equal to 0"),
    ):
        path = tmp_path / f"{key}.yaml"
        path.write_text(f"serving:\n  {key}: {value}\n")
        with pytest.raises(ConfigError, match=rf"config key 'serving\.{key}': .*{bound}"):
            load_config(path)


def test_unknown_canonical_field_in_a_mapping_is_named(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("ingest:\n  agencies:\n    police:\n      columns:\n        shoe_size: X\n")
    with pytest.raises(ConfigError, match="shoe_size"):
        load_config(path)


def test_override_merges_over_defaults(tmp_path):
    path = tmp_path / "site.yaml"
    path.write_text("ingest:\n  agencies:\n    police:\n      file: pd.csv\n")
    config = load_config(path)
    assert config.ingest.agencies["police"].file == "pd.csv"
    default_columns = default_config_dict()["ingest"]["agencies"]["police"]["columns"]
    assert config.ingest.agencies["police"].columns == default_columns


def test_missing_config_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")


def test_section_hash_is_stable_and_sensitive():
    config = load_config()
    assert config.section_hash("ingest") == load_config().section_hash("ingest")
    changed = config.model_copy(deep=True)
    changed.ingest.min_age_years += 1
    assert changed.section_hash("ingest") != config.section_hash("ingest")


def test_cli_reports_a_bad_config_in_one_line_without_traceback(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("nonsense_section: 1\n")
    completed = subprocess.run(
        [sys.executable, "-m", "ipvi.cli", "--config", str(path), "ingest", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert completed.returncode == 2
    assert "Traceback" not in completed.stderr
    assert completed.stderr.strip() == "error: config key 'nonsense_section': unknown key"
