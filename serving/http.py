"""HTTP plumbing shared by the middlewares and the service: JSON answers and API errors.

Every error the service gives is a JSON object ``{"error": message}``, plus ``"field"`` when one
field of the request is at fault; messages name fields and ids, never personal identifiers.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable

import pydantic_core
from starlette.responses import JSONResponse, Response


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
