"""Serve an ASGI app with uvicorn on 127.0.0.1:<free port>, inside the test's event loop."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import uvicorn

WAIT = 20.0


def listening_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    return sock


@asynccontextmanager
async def serve_asgi(app: Any, *, lifespan: str = "on", sock: socket.socket | None = None,
                     scheme: str = "http", fast_exit: bool = False, **options: Any) -> AsyncIterator[str]:
    """Serve ``app`` on ``sock`` (default: a new loopback socket); yields its base URL.

    ``fast_exit`` skips uvicorn's graceful wait for idle keep-alive connections at the end.
    """
    sock = sock or listening_socket()
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan=lifespan, access_log=False,
                                           **options))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    async with asyncio.timeout(WAIT):
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
    try:
        yield f"{scheme}://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        server.force_exit = fast_exit
        await task
        sock.close()
