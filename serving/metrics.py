"""Prometheus metrics with a bounded number of series, in a directory of this server's own.

BentoML labels its request metrics with the raw request path, so every new path (even one
answered 401) adds series to every worker's memory and to ``/metrics``, without limit. The
service turns BentoML's metrics off and counts requests here, labelled by *route template*:
the path of the route that serves the request (``/v1/score``, the ``/static_content`` mount),
or :data:`UNMATCHED` for any path no route serves. The series are then a fixed set, however
many paths clients try.

Workers of one server share a Prometheus multiprocess directory; BentoML's is one per
``BENTOML_HOME`` and wiped by every server that starts, so a second server on the host would
wipe the first one's. :func:`server_directory` gives each server its own instead.

``/metrics`` needs a key whose role may call it (``serving.roles``) unless
``serving.public_metrics`` is true.
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterable

from starlette.routing import Match

from serving.http import ResponseStatus

DIRECTORY_ENV = "IPVI_METRICS_DIR"
METRICS_PATH = "/metrics"
UNMATCHED = "(unmatched)"
NAMESPACE = "ipvi"


def server_directory(*, worker: bool) -> str:
    """This server's Prometheus multiprocess directory, set as ``PROMETHEUS_MULTIPROC_DIR``.

    The server's supervisor (``worker`` false) makes a new directory, exports it in
    :data:`DIRECTORY_ENV` for the workers it spawns, and removes it when it exits; a worker
    uses the one it inherited (or makes its own when started alone).
    """
    inherited = os.environ.get(DIRECTORY_ENV)
    if worker and inherited and os.path.isdir(inherited):
        directory = inherited
    else:
        directory = tempfile.mkdtemp(prefix="ipvi-metrics-")
        os.environ[DIRECTORY_ENV] = directory
        atexit.register(shutil.rmtree, directory, True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
    return directory


def unknown_path(template: str, status: int | None) -> bool:
    """Whether a request went to a path nothing serves: no route matched, or the mounted
    application it reached answered 404. Without a key, such a request leaves no audit row."""
    return template == UNMATCHED or status == 404


def untraced_urls(traced_paths: Iterable[str]) -> str:
    """A regular expression of the URLs OpenTelemetry should not trace: all but
    ``traced_paths``. BentoML keeps each request's context, span included, until its
    ``serving.request_timeout_seconds`` timer expires, so a span per request to a path no
    route serves would hold memory in proportion to how fast anyone can send them."""
    paths = "|".join(re.escape(path) for path in traced_paths)
    return rf"^[a-z]+://[^/]*(?=/)(?!(?:{paths})(?:\?|$))"


def route_template(scope, answered_here: Iterable[str]) -> str:
    """The route template of a request: the path of the first route of the application that
    matches it, one of ``answered_here`` (paths middlewares answer themselves), or
    :data:`UNMATCHED`. A bounded set of values, whatever the path."""
    path = scope.get("path", "")
    if path in answered_here:
        return path
    app = scope.get("app")
    for route in getattr(app, "routes", ()):
        match, _ = route.matches(scope)
        if match is not Match.NONE:
            return route.path or "/"
    return UNMATCHED


class RequestMetrics:
    """The service's request counters and durations by route template and status.

    Built lazily in each worker (after :func:`server_directory` has set the directory), with
    every series a request to an unknown path can touch already there at zero: so that the
    first such request does not grow ``/metrics`` either, and ``rate()`` sees each series from
    the start.

    Parameters
    ----------
    templates : iterable of str
        Every route template (:data:`UNMATCHED` is added).

    Attributes
    ----------
    requests : Counter
        ``ipvi_request_total{endpoint, http_response_code}``.
    duration : Histogram
        ``ipvi_request_duration_seconds{endpoint}``.
    unaudited : Counter
        ``ipvi_unaudited_request_total``: requests without a valid key to paths no route
        serves (or answered 404 by a mounted application), which leave no audit row.
    """

    def __init__(self, templates: Iterable[str]) -> None:
        from prometheus_client import Counter, Histogram

        self.requests = Counter(
            "request_total",
            "HTTP requests by route template and status code",
            ["endpoint", "http_response_code"],
            namespace=NAMESPACE,
            registry=None,
        )
        self.duration = Histogram(
            "request_duration_seconds",
            "HTTP request duration by route template",
            ["endpoint"],
            namespace=NAMESPACE,
            registry=None,
        )
        self.unaudited = Counter(
            "unaudited_request_total",
            "Requests without a valid key to paths no route serves (no audit row is written)",
            namespace=NAMESPACE,
            registry=None,
        )
        for template in {*templates, UNMATCHED}:
            self.duration.labels(endpoint=template)
        for status in ("401", "404"):  # without a key / with one
            self.requests.labels(endpoint=UNMATCHED, http_response_code=status)

    def observe(self, endpoint: str, status: int | None, seconds: float) -> None:
        self.requests.labels(endpoint=endpoint, http_response_code=str(status or 0)).inc()
        self.duration.labels(endpoint=endpoint).observe(seconds)


def render() -> tuple[bytes, str]:
    """Every worker's metrics of this server, in the Prometheus text format."""
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry)
    return generate_latest(registry), CONTENT_TYPE_LATEST


class MetricsMiddleware:
    """ASGI middleware, outermost: labels each request with its route template (also put in
    the request state as ``route_template`` for the audit log) and counts it when answered.

    Parameters
    ----------
    app : ASGI app
        The application behind it.
    answered_here : iterable of str
        Paths that middlewares answer without a route (``/readyz``, ``/docs.json``...).
    """

    def __init__(self, app, *, answered_here: Iterable[str]) -> None:
        self.app = app
        self.answered_here = frozenset(answered_here)
        self._metrics: RequestMetrics | None = None

    def metrics(self, scope) -> RequestMetrics:
        if self._metrics is None:
            routes = getattr(scope.get("app"), "routes", ())
            templates = [*self.answered_here, *(route.path or "/" for route in routes)]
            self._metrics = RequestMetrics(templates)
        return self._metrics

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        template = route_template(scope, self.answered_here)
        state = scope.setdefault("state", {})
        state["route_template"] = template
        status = ResponseStatus(send)
        started = time.perf_counter()
        try:
            await self.app(scope, receive, status.send)
        finally:
            metrics = self.metrics(scope)
            metrics.observe(template, status.code, time.perf_counter() - started)
            if unknown_path(template, status.code) and state.get("api_key_name") is None:
                metrics.unaudited.inc()


class MetricsPageMiddleware:
    """ASGI middleware answering ``GET /metrics`` (placed after the key check)."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["path"] != METRICS_PATH:
            await self.app(scope, receive, send)
            return
        body, content_type = render()
        headers = [
            (b"content-type", content_type.encode()),
            (b"content-length", str(len(body)).encode()),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})
