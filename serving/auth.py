"""API keys: creation, revocation, a refreshing cache, and the ASGI middleware that checks them.

A key is 256 random bits shown once when created; the registry stores only its SHA-256, and a
presented key is compared against every stored hash in constant time. Each key has a name (what
the audit log records) and a role (``scoring``, ``advocate``, ``admin``, ``reviewer``, or
``monitoring`` for a metrics scraper) that decides which endpoints it may call (``reviewer``:
the review pages under ``/review``; ``monitoring``: ``/metrics``). Workers re-read the keys
every ``serving.key_cache_seconds``, so a revocation takes effect within that time without a
restart.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from ipvi.errors import IpviError
from ipvi.tables.serving import api_keys
from serving.http import json_response
from serving.metrics import METRICS_PATH
from serving.refresh import Refreshed

ROLES: tuple[str, ...] = ("scoring", "advocate", "admin", "reviewer", "monitoring")
KEY_BYTES = 32  # 256 bits
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")

# Paths anyone may call: health probes and the OpenAPI document with its viewer. /metrics too
# when serving.public_metrics is true; else it needs a key whose role serving.roles allows.
PUBLIC_PATHS: frozenset[str] = frozenset(
    {"/livez", "/healthz", "/readyz", "/docs", "/docs.json", "/"}
)
PUBLIC_PREFIXES: tuple[str, ...] = ("/static_content/", "/assets/")

MISSING_KEY = "missing API key: send 'Authorization: Bearer KEY'"
UNKNOWN_KEY = "invalid or revoked API key"
KEYS_UNAVAILABLE = "API keys cannot be read yet: the registry database is unreachable"


def generate_key() -> str:
    """A new random key: 256 bits, URL-safe text."""
    return secrets.token_urlsafe(KEY_BYTES)


def hash_key(key: str) -> str:
    """The SHA-256 hex digest stored in place of ``key``."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def add_key(session: Session, *, name: str, role: str) -> str:
    """Create a key called ``name`` with ``role`` and return it (it is never shown again)."""
    if not NAME_PATTERN.match(name):
        raise IpviError(f"key name {name!r} is invalid: use 1-100 letters, digits, '.', '_' or '-'")
    if role not in ROLES:
        raise IpviError(f"key role {role!r} is invalid: choose one of {', '.join(ROLES)}")
    if session.execute(select(api_keys.c.name).where(api_keys.c.name == name)).first():
        raise IpviError(f"a key named {name!r} already exists (revoked names are not reused)")
    key = generate_key()
    session.execute(
        insert(api_keys).values(name=name, role=role, key_hash=hash_key(key), created_at=_now())
    )
    return key


def list_keys(session: Session) -> list[dict[str, object]]:
    """Every key's name, role, creation and revocation time (never the hash)."""
    rows = session.execute(
        select(
            api_keys.c.name, api_keys.c.role, api_keys.c.created_at, api_keys.c.revoked_at
        ).order_by(api_keys.c.name)
    )
    return [dict(row._mapping) for row in rows]


def revoke_key(session: Session, *, name: str) -> None:
    """Revoke the key called ``name``; serving workers drop it within the cache time."""
    result = session.execute(
        update(api_keys)
        .where(api_keys.c.name == name, api_keys.c.revoked_at.is_(None))
        .values(revoked_at=_now())
    )
    if result.rowcount == 0:
        raise IpviError(f"no active key named {name!r}")


@dataclass(frozen=True)
class ApiKey:
    """An active key as the service knows it."""

    name: str
    role: str
    key_hash: str


def active_keys(session: Session) -> list[ApiKey]:
    """The keys that are not revoked."""
    rows = session.execute(
        select(api_keys.c.name, api_keys.c.role, api_keys.c.key_hash).where(
            api_keys.c.revoked_at.is_(None)
        )
    )
    return [ApiKey(name=row.name, role=row.role, key_hash=row.key_hash) for row in rows]


class KeyCache(Refreshed[list[ApiKey]]):
    """The active keys, re-read by a background thread every ``refresh_seconds``.

    Parameters
    ----------
    load : callable
        Returns the active keys; raising keeps the previous set (the database may be down).
    refresh_seconds : float
        How stale the set may get; a revoked key is refused at most this long after revocation.
    """

    def __init__(self, load: Callable[[], list[ApiKey]], refresh_seconds: float) -> None:
        super().__init__(load, refresh_seconds, name="key-cache")

    def named(self, name: str) -> ApiKey | None:
        """The active key called ``name`` (a review session's key, checked on each request)."""
        keys = self.value or []
        return next((candidate for candidate in keys if candidate.name == name), None)

    def identify(self, key: str) -> ApiKey | None:
        """The active key matching ``key``, comparing against every hash in constant time."""
        digest = hash_key(key)
        keys = self.value or []
        found = None
        for candidate in keys:  # no early exit: the time taken does not depend on the match
            if hmac.compare_digest(candidate.key_hash, digest):
                found = candidate
        return found


class TokenBucket:
    """Per-key rate limit: ``rate`` requests a second on average, bursts up to ``burst``.

    The state lives in SQLite: at ``path``, a file the workers of one server share, so the
    limit holds for the server as a whole and not per worker; in memory (one process) when
    ``path`` is None. Only key names are stored, never keys.
    """

    def __init__(self, rate: float, burst: int, path: str | Path | None = None) -> None:
        self.rate = rate
        self.burst = burst
        self._lock = threading.Lock()
        # Autocommit mode; each take is one IMMEDIATE transaction (a write lock across workers).
        self._db = sqlite3.connect(
            ":memory:" if path is None else str(path),
            timeout=5.0,
            isolation_level=None,
            check_same_thread=False,
        )
        # Losing a bucket's state in a crash only forgets recent requests: no fsync needed.
        self._db.execute("PRAGMA synchronous=OFF")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS buckets (name TEXT PRIMARY KEY, tokens REAL, updated REAL)"
        )

    def take(self, name: str) -> float:
        """0 when a request by ``name`` may go ahead, else the seconds until it may."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                now = time.time()  # wall clock: the workers share it, unlike monotonic time
                row = self._db.execute(
                    "SELECT tokens, updated FROM buckets WHERE name = ?", (name,)
                ).fetchone()
                tokens, last = row if row else (float(self.burst), now)
                tokens = min(float(self.burst), tokens + max(now - last, 0.0) * self.rate)
                wait = 0.0 if tokens >= 1.0 else (1.0 - tokens) / self.rate
                self._db.execute(
                    "INSERT OR REPLACE INTO buckets VALUES (?, ?, ?)",
                    (name, tokens - 1.0 if wait == 0.0 else tokens, now),
                )
            finally:
                self._db.execute("COMMIT")
            return wait


def is_public(path: str) -> bool:
    """Whether ``path`` is served without a key (probes, the OpenAPI document)."""
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)


def public_paths(public_metrics: bool) -> Callable[[str], bool]:
    """The test of paths served without a key: :func:`is_public`, and /metrics when
    ``serving.public_metrics`` is true."""
    if not public_metrics:
        return is_public
    return lambda path: path == METRICS_PATH or is_public(path)


def unaudited(path: str) -> bool:
    """Paths whose requests leave no audit row: they carry no one's data (probes, the OpenAPI
    document, metrics scrapes)."""
    return path == METRICS_PATH or is_public(path)


class AuthMiddleware:
    """ASGI middleware: ``Authorization: Bearer KEY`` on every non-public path.

    401 without a valid key, 403 when the key's role may not call the path, 429 when a key goes
    over its rate limit on a limited path. The key's name and role are put in the request state
    (``api_key_name``, ``api_key_role``) for the endpoints and the audit log.

    Parameters
    ----------
    app : ASGI app
        The application behind the check.
    keys : callable
        Returns the process's :class:`KeyCache` (built lazily, once per worker).
    roles : mapping
        Path -> roles allowed to call it; other paths accept any valid key (and usually 404).
    rate_limits : mapping
        Path -> :class:`TokenBucket` applied per key name.
    self_authenticating : tuple of str
        Path prefixes whose application checks keys itself (the review pages accept a session
        cookie as well as the header); it sets ``api_key_name`` and ``api_key_role`` too.
    public : callable
        ``public(path)``: whether ``path`` needs no key (:func:`public_paths`).
    """

    def __init__(
        self,
        app,
        *,
        keys: Callable[[], KeyCache],
        roles: Mapping[str, Sequence[str]],
        rate_limits: Callable[[], Mapping[str, TokenBucket]],
        self_authenticating: tuple[str, ...] = (),
        public: Callable[[str], bool] = is_public,
    ) -> None:
        self.app = app
        self.keys = keys
        self.roles = roles
        self.rate_limits = rate_limits
        self.self_authenticating = self_authenticating
        self.public = public

    async def __call__(self, scope, receive, send) -> None:
        path = scope.get("path", "")
        if (
            scope["type"] != "http"
            or self.public(path)
            or any(path == p or path.startswith(p + "/") for p in self.self_authenticating)
        ):
            await self.app(scope, receive, send)
            return
        cache = self.keys()
        presented = _bearer_token(scope)
        if presented is None:
            await _refuse(send, 401, MISSING_KEY)
            return
        if not cache.loaded:
            await json_response(send, 503, {"error": KEYS_UNAVAILABLE}, retry_after=2)
            return
        key = cache.identify(presented)
        if key is None:
            await _refuse(send, 401, UNKNOWN_KEY)
            return
        state = scope.setdefault("state", {})
        state["api_key_name"] = key.name
        state["api_key_role"] = key.role
        allowed = self.roles.get(path)
        if allowed is not None and key.role not in allowed:
            message = f"role '{key.role}' may not call {path}: needs one of {', '.join(allowed)}"
            await json_response(send, 403, {"error": message})
            return
        bucket = self.rate_limits().get(path)
        if bucket is not None and (wait := bucket.take(key.name)) > 0:
            message = f"rate limit of {path} exceeded for key '{key.name}'"
            await json_response(send, 429, {"error": message}, retry_after=max(1, round(wait)))
            return
        await self.app(scope, receive, send)


def _bearer_token(scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            token = token.strip()
            if scheme.lower() == "bearer" and token:
                return token
            return None
    return None


async def _refuse(send, status: int, message: str) -> None:
    await json_response(
        send, status, {"error": message}, extra_headers=[(b"www-authenticate", b"Bearer")]
    )
