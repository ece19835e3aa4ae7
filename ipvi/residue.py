"""Where an identifier still appears: every table of the registry and every file the project
writes (``ipvi purge --verify ID``), and its removal from text reports.

A purge deletes rows stage by stage, but copies live elsewhere too: tier lists, reports, MLflow
artefacts, the service's link index, the SQLite file's free pages. This module looks for them
all without trusting any stage's own account:

- the identifier itself (a person or record id) and, while the person is still linked, each of
  its record ids, as whole identifiers in every text value of every table and every file, and
  as raw bytes in binary files (a SQLite database's deleted pages, a pickled index);
- the record ids of a purged person, which nobody knows any more: every identifier-like token
  is hashed with the site key and compared with the pseudonyms the person's tombstone kept;
- the unkeyed SHA-256 of any of those ids, which older versions stored and anyone can reverse
  by counting.

Keyed pseudonyms in the audit log are not findings: the log keeps them by design (the record of
who was served what), and without the site secret they name no one. They are counted apart.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Engine, MetaData, String, Table, Text, inspect, select
from sqlalchemy.types import JSON

from ipvi.purge import PurgeTarget, tombstone_hash, whole_identifiers
from ipvi.site_key import SiteKey, legacy_hash
from ipvi.tables.ingest import purge_tombstones, purged_records
from ipvi.tables.linkage import crosswalk

# An identifier: what ipvi's ids are made of (record ids, person ids, hashes).
TOKEN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]*[A-Za-z0-9]")
TEXT_SUFFIXES = frozenset({".csv", ".html", ".json", ".jsonl", ".md", ".txt", ".yaml", ".tsv"})
# Tables that hold keyed pseudonyms by design: the purge's own record, and the audit trail.
KEPT_PSEUDONYMS = frozenset({"purge_tombstones", "purged_records", "audit_log"})
_CHUNK = 5000


@dataclass
class Finding:
    """Where the identifier (or something derived from it) still appears."""

    store: str
    what: str
    count: int = 0


@dataclass
class Search:
    """What to look for, and what was found.

    Parameters
    ----------
    key : SiteKey
        To hash tokens for the purged record ids' pseudonyms.
    clear : set of str
        Identifiers in clear.
    record_pseudonyms : set of str
        The keyed pseudonyms of record ids known only by them (a tombstone's).
    """

    key: SiteKey
    clear: set[str]
    record_pseudonyms: set[str] = field(default_factory=set)
    findings: dict[tuple[str, str], Finding] = field(default_factory=dict)
    kept: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._clear = whole_identifiers(self.clear)
        self._raw = whole_identifiers(self.clear, raw=True)
        self._unkeyed = {legacy_hash(value) for value in self.clear}
        self._hashed: dict[str, bool] = {}
        self._pseudonym = self.key.pseudonym(next(iter(self.clear))) if self.clear else None

    def _note(self, store: str, what: str, count: int = 1) -> None:
        found = self.findings.setdefault((store, what), Finding(store, what))
        found.count += count

    def text(self, store: str, value: str) -> None:
        """Look through one text value of ``store``."""
        if self._clear is not None and self._clear.search(value):
            self._note(store, "the identifier in clear")
        if self._unkeyed and any(h in value for h in self._unkeyed):
            self._note(store, "an unkeyed SHA-256 of it (reversible by counting)")
        if self.record_pseudonyms and any(self._purged_token(t) for t in TOKEN.findall(value)):
            self._note(store, "a purged record id in clear")

    def binary(self, store: str, data: bytes) -> None:
        """Look through the raw bytes of ``store`` (identifiers in clear only)."""
        if self._raw is not None and self._raw.search(data):
            self._note(store, "the identifier in clear (raw bytes)")

    def pseudonym_kept(self, store: str, value: str) -> None:
        if self._pseudonym and self._pseudonym in value:
            self.kept[store] = self.kept.get(store, 0) + 1

    def _purged_token(self, token: str) -> bool:
        if token not in self._hashed:
            self._hashed[token] = self.key.pseudonym(token) in self.record_pseudonyms
        return self._hashed[token]


def search_for(engine: Engine, key: SiteKey, identifier: str) -> Search:
    """The search for ``identifier``: itself, its record ids while it is a linked person, and
    the pseudonyms of the records its tombstone (as a person or as a record) lists."""
    clear = {identifier}
    with engine.connect() as connection:
        if inspect(connection).has_table("crosswalk"):
            clear.update(
                connection.execute(
                    select(crosswalk.c.record_id).where(crosswalk.c.person_id == identifier)
                ).scalars()
            )
        targets = (PurgeTarget(person_id=identifier), PurgeTarget(record_ids=(identifier,)))
        tombstones = list(
            connection.execute(
                select(purge_tombstones.c.tombstone_id).where(
                    purge_tombstones.c.target_hash.in_([tombstone_hash(key, t) for t in targets])
                )
            ).scalars()
        )
        pseudonyms = set(
            connection.execute(
                select(purged_records.c.record_hash).where(
                    purged_records.c.tombstone_id.in_(tombstones)
                )
            ).scalars()
        )
    return Search(key=key, clear=clear, record_pseudonyms=pseudonyms)


def search_tables(engine: Engine, search: Search) -> None:
    """Every text and JSON value of every table of the registry."""
    metadata = MetaData()
    for name in inspect(engine).get_table_names():
        table = Table(name, metadata, autoload_with=engine)
        columns = [c for c in table.columns if isinstance(c.type, String | Text | JSON)]
        if not columns:
            continue
        store = f"table {name}"
        with engine.connect() as connection:
            rows = connection.execute(select(*columns).execution_options(yield_per=_CHUNK))
            for row in rows:
                for value in row:
                    if value is None:
                        continue
                    text = value if isinstance(value, str) else json.dumps(value)
                    search.text(store, text)
                    if name in KEPT_PSEUDONYMS:
                        search.pseudonym_kept(store, text)


def _files(folders: Iterable[Path]) -> Iterator[Path]:
    seen: set[Path] = set()
    for folder in folders:
        if not folder.exists():
            continue
        paths = [folder] if folder.is_file() else sorted(folder.rglob("*"))
        for path in paths:
            resolved = path.resolve()
            if path.is_file() and resolved not in seen:
                seen.add(resolved)
                yield path


def search_files(folders: Iterable[Path], search: Search) -> None:
    """Every file under ``folders``: text files as text, the rest as raw bytes."""
    for path in _files(folders):
        store = f"file {path}"
        try:
            data = path.read_bytes()
        except OSError:
            continue
        if path.suffix in TEXT_SUFFIXES:
            search.text(store, data.decode("utf-8", errors="replace"))
        else:
            search.binary(store, data)


def redact_files(folders: Iterable[Path], identifiers: Iterable[str]) -> list[Path]:
    """Replace ``identifiers`` (as whole identifiers) by ``[purged]`` in every text file under
    ``folders``; returns the files changed. For reports no stage rebuilds: the rest of the
    report stays as it was."""
    pattern = whole_identifiers(identifiers)
    if pattern is None:
        return []
    changed = []
    for path in _files(folders):
        if path.suffix not in TEXT_SUFFIXES:
            continue
        text = path.read_text(encoding="utf-8", errors="surrogateescape")
        redacted, count = pattern.subn("[purged]", text)
        if count:
            temporary = path.with_name(f".{path.name}.redacting")
            temporary.write_text(redacted, encoding="utf-8", errors="surrogateescape")
            os.replace(temporary, path)
            changed.append(path)
    return changed
