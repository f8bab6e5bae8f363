"""The gunicorn worker class: uvicorn's, accepting one connection per wake-up, with a
deadline for request headers and a cap on open connections.

gunicorn's workers share one listening socket. asyncio's accept loop takes up to `backlog`
pending connections each time the socket becomes readable, so when a client pool opens its
keep-alive connections in a burst, the first worker to wake takes all of them and the others
idle: measured here, 8 wrk connections all landed on one of two workers (one core busy,
414 rps instead of about 650). With an accept batch of one, every worker that wakes takes one
connection and goes back to its event loop, so a burst is shared; the kernel's listen queue
keeps gunicorn's `backlog` (the socket is listened on again with it).

uvicorn itself waits forever for the headers of a request (only an idle connection after a
response times out), and opens as many connections as clients make. `GuardedH11Protocol`
closes a connection whose request headers are not complete `header_timeout_seconds` after it
opened (or after the previous response), and closes at once a connection beyond
`max_connections` of this worker. The body has its own deadline in app/middleware.py.
"""

from __future__ import annotations

import asyncio
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn_worker import UvicornWorker

from app.settings import Settings

#: Connections accepted per readiness event of the listening socket.
ACCEPT_BATCH = 1


class GuardedH11Protocol(H11Protocol):
    header_timeout: float = 10.0
    max_connections: int = 1000

    _header_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            self.logger.warning("closing a connection over the cap of this worker")
            transport.close()
            return
        self._arm_header_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_deadline()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:  # the request line and headers are in
            self._disarm_header_deadline()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
            self._arm_header_deadline()  # the next request's headers get the same deadline

    def _arm_header_deadline(self) -> None:
        self._disarm_header_deadline()
        self._header_deadline = self.loop.call_later(self.header_timeout, self._headers_late)

    def _disarm_header_deadline(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _headers_late(self) -> None:
        self._header_deadline = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()


class BalancedUvicornWorker(UvicornWorker):  # type: ignore[misc]
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        settings = Settings()
        protocol = type(
            "GuardedH11Protocol",
            (GuardedH11Protocol,),
            {
                "header_timeout": settings.header_timeout_seconds,
                "max_connections": settings.max_connections,
            },
        )
        self.CONFIG_KWARGS: dict[str, Any] = {**UvicornWorker.CONFIG_KWARGS, "http": protocol}
        super().__init__(*args, **kwargs)

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        create_server = loop.create_server
        queue = int(self.cfg.backlog)

        async def balanced(*args: Any, **kwargs: Any) -> asyncio.Server:
            kwargs["backlog"] = ACCEPT_BATCH  # bounds asyncio's accept loop per wake-up ...
            server = await create_server(*args, **kwargs)
            sock = kwargs.get("sock")
            if sock is not None:
                sock.listen(queue)  # ... but not the kernel's queue of pending connections
            return server

        loop.create_server = balanced  # type: ignore[method-assign]
        await super()._serve()
