"""Keep-alive connections recycled after a number of requests, so load spreads over workers.

The workers share one listening socket, and the one that wakes first accepts every connection
waiting: a client that opens its keep-alive pool at once (8 connections, say) often lands
wholly on one worker, which then does all the work while the other idles, for as long as the
connections live. Answering every ``max_requests``-th request of a connection with
``Connection: close`` makes the client reconnect; the new connection goes to whichever worker
accepts first, which is usually the idle one, so the load evens out within seconds. A
reconnect on loopback costs a fraction of a millisecond, once per ``max_requests`` requests.
"""

from __future__ import annotations

from collections import OrderedDict

CLOSE = (b"connection", b"close")
TRACKED_CONNECTIONS = 4096  # counts kept for the most recent connections (memory stays bounded)


class ConnectionRecycleMiddleware:
    """ASGI middleware closing each keep-alive connection after ``max_requests`` answers.

    A connection is known by its peer address (``scope["client"]``, unique per open TCP
    connection). ``max_requests`` 0 turns recycling off.

    Attributes
    ----------
    served_ : OrderedDict
        Answers so far per connection, oldest connection first.
    """

    def __init__(self, app, *, max_requests: int) -> None:
        self.app = app
        self.max_requests = max_requests
        self.served_: OrderedDict[tuple, int] = OrderedDict()

    async def __call__(self, scope, receive, send) -> None:
        connection = scope.get("client")
        if scope["type"] != "http" or not self.max_requests or connection is None:
            await self.app(scope, receive, send)
            return
        key = tuple(connection)
        served = self.served_.pop(key, 0) + 1
        last = served >= self.max_requests
        if not last:
            self.served_[key] = served
            while len(self.served_) > TRACKED_CONNECTIONS:
                self.served_.popitem(last=False)

        async def send_closing(message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), CLOSE]}
            await send(message)

        await self.app(scope, receive, send_closing if last else send)
