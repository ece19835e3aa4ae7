"""Request limits: a body over ``serving.max_body_bytes`` is answered 413 before parsing; an API
request whose body is not JSON 415, and one without a body 400."""

from __future__ import annotations

from serving.http import json_response

TOO_LARGE = "request body larger than {limit} bytes"
NOT_JSON = "request body must be JSON: send 'Content-Type: application/json'"
NO_BODY = "request body missing: send the request as a JSON object"


class BodyLimitMiddleware:
    """ASGI middleware refusing oversized bodies with 413 before the application reads them.

    A declared ``Content-Length`` over the limit is refused at once. A body without one
    (chunked) is read here up to the limit and then handed on, so nothing downstream ever holds
    more than ``max_bytes``.

    Parameters
    ----------
    app : ASGI app
        The application behind the limit.
    max_bytes : int
        The largest body accepted.
    """

    def __init__(self, app, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        api_call = scope.get("method") == "POST" and scope["path"].startswith("/v1/")
        if api_call:
            media_type = _header(scope, b"content-type") or b"application/json"
            if media_type.split(b";")[0].strip().lower() != b"application/json":
                await json_response(send, 415, {"error": NOT_JSON})
                return
        declared = _content_length(scope)
        if declared is not None:
            if declared > self.max_bytes:
                await self._refuse(send)
            elif declared == 0 and api_call:
                await json_response(send, 400, {"error": NO_BODY})
            else:
                await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._refuse(send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if not body and api_call:
            await json_response(send, 400, {"error": NO_BODY})
            return
        replayed = False

        async def replay():
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    async def _refuse(self, send) -> None:
        await json_response(send, 413, {"error": TOO_LARGE.format(limit=self.max_bytes)})


def _header(scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return value
    return None


def _content_length(scope) -> int | None:
    value = _header(scope, b"content-length")
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None
