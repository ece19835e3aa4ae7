"""Who is using the review pages: sessions opened with an API key, and CSRF tokens.

A reviewer types their key into the login form once; the service checks it like any key
(:class:`serving.auth.KeyCache`), opens a session and sets its id as an HTTP-only,
``SameSite=Strict`` cookie scoped to ``/review``. The registry stores only the SHA-256 of that
id (``review_sessions``), with the key's name, the expiry and the session's CSRF token: every
form of the pages carries the token, and a post without it (or with another) is refused. A
revoked key ends its sessions at the next key refresh, since each request checks that the
key is still active. Scripts send ``Authorization: Bearer KEY`` instead and need no cookie and
no CSRF token (a browser never adds that header to a cross-site request).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session

from ipvi.tables.serving import review_sessions

SESSION_COOKIE = "ipvi_review"
LOGIN_COOKIE = "ipvi_review_login"  # the login form's own CSRF token (double submit)
CSRF_FIELD = "csrf_token"


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def new_token() -> str:
    """A random token (session id, CSRF token): 256 bits, URL-safe."""
    return secrets.token_urlsafe(32)


def open_session(session: Session, *, key_name: str, hours: float) -> tuple[str, str]:
    """Open a review session for ``key_name``; returns (cookie value, CSRF token)."""
    cookie, csrf = new_token(), new_token()
    now = _now()
    session.execute(delete(review_sessions).where(review_sessions.c.expires_at <= now))
    session.execute(
        insert(review_sessions).values(
            session_hash=_digest(cookie),
            key_name=key_name,
            csrf_token=csrf,
            created_at=now,
            expires_at=now + timedelta(hours=hours),
        )
    )
    return cookie, csrf


def session_of(session: Session, cookie: str) -> dict | None:
    """The live session a cookie names (``key_name``, ``csrf_token``), or None."""
    row = (
        session.execute(
            select(review_sessions.c.key_name, review_sessions.c.csrf_token).where(
                review_sessions.c.session_hash == _digest(cookie),
                review_sessions.c.expires_at > _now(),
            )
        )
        .mappings()
        .first()
    )
    return dict(row) if row else None


def close_session(session: Session, cookie: str) -> None:
    """End the session a cookie names (log out)."""
    session.execute(
        delete(review_sessions).where(review_sessions.c.session_hash == _digest(cookie))
    )


def same_token(expected: str | None, given: str | None) -> bool:
    """Constant-time comparison of two tokens; a missing one never matches."""
    return bool(expected) and bool(given) and hmac.compare_digest(expected, given)
