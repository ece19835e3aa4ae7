"""The site secret: from IPVI_AUDIT_KEY or its file, created once, and the pseudonyms it keys."""

from __future__ import annotations

import hashlib
import stat
from concurrent.futures import ProcessPoolExecutor

import pytest

from ipvi.errors import IpviError
from ipvi.purge import scrub, whole_identifiers
from ipvi.residue import redact_files
from ipvi.site_key import KEY_ENV, PSEUDONYM_CHARS, load_site_key


@pytest.fixture
def no_env(monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)


def test_the_key_file_is_created_once_private_and_then_read(tmp_path, no_env):
    path = tmp_path / "keys" / "audit.key"
    with pytest.raises(IpviError, match="no site key: set IPVI_AUDIT_KEY"):
        load_site_key(path)  # only commands that write create it
    created = load_site_key(path, create=True)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_site_key(path).key_id == created.key_id
    # Several processes creating it at once end up with one key.
    with ProcessPoolExecutor(4) as pool:
        ids = set(pool.map(_key_id, [str(tmp_path / "race.key")] * 8))
    assert len(ids) == 1


def _key_id(path: str) -> str:
    return load_site_key(path, create=True).key_id


def test_the_variable_wins_and_short_keys_are_refused(tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "x" * 40)
    assert load_site_key(tmp_path / "missing.key").source == KEY_ENV
    monkeypatch.setenv(KEY_ENV, "too short")
    with pytest.raises(IpviError, match="shorter than 32 characters"):
        load_site_key(tmp_path / "missing.key")


def test_pseudonyms_are_keyed_and_cannot_be_found_by_counting(site_key, tmp_path, no_env):
    other = load_site_key(tmp_path / "other.key", create=True)
    value = "P00000138"
    assert len(site_key.pseudonym(value)) == PSEUDONYM_CHARS
    assert site_key.pseudonym(value) == site_key.pseudonym(value)
    assert site_key.pseudonym(value) != other.pseudonym(value)
    # The probe reversed every unkeyed hash by hashing every sequential id: nothing matches.
    counted = {hashlib.sha256(f"P{i:08d}".encode()).hexdigest()[:32] for i in range(200)}
    assert site_key.pseudonym(value) not in counted
    assert site_key.derive("audit-chain") != site_key.derive("pseudonym")


def test_reports_lose_whole_identifiers_only(tmp_path):
    report = tmp_path / "reports" / "review.csv"
    report.parent.mkdir()
    report.write_text("pair,records\n1,PD-100;PD-1001\n2,P00000138\n")
    (tmp_path / "reports" / "chart.png").write_bytes(b"PD-100")
    changed = redact_files([tmp_path / "reports"], ["PD-100", "P00000138"])
    assert changed == [report]
    assert report.read_text() == "pair,records\n1,[purged];PD-1001\n2,[purged]\n"
    assert (tmp_path / "reports" / "chart.png").read_bytes() == b"PD-100"  # not text
    assert whole_identifiers([]) is None


def test_stored_reports_lose_whole_identifiers_only():
    report = {
        "largest_clusters": [{"person_id": "P00000138", "records": 4}, {"person_id": "P00000139"}],
        "note": "P00000138 and PD-1001 merged",
        "sizes": [[2, 10]],
    }
    cleaned, changed = scrub(report, ["P00000138", "PD-100"])
    assert changed == 2
    assert cleaned["largest_clusters"][0] == {"person_id": "[purged]", "records": 4}
    assert cleaned["largest_clusters"][1] == {"person_id": "P00000139"}
    assert cleaned["note"] == "[purged] and PD-1001 merged" and cleaned["sizes"] == [[2, 10]]
