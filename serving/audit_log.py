"""The append-only audit log, chained with a key held outside the database, through a spool.

Every request to the service leaves one row: time, key name, route, keyed pseudonyms of the
person ids it concerned (:meth:`ipvi.site_key.SiteKey.pseudonym`, never the ids), model version
and outcome. Rows are chained: each row's hash is an HMAC-SHA-256, keyed by the site secret
(:mod:`ipvi.site_key`), over its content and the previous row's hash. Editing, deleting or
re-hashing a row therefore needs the secret, which the database does not hold; cutting rows
off the end is caught against a *checkpoint*, a signed copy of the chain head kept elsewhere
(:func:`write_checkpoint`). :func:`verify_chain` checks both (``ipvi audit-log verify``).

A request never waits for the database: :class:`AuditSpool` (a :class:`serving.spool.Spool`)
appends the row to a local file, one per worker process, and a background thread moves spooled
rows into the database every ``serving.audit_flush_seconds``; while the database is unreachable
the spool simply grows. Each row carries an ``entry_id`` so flushing a file twice is a no-op.

The log is exempt from purge (its rows name no one): :func:`purge_step` appends a chained
tombstone instead.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine, func, insert, select, update
from sqlalchemy.orm import Session

from ipvi.site_key import SiteKey
from ipvi.tables.serving import audit_chain_head, audit_checks, audit_log
from serving.http import ResponseStatus
from serving.metrics import UNMATCHED, unknown_path
from serving.spool import Spool

logger = logging.getLogger(__name__)

GENESIS_HASH = "0" * 64
SPOOL_SUFFIX = ".jsonl"
PENDING_SUFFIX = ".pending"
CHAIN_PURPOSE = "audit-chain"
CHECKPOINT_PURPOSE = "audit-checkpoint"


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


@dataclass
class AuditEntry:
    """One audit row before it is chained: what happened, never who the person is."""

    endpoint: str
    outcome: str
    key_name: str | None = None
    person_ids: list[str] = field(default_factory=list)
    model_version: str | None = None
    status_code: int | None = None
    kind: str = "request"
    event_time: str = field(default_factory=lambda: _now().isoformat(timespec="microseconds"))
    entry_id: str = field(default_factory=lambda: str(uuid.uuid4()))


_HASHED_FIELDS = (
    "entry_id",
    "kind",
    "event_time",
    "key_name",
    "endpoint",
    "person_ids",
    "model_version",
    "status_code",
    "outcome",
)


def _payload(prev_hash: str, seq: int, entry: dict) -> bytes:
    content = {name: entry[name] for name in _HASHED_FIELDS}
    return json.dumps([prev_hash, seq, content], sort_keys=True, separators=(",", ":")).encode()


def chain_hash(key: bytes, prev_hash: str, seq: int, entry: dict) -> str:
    """HMAC-SHA-256, under the chain's derived ``key``, of the previous hash, the sequence
    number and the row's content."""
    return hmac.digest(key, _payload(prev_hash, seq, entry), "sha256").hex()


def unkeyed_chain_hash(prev_hash: str, seq: int, entry: dict) -> str:
    """The SHA-256 chain of rows written before the log was keyed (verified, never written)."""
    return hashlib.sha256(_payload(prev_hash, seq, entry)).hexdigest()


def _head(session: Session):
    return session.execute(
        select(audit_chain_head.c.seq, audit_chain_head.c.row_hash).where(
            audit_chain_head.c.id == 1
        )
    ).one()


def append_entries(session: Session, entries: Iterable[AuditEntry | dict], key: SiteKey) -> int:
    """Chain ``entries`` onto the log in order, keyed by ``key``; entries already there are
    skipped.

    The head row is updated first, which locks it: concurrent appenders from several worker
    processes wait for each other on SQLite and PostgreSQL alike.

    Returns
    -------
    int
        The number of rows added.
    """
    rows = [asdict(entry) if isinstance(entry, AuditEntry) else dict(entry) for entry in entries]
    if not rows:
        return 0
    session.execute(
        update(audit_chain_head)
        .where(audit_chain_head.c.id == 1)
        .values(seq=audit_chain_head.c.seq)
    )
    head = _head(session)
    ids = [row["entry_id"] for row in rows]
    present: set[str] = set()
    for start in range(0, len(ids), 500):
        present.update(
            session.scalars(
                select(audit_log.c.entry_id).where(
                    audit_log.c.entry_id.in_(ids[start : start + 500])
                )
            )
        )
    chain_key, key_id = key.derive(CHAIN_PURPOSE), key.key_id
    seq, prev_hash = head.seq, head.row_hash
    values = []
    for row in rows:
        if row["entry_id"] in present:
            continue
        present.add(row["entry_id"])
        seq += 1
        row_hash = chain_hash(chain_key, prev_hash, seq, row)
        values.append(
            {
                **{name: row[name] for name in _HASHED_FIELDS},
                "event_time": datetime.fromisoformat(row["event_time"]),
                "seq": seq,
                "prev_hash": prev_hash,
                "row_hash": row_hash,
                "key_id": key_id,
            }
        )
        prev_hash = row_hash
    if values:
        session.execute(insert(audit_log), values)
        session.execute(
            update(audit_chain_head)
            .where(audit_chain_head.c.id == 1)
            .values(seq=seq, row_hash=prev_hash)
        )
    return len(values)


# --------------------------------------------------------------------------- checkpoints


@dataclass(frozen=True)
class Checkpoint:
    """A signed chain head: row ``seq`` had hash ``row_hash`` at ``created_at``."""

    seq: int
    row_hash: str
    key_id: str
    created_at: str
    signature: str = ""

    def _signed(self, key: SiteKey) -> str:
        content = json.dumps(
            [self.seq, self.row_hash, self.key_id, self.created_at], separators=(",", ":")
        )
        return hmac.digest(key.derive(CHECKPOINT_PURPOSE), content.encode(), "sha256").hex()

    def signed(self, key: SiteKey) -> Checkpoint:
        return Checkpoint(**{**asdict(self), "signature": self._signed(key)})

    def is_authentic(self, key: SiteKey) -> bool:
        return hmac.compare_digest(self.signature, self._signed(key))


def write_checkpoint(session: Session, key: SiteKey, path: str | Path) -> Checkpoint:
    """Append the signed chain head to the file at ``path`` (one JSON line per checkpoint)
    and note it in ``audit_checks`` (for /readyz).

    Keep the file where whoever can write the database cannot (another host, write-once
    storage): rows cut off the end of the log, or the log re-hashed with the secret, no longer
    match it.
    """
    head = _head(session)
    checkpoint = Checkpoint(
        seq=head.seq,
        row_hash=head.row_hash,
        key_id=key.key_id,
        created_at=_now().isoformat(timespec="seconds"),
    ).signed(key)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(asdict(checkpoint), separators=(",", ":")) + "\n"
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.write(descriptor, line.encode())
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
    _record_check(session, "checkpoint", last_seq=head.seq, ok=True, detail=str(path)[:200])
    return checkpoint


def read_checkpoints(path: str | Path) -> list[Checkpoint]:
    """The checkpoints in the file at ``path`` (none when it does not exist), oldest first."""
    path = Path(path)
    if not path.exists():
        return []
    found = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        try:
            found.append(Checkpoint(**json.loads(line)))
        except (ValueError, TypeError):
            found.append(Checkpoint(seq=-number, row_hash="", key_id="", created_at=""))
    return found


# --------------------------------------------------------------------------- verification


@dataclass(frozen=True)
class ChainReport:
    """The result of :func:`verify_chain`: whether the log holds, how many rows were checked
    (and how many were written before it was keyed), and the first bad row with the reason."""

    ok: bool
    rows: int
    first_bad_seq: int | None = None
    reason: str | None = None
    unkeyed_rows: int = 0
    checkpoints: int = 0

    def message(self) -> str:
        if self.ok:
            unkeyed = f", {self.unkeyed_rows} of them unkeyed (older)" if self.unkeyed_rows else ""
            return (
                f"audit log verified: {self.rows} row(s){unkeyed}, "
                f"{self.checkpoints} checkpoint(s) matched"
            )
        return f"audit log broken at row {self.first_bad_seq}: {self.reason}"


def _rows(session: Session, since: int) -> Iterator:
    query = (
        select(audit_log)
        .where(audit_log.c.seq >= since)
        .order_by(audit_log.c.seq)
        .execution_options(yield_per=5000)
    )
    return session.execute(query).mappings()


def verify_chain(
    session: Session,
    key: SiteKey,
    *,
    since: int = 1,
    checkpoints: Iterable[Checkpoint] = (),
) -> ChainReport:
    """Recompute every hash from row ``since`` on and compare the head and the checkpoints.

    A row is bad when its sequence number skips (a row was deleted), its link to the previous
    row is wrong, or its HMAC does not match its content (it was edited, or re-hashed without
    the secret). Rows written before the log was keyed (no ``key_id``) are checked with the
    unkeyed hash, and only before the first keyed row. A checkpoint whose row is gone or has
    another hash shows that rows were cut off the end, or the log re-hashed with the secret.
    From ``since`` > 1 the hash of row ``since - 1`` is taken as stored.
    """
    chain_key, key_id = key.derive(CHAIN_PURPOSE), key.key_id
    checkpoints = [c for c in checkpoints if c.seq >= since or c.seq < 0]
    for checkpoint in checkpoints:
        if checkpoint.seq < 0 or not checkpoint.is_authentic(key):
            return ChainReport(
                ok=False,
                rows=0,
                first_bad_seq=max(checkpoint.seq, 0),
                reason=f"a checkpoint of {checkpoint.created_at or 'unknown date'} is not "
                "signed with this site key (forged, damaged, or another key)",
            )
    expected = {c.seq: c for c in checkpoints}
    count = unkeyed = 0
    keyed_seen = False
    prev_hash, expected_seq = GENESIS_HASH, since
    if since > 1:
        before = session.scalar(select(audit_log.c.row_hash).where(audit_log.c.seq == since - 1))
        if before is None:
            return ChainReport(
                ok=False, rows=0, first_bad_seq=since - 1, reason="missing (the row before --since)"
            )
        prev_hash = before

    def bad(seq: int, reason: str) -> ChainReport:
        return ChainReport(
            ok=False, rows=count, first_bad_seq=seq, reason=reason, unkeyed_rows=unkeyed
        )

    for row in _rows(session, since):
        count += 1
        if row["seq"] != expected_seq:
            return bad(expected_seq, f"missing (row {row['seq']} follows row {expected_seq - 1})")
        if row["prev_hash"] != prev_hash:
            return bad(row["seq"], "its link to the previous row is wrong")
        entry = dict(row)
        entry["event_time"] = row["event_time"].isoformat(timespec="microseconds")
        if row["key_id"] is None:
            if keyed_seen:
                return bad(row["seq"], "unkeyed after keyed rows (re-hashed without the key)")
            unkeyed += 1
            computed = unkeyed_chain_hash(prev_hash, row["seq"], entry)
        else:
            keyed_seen = True
            if row["key_id"] != key_id:
                return bad(
                    row["seq"],
                    f"chained with key {row['key_id']}, not this site's key {key_id} "
                    "(wrong IPVI_AUDIT_KEY or key file?)",
                )
            computed = chain_hash(chain_key, prev_hash, row["seq"], entry)
        if not hmac.compare_digest(computed, row["row_hash"]):
            return bad(row["seq"], "its content does not match its hash (edited or re-hashed)")
        checkpoint = expected.pop(row["seq"], None)
        if checkpoint is not None and checkpoint.row_hash != row["row_hash"]:
            return bad(
                row["seq"],
                f"differs from the checkpoint of {checkpoint.created_at}: rows up to it were "
                "changed and re-hashed since",
            )
        prev_hash = row["row_hash"]
        expected_seq += 1
    last = expected_seq - 1
    head = _head(session)
    if (head.seq, head.row_hash) != (last, prev_hash):
        return bad(last + 1, f"missing (the chain head says the log ends at row {head.seq})")
    for seq, checkpoint in sorted(expected.items()):
        return bad(
            seq,
            f"missing: the checkpoint of {checkpoint.created_at} records it (the log was "
            "cut short)",
        )
    return ChainReport(ok=True, rows=count, unkeyed_rows=unkeyed, checkpoints=len(checkpoints))


def record_verification(session: Session, report: ChainReport, *, since: int) -> None:
    """Note a verification's outcome in ``audit_checks`` (for /readyz)."""
    _record_check(
        session,
        "verify",
        first_seq=since,
        last_seq=since + report.rows - 1,
        ok=report.ok,
        first_bad_seq=report.first_bad_seq,
        detail=(report.reason or "")[:200],
    )


def _record_check(session: Session, kind: str, **values) -> None:
    session.execute(insert(audit_checks).values(kind=kind, checked_at=_now(), **values))


def last_checks(session: Session) -> dict[str, dict | None]:
    """The latest verification and checkpoint (``verify``, ``checkpoint``), or None."""
    latest = {}
    for kind in ("verify", "checkpoint"):
        newest = select(func.max(audit_checks.c.check_id)).where(audit_checks.c.kind == kind)
        row = (
            session.execute(
                select(audit_checks).where(audit_checks.c.check_id == newest.scalar_subquery())
            )
            .mappings()
            .first()
        )
        latest[kind] = dict(row) if row else None
    return latest


def purge_step(session: Session, target, key: SiteKey) -> dict[str, int]:
    """Purge step of the serving stage's audit log (:mod:`workflows.purge`): nothing is removed.

    Audit rows hold keyed pseudonyms only and stay as the record of what was done; a chained
    tombstone records that a purge ran, with the pseudonyms of the target (never its ids), so
    the chain still verifies.

    Parameters
    ----------
    target : ipvi.purge.PurgeTarget
        ``person_id`` and/or ``record_ids``.
    """
    hashed = [target.pseudonyms[target.person_id]] if target.person_id else []
    hashed += [target.pseudonyms[record_id] for record_id in target.record_ids]
    append_entries(
        session,
        [
            AuditEntry(
                kind="purge_tombstone",
                endpoint="ipvi purge",
                outcome=f"purge of {len(target.record_ids)} record(s); audit rows kept",
                person_ids=hashed,
            )
        ],
        key,
    )
    return {"audit_log": 0}


class AuditSpool(Spool):
    """A worker's spool of audit rows (:class:`serving.spool.Spool`), chained into the log
    with the site secret as they are flushed.

    Parameters
    ----------
    directory, engine_getter, flush_seconds
        As for :class:`serving.spool.Spool`.
    key : SiteKey
        The site secret the rows are chained with.
    """

    def __init__(
        self,
        directory: str | Path,
        engine_getter: Callable[[], Engine],
        key: SiteKey,
        flush_seconds: float,
    ) -> None:
        super().__init__(directory, engine_getter, flush_seconds)
        self.key = key

    def record(self, entry: AuditEntry) -> None:
        """Append one row to this worker's spool file with a single write."""
        self.append([asdict(entry)])

    def store(self, session: Session, entries: list[dict]) -> int:
        return append_entries(session, entries, self.key)


class AuditMiddleware:
    """ASGI middleware writing one audit row per request, except to paths that carry no one's
    data (health probes, metrics, the OpenAPI document) and to paths no route serves (or that a
    mounted application answers 404) when the request has no valid key: those are only counted
    (:mod:`serving.metrics`), so that no one can grow the log without a key.

    The endpoint adds what only it knows to the request state (``audit_person_ids``,
    ``audit_model_version``, ``audit_outcome``); the key name comes from the auth middleware,
    the route template from the metrics middleware, the status code from the response itself,
    so refused requests (401, 403, 413, 429) are logged too. Person ids are written as keyed
    pseudonyms.

    Parameters
    ----------
    app : ASGI app
        The application behind it.
    spool : callable
        Returns the process's :class:`AuditSpool`.
    unaudited : callable
        ``unaudited(path)``: whether requests to ``path`` leave no row.
    """

    def __init__(self, app, *, spool: Callable[[], AuditSpool], unaudited) -> None:
        self.app = app
        self.spool = spool
        self.unaudited = unaudited

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or self.unaudited(scope["path"]):
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        status = ResponseStatus(send)
        try:
            await self.app(scope, receive, status.send)
        finally:
            route = state.get("route_template", UNMATCHED)
            if state.get("api_key_name") is not None or not unknown_path(route, status.code):
                self._record(scope, state, route, status.code)

    def _record(self, scope, state: dict, route: str, code: int | None) -> None:
        spool = self.spool()
        pseudonym = spool.key.pseudonym
        spool.record(
            AuditEntry(
                endpoint=f"{scope.get('method', '')} {route}"[:200],
                key_name=state.get("api_key_name"),
                person_ids=[pseudonym(p) for p in state.get("audit_person_ids", ())],
                model_version=state.get("audit_model_version"),
                status_code=code,
                outcome=state.get("audit_outcome") or _outcome(code),
            )
        )


def _outcome(code: int | None) -> str:
    if code is None:
        return "no response (client went away or server error)"
    if code < 400:
        return "ok"
    return "refused" if code < 500 else "failed"
