"""/readyz with the state of what the service depends on: the model, the site key, the API keys,
a writable registry database, the link index, and the audit log's last check.

Ready means every request could be answered now (:meth:`serving.runtime.Runtime.readiness`).
``serving.readyz_requires_database: false`` keeps the service ready while the database cannot
be written, for deployments that would rather keep inline scoring routed to it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from serving.http import json_response


class ReadinessMiddleware:
    """ASGI middleware answering GET /readyz with a JSON report.

    Parameters
    ----------
    app : ASGI app
        The application behind it.
    report : callable
        Returns an awaitable of ``(ready, report_dict)``.
    """

    def __init__(self, app, *, report: Callable[[], Awaitable[tuple[bool, dict]]]) -> None:
        self.app = app
        self.report = report

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope.get("path") != "/readyz":
            await self.app(scope, receive, send)
            return
        ready, report = await self.report()
        await json_response(send, 200 if ready else 503, report)
