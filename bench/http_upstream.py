"""A minimal Streamable HTTP MCP server for the benchmark: raw ASGI, orjson, JSON responses only.

Answers ``server/discover`` (2026-07-28), ``initialize`` (just in case), ``tools/list`` with one
tool ``read_file`` and ``tools/call`` with a fixed text. Serves on 127.0.0.1:<free port> (or
``--port``) and prints ``PORT: <n>`` once it is listening.

    python bench/http_upstream.py [--port N]
"""

from __future__ import annotations

import argparse
import socket
import sys
from typing import Any

import orjson
import uvicorn

VERSION = "2026-07-28"
TEXT = "Welcome to the Gatehold demo. Files here are readable by the agent.\n"
TOOL = {
    "name": "read_file",
    "description": "Read a text file.",
    "inputSchema": {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]},
}
JSON_HEADERS = [(b"content-type", b"application/json")]


def result_for(method: str, params: dict[str, Any]) -> dict[str, Any] | None:
    if method == "server/discover":
        return {"supportedVersions": [VERSION], "capabilities": {"tools": {}}, "resultType": "complete",
                "_meta": {"io.modelcontextprotocol/serverInfo": {"name": "bench-upstream", "version": "1"}}}
    if method == "initialize":
        return {"protocolVersion": "2025-11-25", "capabilities": {"tools": {}},
                "serverInfo": {"name": "bench-upstream", "version": "1"}}
    if method == "tools/list":
        return {"tools": [TOOL], "resultType": "complete"}
    if method == "tools/call":
        if params.get("name") != "read_file":
            return None
        return {"content": [{"type": "text", "text": TEXT}], "isError": False, "resultType": "complete"}
    if method == "ping":
        return {}
    return None


async def respond(send: Any, status: int, body: bytes = b"") -> None:
    headers = [*JSON_HEADERS, (b"content-length", str(len(body)).encode())] if body else \
        [(b"content-length", b"0")]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    if scope["method"] != "POST":
        await respond(send, 405)
        return
    chunks = []
    while True:
        event = await receive()
        if event["type"] == "http.disconnect":
            return
        chunks.append(event.get("body", b""))
        if not event.get("more_body"):
            break
    try:
        message = orjson.loads(b"".join(chunks))
    except orjson.JSONDecodeError:
        await respond(send, 400, orjson.dumps({"jsonrpc": "2.0", "id": None,
                                                "error": {"code": -32700, "message": "parse error"}}))
        return
    if not isinstance(message, dict) or "id" not in message or "method" not in message:
        await respond(send, 202)  # a notification or a response: nothing to answer
        return
    params = message.get("params")
    result = result_for(str(message["method"]), params if isinstance(params, dict) else {})
    if result is None:
        reply = {"jsonrpc": "2.0", "id": message["id"], "error": {"code": -32601, "message": "not found"}}
        await respond(send, 404, orjson.dumps(reply))
        return
    await respond(send, 200, orjson.dumps({"jsonrpc": "2.0", "id": message["id"], "result": result}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    port = parser.parse_args().port
    # IPPROTO_TCP, not the default 0: asyncio only turns Nagle off (TCP_NODELAY) on accepted
    # sockets whose proto says TCP, and uvicorn writes a response's head and body separately.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(2048)
    print(f"PORT: {sock.getsockname()[1]}", flush=True)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off"))
    server.run(sockets=[sock])
    sys.exit(0)


if __name__ == "__main__":
    main()
