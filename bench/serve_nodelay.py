"""``gatehold serve`` with one change, to measure a proposed fix: accepted sockets get TCP_NODELAY.

``gatehold.cli._bind`` creates its listening socket as ``socket.socket(family, SOCK_STREAM)``, whose
``proto`` is 0. asyncio only disables Nagle's algorithm on accepted sockets whose ``proto`` is
``IPPROTO_TCP``, and uvicorn writes a response's head and body in two writes, so the body waits for
the client's delayed ACK (about 40 ms on Linux). Re-wrapping the same file descriptor lets Python
read the real protocol (6) from the kernel; nothing else changes.

    python bench/serve_nodelay.py serve --config FILE --port 0
"""

from __future__ import annotations

import socket

from gatehold import cli

_shipped_bind = cli._bind


def _bind(host: str, port: int) -> socket.socket:
    return socket.socket(fileno=_shipped_bind(host, port).detach())  # proto auto-detected: IPPROTO_TCP


cli._bind = _bind

if __name__ == "__main__":
    cli.main(prog_name="gatehold")
