"""A small stdio MCP server for the demo: read a file, write a file, "send" a message.

It trusts its arguments completely, as many real servers do; the gateway in front of it is what
keeps a hijacked agent inside the demo folder. Messages are not really sent: they are appended to
``outbox.jsonl`` in the root.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

TOOLS: list[dict[str, Any]] = [
    {
        "name": "read_file",
        "description": "Read a text file.",
        "inputSchema": {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]},
        "annotations": {"readOnlyHint": True},
    },
    {
        "name": "write_file",
        "description": "Write a text file, replacing it if it exists.",
        "inputSchema": {
            "type": "object",
            "properties": {"path": {"type": "string"}, "content": {"type": "string"}},
            "required": ["path", "content"],
        },
        "annotations": {"destructiveHint": True},
    },
    {
        "name": "send_message",
        "description": "Send a message to an email address.",
        "inputSchema": {
            "type": "object",
            "properties": {"to": {"type": "string"}, "body": {"type": "string"}},
            "required": ["to", "body"],
        },
        "annotations": {"openWorldHint": True},
    },
]


def _text(text: str, *, error: bool = False) -> dict[str, Any]:
    return {"content": [{"type": "text", "text": text}], "isError": error}


def call_tool(root: Path, name: str, args: dict[str, Any]) -> dict[str, Any]:
    if name == "read_file":
        path = root / args["path"]
        try:
            return _text(path.read_text(encoding="utf-8"))
        except OSError as exc:
            return _text(f"cannot read {args['path']}: {exc.strerror}", error=True)
    if name == "write_file":
        path = root / args["path"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(args["content"], encoding="utf-8")
        return _text(f"wrote {len(args['content'])} characters to {args['path']}")
    if name == "send_message":
        with (root / "outbox.jsonl").open("a", encoding="utf-8") as outbox:
            outbox.write(json.dumps({"to": args["to"], "body": args["body"]}) + "\n")
        return _text(f"message queued for {args['to']}")
    raise KeyError(name)


def answer(root: Path, message: dict[str, Any]) -> dict[str, Any] | None:
    method, rid = message.get("method"), message.get("id")
    if rid is None:
        return None  # notifications need no answer
    params = message.get("params") or {}
    if method == "initialize":
        result: dict[str, Any] = {
            "protocolVersion": params.get("protocolVersion", "2025-11-25"),
            "capabilities": {"tools": {"listChanged": False}},
            "serverInfo": {"name": "gatehold-demo", "version": "1"},
        }
    elif method == "ping":
        result = {}
    elif method == "tools/list":
        result = {"tools": TOOLS}
    elif method == "tools/call":
        try:
            result = call_tool(root, params.get("name", ""), params.get("arguments") or {})
        except KeyError:
            return {"jsonrpc": "2.0", "id": rid, "error": {"code": -32602, "message": "unknown tool"}}
    else:
        return {"jsonrpc": "2.0", "id": rid, "error": {"code": -32601, "message": "method not found"}}
    return {"jsonrpc": "2.0", "id": rid, "result": result}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--root", required=True, help="folder the demo reads and writes")
    root = Path(parser.parse_args().root)
    root.mkdir(parents=True, exist_ok=True)
    readme = root / "README.txt"
    if not readme.exists():
        readme.write_text("Welcome to the Gatehold demo. Files here are readable by the agent.\n", encoding="utf-8")
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            message = json.loads(line)
        except ValueError:
            continue
        reply = answer(root, message)
        if reply is not None:
            sys.stdout.write(json.dumps(reply) + "\n")
            sys.stdout.flush()


if __name__ == "__main__":
    main()
