"""Whoever can write the database tries to rewrite the audit log: ``ipvi audit-log verify``
catches every attempt against the last checkpoint, exits 1 and names the row.

On each engine: a row edited, a row deleted, a row deleted and the rest re-hashed without the
secret (the unkeyed hash, or a guessed key), the same done with the secret (an insider), the
log cut short; a forged checkpoint; and an intact log, from the start and from ``--since``.
"""

from __future__ import annotations

import hashlib
import json

import pytest
from sqlalchemy import delete, select, update

from ipvi.cli import main
from ipvi.db import open_registry, session_scope
from ipvi.site_key import SiteKey
from ipvi.tables.serving import audit_chain_head, audit_log
from serving.audit_log import (
    CHAIN_PURPOSE,
    AuditEntry,
    append_entries,
    chain_hash,
    unkeyed_chain_hash,
)

pytestmark = pytest.mark.security

ROWS = 20
BAD = 7


@pytest.fixture
def chained(db_url, tmp_path, monkeypatch, site_key):
    """A log of 20 rows and a checkpoint of its head, in files the commands use."""
    config = tmp_path / "config.yaml"
    checkpoints = tmp_path / "checkpoints.jsonl"
    config.write_text(f"paths:\n  audit_checkpoint_file: {checkpoints}\n")
    monkeypatch.setenv("IPVI_CONFIG", str(config))
    monkeypatch.setenv("IPVI_DATABASE_URL", db_url)
    engine = open_registry(db_url)
    with session_scope(engine) as session:
        append_entries(
            session,
            [
                AuditEntry(endpoint="POST /v1/score", outcome="ok", person_ids=[f"h{i}"])
                for i in range(ROWS)
            ],
            site_key,
        )
    assert main(["audit-log", "checkpoint"]) == 0
    yield engine, checkpoints
    engine.dispose()


def _verify(capsys, *args) -> tuple[int, dict]:
    capsys.readouterr()
    code = main(["audit-log", "verify", "--json", *args])
    return code, json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def _rehash(engine, from_seq: int, hasher) -> None:
    """Delete row ``from_seq``, renumber the rows after it and chain them again with
    ``hasher(prev_hash, seq, entry)``, head included: a consistent-looking log."""
    with session_scope(engine) as session:
        session.execute(delete(audit_log).where(audit_log.c.seq == from_seq))
        rows = session.execute(
            select(audit_log).where(audit_log.c.seq > from_seq).order_by(audit_log.c.seq)
        ).mappings()
        rows = [dict(row) for row in rows]
        session.execute(delete(audit_log).where(audit_log.c.seq > from_seq))
        prev = session.scalar(select(audit_log.c.row_hash).where(audit_log.c.seq == from_seq - 1))
        for seq, row in enumerate(rows, start=from_seq):
            entry = {**row, "event_time": row["event_time"].isoformat(timespec="microseconds")}
            row_hash, key_id = hasher(prev, seq, entry)
            session.execute(
                audit_log.insert().values(
                    {**row, "seq": seq, "prev_hash": prev, "row_hash": row_hash, "key_id": key_id}
                )
            )
            prev = row_hash
        session.execute(
            update(audit_chain_head).values(seq=from_seq + len(rows) - 1, row_hash=prev)
        )


def test_an_intact_log_verifies_from_the_start_and_from_a_row(chained, capsys):
    code, report = _verify(capsys)
    assert code == 0 and report["ok"] and report["rows"] == ROWS and report["checkpoints"] == 1
    code, report = _verify(capsys, "--since", "11")
    assert code == 0 and report["rows"] == ROWS - 10


def test_an_edited_row_is_named(chained, capsys):
    engine, _ = chained
    with session_scope(engine) as session:
        session.execute(update(audit_log).where(audit_log.c.seq == BAD).values(outcome="refused"))
    code, report = _verify(capsys)
    assert code == 1 and report["first_bad_seq"] == BAD
    assert "does not match its hash" in report["reason"]
    # --since after the edit does not look back at it.
    assert _verify(capsys, "--since", str(BAD + 2))[0] == 0


def test_a_deleted_row_is_named(chained, capsys):
    engine, _ = chained
    with session_scope(engine) as session:
        session.execute(delete(audit_log).where(audit_log.c.seq == BAD))
    code, report = _verify(capsys)
    assert (code, report["first_bad_seq"]) == (1, BAD) and "missing" in report["reason"]


@pytest.mark.parametrize("without", ["unkeyed hash", "guessed key"])
def test_rows_re_hashed_without_the_secret_are_named(chained, capsys, site_key, without):
    engine, _ = chained
    guessed = SiteKey(b"a guess at the site secret, 32 chars long").derive(CHAIN_PURPOSE)

    def hasher(prev, seq, entry):
        if without == "unkeyed hash":
            return unkeyed_chain_hash(prev, seq, entry), None
        return chain_hash(guessed, prev, seq, entry), site_key.key_id  # the id is no secret

    _rehash(engine, BAD, hasher)
    code, report = _verify(capsys)
    assert (code, report["first_bad_seq"]) == (1, BAD)


def test_rows_re_hashed_with_the_secret_are_caught_by_the_checkpoint(chained, capsys, site_key):
    engine, checkpoints = chained
    key = site_key.derive(CHAIN_PURPOSE)
    _rehash(
        engine, BAD, lambda prev, seq, entry: (chain_hash(key, prev, seq, entry), site_key.key_id)
    )
    with session_scope(engine) as session:  # one more row: row 20 exists again
        append_entries(session, [AuditEntry(endpoint="POST /v1/tier", outcome="ok")], site_key)
    code, report = _verify(capsys)
    assert (code, report["first_bad_seq"]) == (1, ROWS)
    assert "checkpoint" in report["reason"]
    # Without the checkpoint the re-hashed log would pass: the checkpoint is what catches it.
    assert _verify(capsys, "--checkpoint", str(checkpoints.with_name("none.jsonl")))[0] == 0


def test_a_log_cut_short_is_caught_by_the_checkpoint(chained, capsys):
    engine, _ = chained
    with session_scope(engine) as session:
        session.execute(delete(audit_log).where(audit_log.c.seq > 15))
        last = session.scalar(select(audit_log.c.row_hash).where(audit_log.c.seq == 15))
        session.execute(update(audit_chain_head).values(seq=15, row_hash=last))
    code, report = _verify(capsys)
    assert (code, report["first_bad_seq"]) == (1, ROWS) and "cut short" in report["reason"]


def test_a_forged_checkpoint_is_refused(chained, capsys):
    _, checkpoints = chained
    line = json.loads(checkpoints.read_text().splitlines()[0])
    forged = {**line, "seq": 3, "row_hash": hashlib.sha256(b"x").hexdigest()}
    with checkpoints.open("a") as handle:
        handle.write(json.dumps(forged) + "\n")
    code, report = _verify(capsys)
    assert code == 1 and "not signed with this site key" in report["reason"]


def test_verification_fails_clearly_with_another_key(chained, capsys, monkeypatch):
    _, checkpoints = chained
    monkeypatch.setenv("IPVI_AUDIT_KEY", "another site's key, at least 32 characters")
    code, report = _verify(capsys)
    assert code == 1 and "not signed with this site key" in report["reason"]
    code, report = _verify(capsys, "--checkpoint", str(checkpoints.with_name("none.jsonl")))
    assert (code, report["first_bad_seq"]) == (1, 1) and "not this site's key" in report["reason"]
