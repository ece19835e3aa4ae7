"""The OpenAPI document at /docs.json, completed with examples and the error answers.

BentoML generates the schemas from :mod:`serving.schemas`; this replaces them by the models'
own (named components, so client generators name their classes after them, with nullable
fields declared as nullable) and adds what BentoML cannot know: the fixed synthetic example
request of each endpoint (at ``requestBody.content["application/json"].example``), the error
answers every endpoint can give (400, 401, 403, 404, 409, 413, 415, 422, 429, 503), all in the
one :class:`~serving.schemas.ErrorResponse` shape, and which paths need a key. The document
validates as OpenAPI 3.1 (``openapi-spec-validator``).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from serving.http import json_response

# How a client goes from one answer to the next request (OpenAPI links, for stateful tests and
# readers): record a decision for a scored person; send the same decision again (a no-op).
LINKS = {
    "/v1/score": {
        "RecordDecision": (
            "/v1/decision",
            {
                "decision_id": "$response.body#/results/0/score_id",
                "person_id": "$response.body#/results/0/person_id",
                "action": "letter",
                "tier_decision": "followed",
                "tier": "$response.body#/results/0/tier",
                "advocate_contacted_before_notification": True,
            },
        )
    },
    "/v1/decision": {"RetryDecision": ("/v1/decision", "$request.body")},
}


@dataclass(frozen=True)
class Endpoint:
    """What the document says about one endpoint: its request and response models, an example."""

    request: type
    response: type
    example: dict


ERROR_SCHEMA = {
    "type": "object",
    "title": "ErrorResponse",
    "required": ["error"],
    "properties": {
        "error": {"type": "string", "title": "Message"},
        "field": {"type": "string", "title": "Field at fault"},
        "detail": {
            "type": "array",
            "title": "Every field at fault (422)",
            "items": {
                "type": "object",
                "title": "FieldProblem",
                "required": ["field", "reason"],
                "properties": {"field": {"type": "string"}, "reason": {"type": "string"}},
            },
        },
        "successor_ids": {
            "type": "array",
            "items": {"type": "string"},
            "title": "The new ids of a split person id (409)",
        },
    },
}
ERROR_ANSWERS = {
    "400": "Request body missing",
    "401": "Missing, invalid or revoked API key",
    "403": "The key's role may not call this endpoint",
    "404": "Unknown person id (never in the registry, or purged)",
    "409": "Conflict: a split person id (the new ids are listed) or a reused decision_id",
    "413": "Request body too large",
    "415": "Request body not JSON",
    "422": "Invalid request: the field at fault and the reason (every one in detail)",
    "429": "Rate limit exceeded; see Retry-After",
    "500": "Unexpected error (a bug: please report it)",
    "503": "The registry database is unreachable or locked; see Retry-After",
}
KEY_ANSWERS = ("401", "403")


def _schema(model, mode: str, components: dict) -> dict:
    """A reference to ``model``'s own JSON schema, which goes to the shared components with
    the models it nests."""
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}", mode=mode)
    components.update(schema.pop("$defs", {}))
    components[model.__name__] = schema
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _referenced(node, found: set[str]) -> None:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
            found.add(ref.rsplit("/", 1)[1])
        for value in node.values():
            _referenced(value, found)
    elif isinstance(node, list):
        for value in node:
            _referenced(value, found)


def _prune(document: dict) -> None:
    """Drop the components nothing refers to (BentoML's flattened copies of the models)."""
    components = document["components"]["schemas"]
    used: set[str] = set()
    _referenced(document["paths"], used)
    pending = list(used)
    while pending:
        found: set[str] = set()
        _referenced(components.get(pending.pop(), {}), found)
        pending += sorted(found - used)
        used |= found
    for name in set(components) - used:
        del components[name]


def complete_document(
    document: dict,
    endpoints: Mapping[str, Endpoint],
    model_version: str | None,
    field_enums: Mapping[str, Mapping[str, list[str]]] | None = None,
    keyed_paths: tuple[str, ...] = (),
) -> dict:
    """``document`` with exact schemas, example requests, error answers and bearer security.

    BentoML flattens each top-level schema (dropping ``null`` from optional fields); the
    endpoints' pydantic schemas replace them, as OpenAPI 3.1 (JSON Schema 2020-12, which is
    what pydantic writes). ``field_enums`` (path -> field -> values) publishes values that
    come from the configuration, such as the decision actions. ``keyed_paths`` are other
    operations that need a key (``/metrics`` unless ``serving.public_metrics``).
    """
    field_enums = field_enums or {}
    document = copy.deepcopy(document)
    document["openapi"] = "3.1.0"
    components = document.setdefault("components", {}).setdefault("schemas", {})
    components["ErrorResponse"] = ERROR_SCHEMA
    document["components"]["securitySchemes"] = {
        "bearer": {"type": "http", "scheme": "bearer", "description": "An API key"}
    }
    document["info"]["version"] = model_version or "unknown"
    error_content = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}
    for path, endpoint in endpoints.items():
        operation = document["paths"].get(path, {}).get("post")
        if operation is None:
            continue
        request_schema = _schema(endpoint.request, "validation", components)
        for name, values in field_enums.get(path, {}).items():
            components[endpoint.request.__name__]["properties"][name]["enum"] = list(values)
        operation["requestBody"] = {
            "required": True,
            "content": {
                "application/json": {"schema": request_schema, "example": endpoint.example}
            },
        }
        operation["responses"] = {
            "200": {
                "description": "Successful response",
                "content": {
                    "application/json": {
                        "schema": _schema(endpoint.response, "serialization", components)
                    }
                },
            },
            **{
                status: {"description": description, "content": copy.deepcopy(error_content)}
                for status, description in ERROR_ANSWERS.items()
            },
        }
        operation["security"] = [{"bearer": []}]
    for path in keyed_paths:
        for operation in document["paths"].get(path, {}).values():
            operation["security"] = [{"bearer": []}]
            operation["responses"].update(
                {
                    status: {"description": ERROR_ANSWERS[status], "content": error_content}
                    for status in KEY_ANSWERS
                }
            )
    for path, links in LINKS.items():
        operation = document["paths"].get(path, {}).get("post")
        if operation is None:
            continue
        operation["responses"]["200"]["links"] = {
            name: {
                "operationId": document["paths"][target]["post"]["operationId"],
                "requestBody": body,
            }
            for name, (target, body) in links.items()
            if target in document["paths"]
        }
    _prune(document)
    return document


class DocsMiddleware:
    """ASGI middleware serving the completed document at /docs.json and a /docs redirect.

    Parameters
    ----------
    app : ASGI app
        The application behind it.
    document : callable
        Returns the completed OpenAPI document (built once, then cached).
    """

    def __init__(self, app, *, document: Callable[[], dict]) -> None:
        self.app = app
        self.document = document
        self._body: bytes | None = None

    async def __call__(self, scope, receive, send) -> None:
        path = scope.get("path")
        if scope["type"] != "http" or scope.get("method") not in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        if path == "/docs.json":
            if self._body is None:
                self._body = json.dumps(self.document()).encode("utf-8")
            headers = [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(self._body)).encode()),
            ]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": self._body})
            return
        if path == "/docs":
            await json_response(
                send, 307, {"error": "the API viewer is at /"}, extra_headers=[(b"location", b"/")]
            )
            return
        await self.app(scope, receive, send)
