"""A real MCP server built with the ``mcp`` SDK, used as an upstream in tests.

Run it over stdio with ``python -m tests.servers.sdk_server`` from the repository root, or import
``server`` and serve ``server.streamable_http_app()`` over HTTP.
"""

from __future__ import annotations

import os
import sys

import anyio
from mcp.server.mcpserver import Context, MCPServer
from pydantic import BaseModel

server: MCPServer = MCPServer("gatehold-test-server", version="1.0.0")


@server.tool()
def echo(text: str) -> str:
    """Return the text unchanged."""
    return text


@server.tool()
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@server.tool()
async def slow(seconds: float, ctx: Context) -> str:
    """Sleep, then answer. Reports progress 0 when it starts; a cancelled call says so on stderr."""
    await ctx.report_progress(0, 1, "started")
    try:
        await anyio.sleep(seconds)
    except anyio.get_cancelled_exc_class():
        print(f"slow cancelled after request for {seconds}s", file=sys.stderr, flush=True)
        raise
    return f"slept {seconds}"


@server.tool()
def crash() -> str:
    """Exit the process at once (stdio only)."""
    os._exit(3)


@server.tool()
def big(n: int) -> str:
    """Return n times 'x'."""
    return "x" * n


@server.tool()
def env(name: str) -> str:
    """The value of an environment variable, or '<unset>'."""
    return os.environ.get(name, "<unset>")


@server.tool()
def stderr(text: str) -> str:
    """Write a line to stderr."""
    print(text, file=sys.stderr, flush=True)
    return "ok"


@server.tool()
def pid() -> int:
    """This process's id."""
    return os.getpid()


@server.tool()
async def progress(steps: int, ctx: Context) -> str:
    """Report progress ``steps`` times."""
    for i in range(1, steps + 1):
        await ctx.report_progress(i, steps, f"step {i}")
        await anyio.sleep(0.01)
    return f"done {steps}"


@server.tool()
async def announce(ctx: Context) -> str:
    """Tell the client the tool list changed (a notification tied to no request)."""
    await ctx.session.send_tool_list_changed()
    return "announced"


class Answer(BaseModel):
    answer: str


@server.tool()
async def ask(question: str, ctx: Context) -> str:
    """Ask the client (elicitation) and return what it answered."""
    try:
        result = await ctx.elicit(question, Answer)
    except Exception as exc:
        return f"elicitation failed: {exc}"
    if result.action == "accept":
        return f"answer: {result.data.answer}"
    return f"action: {result.action}"


@server.resource("demo://readme", mime_type="text/plain")
def readme() -> str:
    """A demo resource."""
    return "Gatehold test server readme"


@server.prompt()
def greet(name: str) -> str:
    """Greet someone."""
    return f"Hello, {name}!"


if __name__ == "__main__":
    server.run("stdio")
