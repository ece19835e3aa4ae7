"""/readyz with the state of what the service depends on: the model and the registry database.

The service stays ready while the database is down, because requests with inline histories
still answer (those needing the database get 503); ``serving.readyz_requires_database: true``
makes /readyz answer 503 instead, for deployments that would rather route elsewhere.
"""

from __future__ import annotations

from collections.abc import Callable

from serving.http import json_response


class ReadinessMiddleware:
    """ASGI middleware answering GET /readyz with a JSON report.

    Parameters
    ----------
    app : ASGI app
        The application behind it.
    report : callable
        Returns ``(ready, report_dict)``.
    """

    def __init__(self, app, *, report: Callable[[], tuple[bool, dict]]) -> None:
        self.app = app
        self.report = report

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope.get("path") != "/readyz":
            await self.app(scope, receive, send)
            return
        ready, report = self.report()
        await json_response(send, 200 if ready else 503, report)
