"""HTTP plumbing shared by the middlewares and the service: JSON answers and API errors.

Every error the service gives is a JSON object ``{"error": message}``, plus ``"field"`` when one
field of the request is at fault; messages name fields and ids, never personal identifiers.
Every refusal of a request's content is a 422 naming the field and the reason, the schema's own
(:class:`ValidationErrorMiddleware`) and the service's checks alike.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Iterable

import pydantic
import pydantic_core
from starlette.responses import JSONResponse, Response

logger = logging.getLogger(__name__)


class ApiError(Exception):
    """A request the service answers with a 4xx or 503 instead of a result.

    Parameters
    ----------
    status : int
        HTTP status code.
    message : str
        What went wrong, naming the field or id.
    field : str, optional
        The request field at fault (dotted path).
    retry_after : int, optional
        Seconds a client should wait before retrying (503, 429).
    extra : dict, optional
        More machine-readable detail, e.g. the successor ids of a split person.
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        field: str | None = None,
        retry_after: int | None = None,
        extra: dict | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field
        self.retry_after = retry_after
        self.extra = extra or {}

    def payload(self) -> dict:
        body = {"error": self.message, **self.extra}
        if self.field is not None:
            body["field"] = self.field
        return body

    def response(self) -> JSONResponse:
        """The error as a Starlette response (for the BentoML endpoints)."""
        headers = {"Retry-After": str(self.retry_after)} if self.retry_after else None
        return JSONResponse(self.payload(), status_code=self.status, headers=headers)


class ResponseStatus:
    """Passes an application's messages on and keeps the status it answered with (None until
    it starts an answer: the client went away, or the application failed), for middlewares
    that note each answer (the audit log, the metrics)."""

    def __init__(self, send) -> None:
        self._send = send
        self.code: int | None = None

    async def send(self, message) -> None:
        if message["type"] == "http.response.start":
            self.code = message["status"]
        await self._send(message)


async def json_response(
    send,
    status: int,
    payload: dict,
    *,
    retry_after: int | None = None,
    extra_headers: Iterable[tuple[bytes, bytes]] = (),
) -> None:
    """Send a complete JSON response on a raw ASGI ``send`` (for middlewares)."""
    body = json.dumps(payload).encode("utf-8")
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *extra_headers,
    ]
    if retry_after is not None:
        headers.append((b"retry-after", str(retry_after).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def answer(**fields) -> Response:
    """A 200 JSON answer from plain values, encoded by pydantic-core (datetimes in RFC 3339).

    Endpoints whose answers are large (a batch of scores) build them as dicts of the
    response schema's fields and return this: BentoML passes a Response through as is,
    while the endpoint's annotation still publishes the schema.
    """
    return Response(pydantic_core.to_json(fields), media_type="application/json")


def answers_errors(endpoint):
    """Decorate an async endpoint so an :class:`ApiError` becomes its JSON error answer."""

    @functools.wraps(endpoint)
    async def wrapper(*args, **kwargs):
        try:
            return await endpoint(*args, **kwargs)
        except ApiError as error:
            # BentoML copies the context's status and headers onto whatever the endpoint returns.
            ctx = kwargs.get("ctx")
            if ctx is not None:
                ctx.response.status_code = error.status
                if error.retry_after:
                    ctx.response.metadata["Retry-After"] = str(error.retry_after)
                ctx.request.state.audit_outcome = f"refused: {error.message}"[:200]
            return error.response()

    return wrapper


# --------------------------------------------------------------------------- validation errors

# BentoML logs every request its schema refuses, with a traceback, through this logger.
BENTOML_REQUEST_LOGGER = "bentoml._internal.server.http_app"
INVALID_REQUEST = "invalid request"


class _SchemaRefusals(logging.Filter):
    """Drops BentoML's traceback of a request the schema refused (the service logs one line)."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return not isinstance(error, pydantic.ValidationError)


def quiet_schema_refusals() -> None:
    """Install the filter (once per process) on BentoML's request logger."""
    target = logging.getLogger(BENTOML_REQUEST_LOGGER)
    if not any(isinstance(f, _SchemaRefusals) for f in target.filters):
        target.addFilter(_SchemaRefusals())


def validation_answer(detail: list[dict]) -> dict:
    """The service's 422 body for pydantic's error list (no input values: the schemas hide
    them): the first field at fault and its reason, then every field and reason."""
    problems = [
        {
            "field": ".".join(str(part) for part in error.get("loc", ())) or "body",
            "reason": str(error.get("msg", "invalid")),
        }
        for error in detail
    ]
    first = problems[0] if problems else {"field": "body", "reason": "invalid"}
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return {
        "error": f"{first['field']}: {first['reason']}{more}",
        "field": first["field"],
        "detail": problems,
    }


class ValidationErrorMiddleware:
    """ASGI middleware giving every schema refusal the service's own error form.

    BentoML answers a body its request schema refuses with ``400 {error, detail}`` (pydantic's
    list); this turns that answer into ``422 {error, field, detail}`` naming the first field
    and its reason (as every other refusal of the service does), puts the refusal in the audit
    outcome, and logs it on one line.
    """

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/v1/"):
            await self.app(scope, receive, send)
            return
        held: list[dict] = []

        async def intercept(message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 400:
                held.append(message)
                return
            if not held:
                await send(message)
                return
            held.append(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                await self._answer(scope, held, send)

        await self.app(scope, receive, intercept)

    async def _answer(self, scope, held: list[dict], send) -> None:
        body = b"".join(m.get("body", b"") for m in held[1:])
        try:
            detail = json.loads(body).get("detail")
        except (ValueError, AttributeError):
            detail = None
        if not isinstance(detail, list):  # not a schema refusal: pass it on as it was
            for message in held:
                await send(message)
            return
        answer = validation_answer(detail)
        scope.setdefault("state", {})["audit_outcome"] = f"refused: {answer['error']}"[:200]
        logger.warning("422 %s %s: %s", scope.get("method"), scope["path"], answer["error"])
        await json_response(send, 422, answer)
