"""The BentoML service: versioned endpoints wired to the serving and training libraries.

Start it with ``ipvi serve`` or, from the project root, ``bentoml serve`` (bentofile.yaml).
This file only wires: each endpoint parses its typed request, calls one library function and
returns its typed response (scores and tiers as the schema's fields, encoded directly); errors
are :class:`~serving.http.ApiError` answers. Metrics, keys, body size, the audit log, the form
of validation errors, /readyz, the OpenAPI document and keep-alive recycling are ASGI
middlewares. The review pages (:mod:`serving.review`) are an ASGI app mounted under
``/review``.
"""

from __future__ import annotations

import os

import bentoml

from ipvi.config import load_config
from ipvi.site_key import load_site_key
from serving import decisions, scoring
from serving.audit_log import AuditMiddleware
from serving.auth import AuthMiddleware, public_paths, unaudited
from serving.connections import ConnectionRecycleMiddleware
from serving.health import ReadinessMiddleware
from serving.http import (
    ValidationErrorMiddleware,
    answer,
    answers_errors,
    quiet_schema_refusals,
)
from serving.limits import BodyLimitMiddleware
from serving.metrics import (
    METRICS_PATH,
    MetricsMiddleware,
    MetricsPageMiddleware,
    server_directory,
    untraced_urls,
)
from serving.model import served_version
from serving.openapi import DocsMiddleware, Endpoint, complete_document
from serving.review import PREFIX as REVIEW_PREFIX
from serving.review import ReviewPages
from serving.runtime import MODEL_VERSION_ENV, get_runtime
from serving.schemas import (
    DECISION_EXAMPLE,
    LINK_EXAMPLE,
    SCORE_EXAMPLE,
    TIER_EXAMPLE,
    DecisionRequest,
    DecisionResponse,
    LinkRequest,
    LinkResponse,
    ScoreRequest,
    ScoreResponse,
    TierRequest,
    TierResponse,
)

API_PATHS = ("/v1/score", "/v1/tier", "/v1/link", "/v1/decision")
_config = load_config()
_settings = _config.serving
# `bentoml serve` refuses to start, with the reason, when there is no model to serve or no
# site key to chain the audit log with.
served_version(
    _config.tracking_uri,
    _config.mlflow.model_name,
    os.environ.get(MODEL_VERSION_ENV) or _settings.model_version or _settings.model_alias,
)
load_site_key(_config.paths.audit_key_file, create=True)
# This server's own metrics directory (the supervisor makes it, its workers inherit it), and
# one log line, not a traceback, per request the schema refuses.
server_directory(worker=bentoml.server_context.worker_index is not None)
quiet_schema_refusals()


# The clerks' review pages (HTML; they check keys and session cookies themselves).
review_pages = ReviewPages(runtime=get_runtime)


@bentoml.asgi_app(review_pages.app, path=REVIEW_PREFIX)
@bentoml.service(
    name="ipvi-risk-service",
    workers=_settings.workers,
    traffic={"timeout": _settings.request_timeout_seconds},
    # Labelled by raw path, BentoML's metrics grow with every path tried: serving.metrics
    # counts by route template instead.
    metrics={"enabled": False},
    tracing={"excluded_urls": [untraced_urls(API_PATHS)]},
)
class RiskService:
    """IPVI decision support: rule tiers with risk scores next to them, linkage for intake,
    and a record of what staff decided. Every answer names the model version."""

    def __init__(self) -> None:
        self.runtime = get_runtime()

    @bentoml.api(route="/v1/score")
    @answers_errors
    async def score(self, request: ScoreRequest, /, ctx: bentoml.Context) -> ScoreResponse:
        """Score 1 to N people (inline histories, or registry person ids as of a date): the
        calibrated probability and band next to the rule tier, reasons, lethality markers and
        every id the score rests on. Decision support, never a verdict."""
        ctx.request.state.audit_model_version = self.runtime.scorer.model_version
        results, not_scored, person_ids = await scoring.assess(
            self.runtime, request, with_model=True
        )
        ctx.request.state.audit_person_ids = person_ids
        return answer(
            results=results,
            not_scored=not_scored,
            model_name=self.runtime.scorer.model_name,
            model_version=self.runtime.scorer.model_version,
            warnings=self.runtime.score_warnings(),
        )

    @bentoml.api(route="/v1/tier")
    @answers_errors
    async def tier(self, request: TierRequest, /, ctx: bentoml.Context) -> TierResponse:
        """Rule tiers only (no model), with their reasons, source records and lethality
        markers, under the tier rules frozen in the served model version."""
        ctx.request.state.audit_model_version = self.runtime.scorer.model_version
        results, not_scored, person_ids = await scoring.assess(
            self.runtime, request, with_model=False
        )
        ctx.request.state.audit_person_ids = person_ids
        return answer(
            results=results,
            not_scored=not_scored,
            model_version=self.runtime.scorer.model_version,
        )

    @bentoml.api(route="/v1/link")
    @answers_errors
    async def link(self, request: LinkRequest, /, ctx: bentoml.Context) -> LinkResponse:
        """Candidate registry persons for the identifiers of a person in a new incident, with
        match probabilities and per-field agreement levels (never stored values). Persons known
        only as victims are returned to advocate keys only."""
        advocate = ctx.request.state.api_key_role == "advocate"
        ctx.request.state.audit_model_version = self.runtime.scorer.model_version
        result = await self.runtime.linker.link(
            request, advocate=advocate, guard=self.runtime.guard
        )
        ctx.request.state.audit_person_ids = [c.person_id for c in result["candidates"]]
        return LinkResponse(**result, model_version=self.runtime.scorer.model_version)

    @bentoml.api(route="/v1/decision")
    @answers_errors
    async def decision(self, request: DecisionRequest, /, ctx: bentoml.Context) -> DecisionResponse:
        """Record what staff decided for a person; a retry with the same decision_id is a no-op."""
        runtime = self.runtime
        ctx.request.state.audit_person_ids = [request.person_id]
        ctx.request.state.audit_model_version = runtime.scorer.model_version
        result = await runtime.guard.transaction(
            decisions.record_decision,
            request,
            key_name=ctx.request.state.api_key_name,
            actions=runtime.settings.decision_actions,
            clock_skew_seconds=runtime.settings.decision_clock_skew_seconds,
        )
        ctx.request.state.audit_outcome = "replayed" if result["replayed"] else "recorded"
        return DecisionResponse(**result, model_version=runtime.scorer.model_version)

    @bentoml.on_shutdown
    def flush_audit_log(self) -> None:
        """Flush the audit spool on a graceful shutdown."""
        self.runtime.close()


ENDPOINTS = dict(
    zip(
        API_PATHS,
        (
            Endpoint(ScoreRequest, ScoreResponse, SCORE_EXAMPLE),
            Endpoint(TierRequest, TierResponse, TIER_EXAMPLE),
            Endpoint(LinkRequest, LinkResponse, LINK_EXAMPLE),
            Endpoint(DecisionRequest, DecisionResponse, DECISION_EXAMPLE),
        ),
        strict=True,
    )
)

# Outermost first: every request is counted under its route template, connections are
# recycled whatever the answer, every request with a key or to a known route is audited,
# oversized bodies never reach parsing, only requests with a valid key for the path reach an
# endpoint, and schema refusals leave as 422 naming the field.
RiskService.add_asgi_middleware(
    MetricsMiddleware, answered_here=("/readyz", "/docs", "/docs.json", METRICS_PATH)
)
RiskService.add_asgi_middleware(
    ConnectionRecycleMiddleware, max_requests=_settings.max_requests_per_connection
)
RiskService.add_asgi_middleware(
    DocsMiddleware,
    document=lambda: complete_document(
        RiskService.openapi_spec.asdict(),
        ENDPOINTS,
        get_runtime().scorer.model_version,
        field_enums={"/v1/decision": {"action": sorted(_settings.decision_actions)}},
        keyed_paths=() if _settings.public_metrics else (METRICS_PATH,),
    ),
)
RiskService.add_asgi_middleware(ReadinessMiddleware, report=lambda: get_runtime().readiness())
RiskService.add_asgi_middleware(
    AuditMiddleware, spool=lambda: get_runtime().spool, unaudited=unaudited
)
RiskService.add_asgi_middleware(BodyLimitMiddleware, max_bytes=_settings.max_body_bytes)
RiskService.add_asgi_middleware(ValidationErrorMiddleware)
RiskService.add_asgi_middleware(
    AuthMiddleware,
    keys=lambda: get_runtime().keys,
    roles=_settings.roles,
    rate_limits=lambda: get_runtime().rate_limits,
    self_authenticating=(REVIEW_PREFIX,),
    public=public_paths(_settings.public_metrics),
)
RiskService.add_asgi_middleware(MetricsPageMiddleware)
