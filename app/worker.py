"""The gunicorn worker class: uvicorn's, accepting one connection per wake-up.

gunicorn's workers share one listening socket. asyncio's accept loop takes up to `backlog`
pending connections each time the socket becomes readable, so when a client pool opens its
keep-alive connections in a burst, the first worker to wake takes all of them and the others
idle: measured here, 8 wrk connections all landed on one of two workers (one core busy,
414 rps instead of about 650). With an accept batch of one, every worker that wakes takes one
connection and goes back to its event loop, so a burst is shared; the kernel's listen queue
keeps gunicorn's `backlog` (the socket is listened on again with it).
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn_worker import UvicornWorker

#: Connections accepted per readiness event of the listening socket.
ACCEPT_BATCH = 1


class BalancedUvicornWorker(UvicornWorker):  # type: ignore[misc]
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
