"""The review pages, mounted under ``/review`` in the service: HTTP wiring and templates only.

The queues, leases, what a pair shows and how a decision is recorded live in
:mod:`linkage.review_queue`; what a decision would do to tiers in
:mod:`training.review_impact`; sessions and CSRF tokens in :mod:`serving.review_auth`.
Pages are server-rendered (Jinja, autoescaped), with one small inline script for the keyboard
shortcuts (``m`` match, ``n`` non-match, ``u`` unsure, ``s`` skip) and the charts as inline
SVG: nothing is fetched from elsewhere, and the Content-Security-Policy allows nothing else.

Keys with a role listed for ``/review`` in ``serving.roles`` (``reviewer`` by default) may use
the pages, through the login form's session cookie or an ``Authorization: Bearer`` header; a
script asking for ``application/json`` gets the same data as JSON. Every request leaves an
audit row with the key's name and the pair's person ids
(:class:`serving.audit_log.AuditMiddleware`).
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import jinja2
from markupsafe import Markup
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from ipvi import charts
from ipvi.errors import IpviError
from linkage.review_queue import (
    ACTIONS,
    QUEUES,
    ReviewConflict,
    lease_of,
    next_pair,
    pair_view,
    progress,
)
from linkage.review_queue import decide as record_decision
from serving.http import ApiError
from serving.review_auth import (
    CSRF_FIELD,
    LOGIN_COOKIE,
    SESSION_COOKIE,
    close_session,
    new_token,
    open_session,
    same_token,
    session_of,
)
from training.review_impact import tier_impact

logger = logging.getLogger(__name__)

PREFIX = "/review"
TEMPLATES = Path(__file__).with_name("templates") / "review"
QUEUE_TITLES = {"priority": "priority queue", "sample": "sample for accuracy"}
BAD_CSRF = "this form is missing its CSRF token or carries a stale one: reload the page"


@dataclass(frozen=True)
class Reviewer:
    """The key behind a request, how it was presented, and its session's CSRF token."""

    name: str
    role: str
    csrf: str | None  # None for a Bearer key: no cookie, nothing to forge


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )


class ReviewPages:
    """The Starlette application of the review pages.

    Parameters
    ----------
    runtime : callable
        Returns this worker's :class:`serving.runtime.Runtime` (keys, database guard, scorer).
    """

    def __init__(self, runtime) -> None:
        self.runtime = runtime
        self.templates = _environment()
        self.app = Starlette(
            routes=[
                Route("/", self.index, methods=["GET"]),
                Route("/login", self.login_form, methods=["GET"]),
                Route("/login", self.login, methods=["POST"]),
                Route("/logout", self.logout, methods=["POST"]),
                Route("/queue/{queue}", self.queue, methods=["GET"]),
                Route("/pair/{pair_id}", self.pair, methods=["GET"]),
                Route("/pair/{pair_id}", self.decision, methods=["POST"]),
            ],
            exception_handlers={ApiError: self._refused, ReviewConflict: self._conflict},
        )

    async def __call__(self, scope, receive, send) -> None:
        await self.app(scope, receive, send)

    # ------------------------------------------------------------------ responses

    def _page(self, request: Request, template: str, status: int = 200, **context) -> Response:
        nonce = secrets.token_urlsafe(16)
        body = self.templates.get_template(template).render(
            prefix=PREFIX, nonce=nonce, queue_titles=QUEUE_TITLES, **context
        )
        return HTMLResponse(body, status_code=status, headers=_headers(nonce))

    def _message(self, request: Request, status: int, message: str, reviewer=None) -> Response:
        if _wants_json(request):
            return JSONResponse({"error": message}, status_code=status, headers=_headers())
        return self._page(
            request, "message.html.j2", status=status, message=message, reviewer=reviewer
        )

    async def _refused(self, request: Request, error: ApiError) -> Response:
        """An :class:`ApiError` (the registry unreachable: 503) as a page or JSON."""
        response = self._message(request, error.status, error.message)
        if error.retry_after:
            response.headers["Retry-After"] = str(error.retry_after)
        return response

    async def _conflict(self, request: Request, conflict: ReviewConflict) -> Response:
        """A pair that cannot be shown or decided as asked (409, the message says why)."""
        return self._message(request, 409, str(conflict))

    async def _db(self, func, *args, **kwargs):
        runtime = self.runtime()
        return await runtime.guard.run(runtime.in_session, func, *args, **kwargs)

    # ------------------------------------------------------------------ who is asking

    async def _reviewer(self, request: Request) -> Reviewer | Response:
        runtime = self.runtime()
        cache = runtime.keys
        if not cache.loaded:
            return self._message(request, 503, "API keys cannot be read yet; retry shortly")
        bearer = _bearer(request)
        csrf = None
        if bearer is not None:
            key = cache.identify(bearer)
            if key is None:
                return self._message(request, 401, "invalid or revoked API key")
        else:
            cookie = request.cookies.get(SESSION_COOKIE)
            found = await self._db(session_of, cookie) if cookie else None
            key = cache.named(found["key_name"]) if found else None
            if key is None:
                if _wants_json(request) or request.method != "GET":
                    return self._message(request, 401, "log in first: your session has ended")
                return RedirectResponse(f"{PREFIX}/login", status_code=303)
            csrf = found["csrf_token"]
        refusal = self._admit(request, key)
        return refusal or Reviewer(name=key.name, role=key.role, csrf=csrf)

    def _admit(self, request: Request, key) -> Response | None:
        """Note the key for the audit row; a 403 page when its role may not use the pages."""
        state = request.scope.setdefault("state", {})
        state["api_key_name"], state["api_key_role"] = key.name, key.role
        allowed = self.runtime().settings.roles.get(PREFIX, [])
        if key.role in allowed:
            return None
        return self._message(
            request,
            403,
            f"role '{key.role}' may not use the review pages: needs one of {', '.join(allowed)}",
        )

    # ------------------------------------------------------------------ login

    async def login_form(self, request: Request) -> Response:
        token = new_token()
        response = self._page(request, "login.html.j2", csrf=token, error=None)
        _set_cookie(response, request, LOGIN_COOKIE, token, max_age=1800)
        return response

    async def login(self, request: Request) -> Response:
        form = await request.form()
        if not same_token(request.cookies.get(LOGIN_COOKIE), form.get(CSRF_FIELD)):
            return self._message(request, 403, BAD_CSRF)
        runtime = self.runtime()
        key = runtime.keys.identify(str(form.get("key", "")).strip())
        if key is None:
            token = new_token()
            response = self._page(
                request,
                "login.html.j2",
                status=401,
                csrf=token,
                error="that key is not valid (or it was revoked)",
            )
            _set_cookie(response, request, LOGIN_COOKIE, token, max_age=1800)
            return response
        refusal = self._admit(request, key)
        if refusal is not None:
            return refusal
        cookie, _ = await self._db(
            open_session, key_name=key.name, hours=runtime.settings.review_session_hours
        )
        request.scope["state"]["audit_outcome"] = "review: logged in"
        response = RedirectResponse(f"{PREFIX}/", status_code=303)
        _set_cookie(
            response,
            request,
            SESSION_COOKIE,
            cookie,
            max_age=int(runtime.settings.review_session_hours * 3600),
        )
        response.delete_cookie(LOGIN_COOKIE, path=PREFIX)
        return response

    async def logout(self, request: Request) -> Response:
        reviewer = await self._reviewer(request)
        if isinstance(reviewer, Response):
            return reviewer
        form = await request.form()
        if reviewer.csrf is not None and not same_token(reviewer.csrf, form.get(CSRF_FIELD)):
            return self._message(request, 403, BAD_CSRF, reviewer)
        cookie = request.cookies.get(SESSION_COOKIE)
        if cookie:
            await self._db(close_session, cookie)
        response = RedirectResponse(f"{PREFIX}/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path=PREFIX)
        return response

    # ------------------------------------------------------------------ pages

    async def index(self, request: Request) -> Response:
        reviewer = await self._reviewer(request)
        if isinstance(reviewer, Response):
            return reviewer
        counts = await self._db(_progress_of_queues)
        if _wants_json(request):
            return JSONResponse({"queues": counts}, headers=_headers())
        return self._page(request, "index.html.j2", reviewer=reviewer, counts=counts)

    async def queue(self, request: Request) -> Response:
        return await self._show(request, pair_id=None)

    async def pair(self, request: Request) -> Response:
        return await self._show(request, pair_id=request.path_params["pair_id"])

    async def _show(self, request: Request, pair_id: str | None) -> Response:
        reviewer = await self._reviewer(request)
        if isinstance(reviewer, Response):
            return reviewer
        queue = request.path_params.get("queue") or request.query_params.get("queue", "priority")
        if queue not in QUEUES:
            return self._message(request, 404, f"no queue {queue!r}: {', '.join(QUEUES)}")
        runtime = self.runtime()
        lease = await self._db(
            _lease,
            holder=reviewer.name,
            queue=queue,
            pair_id=pair_id,
            lease_seconds=runtime.settings.review_lease_seconds,
        )
        data = await self._db(_pair_page, scorer=runtime.scorer, lease=lease, queue=queue)
        state = request.scope.setdefault("state", {})
        if data["view"] is None:
            state["audit_outcome"] = f"review: {queue} queue empty"
            if _wants_json(request):
                return JSONResponse({"pair": None, **data["progress"]}, headers=_headers())
            return self._page(
                request, "empty.html.j2", reviewer=reviewer, queue=queue, progress=data["progress"]
            )
        view = data["view"]
        state["audit_person_ids"] = [p["person_id"] for p in view["persons"]]
        state["audit_outcome"] = f"review: shown pair {view['pair']['pair_id']}"
        if _wants_json(request):
            return JSONResponse(
                {
                    **view,
                    "tiers": data["impact"],
                    "progress": data["progress"],
                    "lease_expires_at": data["lease_expires_at"],
                    "queue": queue,
                },
                headers=_headers(),
            )
        waterfall = view["waterfall"]
        chart = charts.waterfall(
            (
                "prior" if waterfall["prior"] is not None else "prior (unknown)",
                waterfall["prior"] or 0.0,
            ),
            waterfall["steps"],
            title="How each comparison moves the match weight",
        )
        return self._page(
            request,
            "pair.html.j2",
            reviewer=reviewer,
            queue=queue,
            view=view,
            impact=data["impact"],
            progress=data["progress"],
            lease_expires_at=data["lease_expires_at"],
            waterfall=Markup(chart),
            notice=request.query_params.get("notice"),
            actions=("match", "non-match", "unsure", "skip"),
        )

    async def decision(self, request: Request) -> Response:
        reviewer = await self._reviewer(request)
        if isinstance(reviewer, Response):
            return reviewer
        pair_id = request.path_params["pair_id"]
        form = await request.form()
        if reviewer.csrf is not None and not same_token(reviewer.csrf, form.get(CSRF_FIELD)):
            return self._message(request, 403, BAD_CSRF, reviewer)
        action = str(form.get("decision", "")).strip().lower()
        queue = str(form.get("queue", "priority"))
        if action not in ACTIONS:
            return self._message(
                request,
                422,
                f"field 'decision': {action!r} is not one of {', '.join(sorted(ACTIONS))}",
                reviewer,
            )
        if queue not in QUEUES:
            queue = "priority"
        runtime = self.runtime()
        state = request.scope.setdefault("state", {})
        try:
            result, persons = await self._db(
                _decide,
                pair_id=pair_id,
                holder=reviewer.name,
                action=action,
                note=str(form.get("note", "")) or None,
                lease_seconds=runtime.settings.review_lease_seconds,
            )
        except ReviewConflict as conflict:
            state["audit_outcome"] = f"review: refused {action} on {pair_id}"[:200]
            return self._message(request, 409, str(conflict), reviewer)
        state["audit_person_ids"] = persons
        state["audit_outcome"] = f"review: {action} on {pair_id}"
        if _wants_json(request):
            return JSONResponse(result, headers=_headers())
        target = f"{PREFIX}/queue/{queue}"
        if result["notice"]:
            target += "?notice=" + quote(result["notice"])
        return RedirectResponse(target, status_code=303)


# ---------------------------------------------------------------------- database work


def _progress_of_queues(session) -> dict:
    return {queue: progress(session, queue) for queue in QUEUES}


def _lease(session, *, holder, queue, pair_id, lease_seconds):
    """Lease the next pair of ``queue`` to ``holder``, or the pair ``pair_id`` (None when the
    queue has nothing for them); committed at once, so no write lock is held while the page
    is gathered."""
    if pair_id is None:
        return next_pair(session, holder=holder, queue=queue, lease_seconds=lease_seconds)
    return lease_of(session, pair_id, holder=holder, lease_seconds=lease_seconds)


def _pair_page(session, *, scorer, lease, queue) -> dict:
    """What the page of a leased pair shows (``lease`` None: the queue's progress only)."""
    counts = progress(session, queue)
    if lease is None:
        return {"view": None, "progress": counts}
    view = pair_view(session, lease.pair_id)
    try:
        impact = tier_impact(
            session.connection(),
            scorer,
            view["change"],
            view["pair"]["record_id_b"],
            as_of=datetime.now(UTC).replace(tzinfo=None),
        )
    except (IpviError, ValueError, KeyError) as error:
        logger.warning("tier impact not computed: %s", type(error).__name__)
        impact = None
    return {
        "view": view,
        "impact": impact,
        "progress": counts,
        "lease_expires_at": f"{lease.expires_at:%Y-%m-%d %H:%M:%S} UTC",
    }


def _decide(session, *, pair_id, holder, action, note, lease_seconds):
    """Record the decision; returns it and the persons of the pair (for the audit row)."""
    result = record_decision(
        session,
        pair_id=pair_id,
        holder=holder,
        action=action,
        note=note,
        lease_seconds=lease_seconds,
    )
    persons = [p["person_id"] for p in pair_view(session, pair_id)["persons"]]
    return result, persons


# ---------------------------------------------------------------------- HTTP details


def _bearer(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def _wants_json(request: Request) -> bool:
    return "application/json" in request.headers.get("accept", "")


def _headers(nonce: str | None = None) -> dict[str, str]:
    """No caching (pages hold names), no framing, and a policy allowing only this page's own
    inline script and styles."""
    script = f"'nonce-{nonce}'" if nonce else "'none'"
    return {
        "Cache-Control": "no-store",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "X-Frame-Options": "DENY",
        "Content-Security-Policy": (
            f"default-src 'none'; script-src {script}; style-src 'unsafe-inline'; "
            "img-src data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
        ),
    }


def _set_cookie(response: Response, request: Request, name: str, value: str, max_age: int):
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=PREFIX,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
