"""A small Streamable HTTP MCP server (legacy era, JSON responses) for the scanner's transport checks.

Run with ``python -m tests.servers.auth_http_server [--auth]``; it binds 127.0.0.1 on a free port and
prints ``URL: http://127.0.0.1:N/mcp`` once it listens. It serves the ``clean`` definitions of
:mod:`tests.servers.planted_server`, so that only its transport shows in a scan.

* Without ``--auth`` it is what many local servers are: anyone may list and call its tools, and the
  ``Origin`` header is ignored (a web page could drive it through DNS rebinding).
* With ``--auth`` it requires ``Authorization: Bearer <token>`` where the token is the value of the
  ``AUTH_HTTP_TOKEN`` environment variable; a request without it gets 401 with a ``WWW-Authenticate``
  challenge naming its RFC 9728 metadata, which it serves at
  ``/.well-known/oauth-protected-resource/mcp``; a foreign ``Origin`` gets 403 before anything else.
* With ``--drop-probes`` it closes the connection without an answer on a request to
  ``/.well-known/...`` or with a foreign ``Origin`` (a proxy that drops what it does not know), so a
  scanner's transport probes get no answer while listing works.
"""

from __future__ import annotations

import argparse
import hmac
import json
import os
import socket
import sys
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from tests.servers.planted_server import PROTOCOL, answer

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
METADATA_PATH = "/.well-known/oauth-protected-resource/mcp"
ISSUER = "https://auth.example.com"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Server

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the tests read stdout for the URL only."""

    def _send(self, status: int, body: dict[str, Any] | None = None, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        if body is not None:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _dropped(self) -> bool:
        """With --drop-probes: closes the connection unanswered on a probe, and returns True."""
        origin = self.headers.get("Origin")
        foreign = origin is not None and urlsplit(origin).hostname not in LOOPBACK_HOSTS
        if self.server.drop_probes and (self.path.startswith("/.well-known/") or foreign):
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return True
        return False

    def _allowed(self) -> bool:
        """Answers the request (403, 401) and returns False when it may not go on."""
        if not self.server.auth:
            return True
        origin = self.headers.get("Origin")
        if origin is not None and urlsplit(origin).hostname not in LOOPBACK_HOSTS:
            self._send(403, {"error": "origin not allowed"})
            return False
        scheme, _, token = (self.headers.get("Authorization") or "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.encode(), self.server.token.encode()):
            metadata = f"http://127.0.0.1:{self.server.server_address[1]}{METADATA_PATH}"
            self._send(401, {"error": "unauthorized"},
                       {"WWW-Authenticate": f'Bearer realm="planted", resource_metadata="{metadata}"'})
            return False
        return True

    def do_GET(self) -> None:
        if self._dropped():
            return
        if self.path in (METADATA_PATH, "/.well-known/oauth-protected-resource") and self.server.auth:
            port = self.server.server_address[1]
            self._send(200, {"resource": f"http://127.0.0.1:{port}/mcp", "authorization_servers": [ISSUER],
                             "bearer_methods_supported": ["header"]})
        elif self.path == "/mcp":
            if self._allowed():
                self._send(405, {"error": "no server-to-client stream"}, {"Allow": "POST, DELETE"})
        else:
            self._send(404, {"error": "not found"})

    def do_DELETE(self) -> None:
        if self.path != "/mcp":
            self._send(404, {"error": "not found"})
        elif self._allowed():
            self._send(204)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        if self._dropped():
            return
        if self.path != "/mcp":
            self._send(404, {"error": "not found"})
            return
        if not self._allowed():
            return
        try:
            message = json.loads(raw)
        except ValueError:
            self._send(400, {"jsonrpc": "2.0", "id": None, "error": {"code": -32700, "message": "parse error"}})
            return
        if not isinstance(message, dict) or "method" not in message:
            self._send(400, {"jsonrpc": "2.0", "id": None, "error": {"code": -32600, "message": "invalid request"}})
            return
        if "id" not in message:
            self._send(202)  # a notification
            return
        reply: dict[str, Any] = {"jsonrpc": "2.0", "id": message["id"]}
        headers: dict[str, str] = {}
        try:
            reply["result"] = answer("clean", str(message["method"]), message.get("params") or {})
        except KeyError:
            reply["error"] = {"code": -32601, "message": "method not found"}
        if message["method"] == "initialize":
            headers["Mcp-Session-Id"] = uuid.uuid4().hex
            headers["MCP-Protocol-Version"] = PROTOCOL
        self._send(200, reply, headers)


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, auth: bool, token: str, drop_probes: bool = False) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.auth = auth
        self.token = token
        self.drop_probes = drop_probes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--auth", action="store_true", help="require the bearer token in AUTH_HTTP_TOKEN")
    parser.add_argument("--drop-probes", action="store_true",
                        help="close the connection unanswered on /.well-known/ requests and foreign Origins")
    options = parser.parse_args()
    token = os.environ.get("AUTH_HTTP_TOKEN", "")
    if options.auth and not token:
        sys.stderr.write("--auth needs AUTH_HTTP_TOKEN\n")
        sys.exit(2)
    server = Server(options.auth, token, options.drop_probes)
    sys.stdout.write(f"URL: http://127.0.0.1:{server.server_address[1]}/mcp\n")
    sys.stdout.flush()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
