"""One AgentDojo suite as an MCP stdio server.

    python -m bench.agentdojo.server SUITE [--benchmark-version v1.2.2]

A minimal newline-delimited JSON-RPC loop on stdin/stdout (``initialize``, ``ping``,
``tools/list``, ``tools/call``), protocol 2025-11-25. Every tool of the suite is exposed with its
AgentDojo name, description and input schema (``parameters.model_json_schema()``), and runs its
real implementation on the suite's environment through AgentDojo's ``FunctionsRuntime``. Results
are the text AgentDojo shows a model (``tool_result_to_str``); a failing function is an
``isError: true`` result carrying AgentDojo's ``"ErrorType: message"`` text.

Environment control is out of band, never a tool: when the variable ``AGENTDOJO_CONTROL`` names a
file, that file holds ``{"generation": N, "injections": {vector_id: text}}``. Before each
``tools/call`` the server reads it and, when the generation differs from the one it runs, builds a
fresh environment with ``suite.load_and_inject_default_environment(injections)``. A missing or
malformed control file makes the call fail (an error result) rather than run on a stale
environment. Without the variable the default environment is built once at start.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from pathlib import Path
from typing import Any

from agentdojo.agent_pipeline.tool_execution import tool_result_to_str
from agentdojo.functions_runtime import FunctionsRuntime, TaskEnvironment
from agentdojo.task_suite.load_suites import get_suite
from agentdojo.task_suite.task_suite import TaskSuite

PROTOCOL_VERSION = "2025-11-25"
SUPPORTED_VERSIONS = ("2025-11-25", "2025-06-18", "2025-03-26")
CONTROL_VARIABLE = "AGENTDOJO_CONTROL"
DEFAULT_BENCHMARK_VERSION = "v1.2.2"


class ControlError(Exception):
    """The control file could not be read or does not have the expected shape."""


class SuiteServer:
    def __init__(self, suite: TaskSuite[Any], control: Path | None, version: str = DEFAULT_BENCHMARK_VERSION):
        self.suite = suite
        self.version = version
        self.runtime = FunctionsRuntime(suite.tools)
        self.control = control
        self.generation: int | None = None
        self.env: TaskEnvironment | None = None
        if control is None:
            self.env = suite.load_and_inject_default_environment({})

    # -- environment ----------------------------------------------------------------------------

    def _read_control(self) -> tuple[int, dict[str, str]]:
        assert self.control is not None
        try:
            data = json.loads(self.control.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ControlError(f"control file unreadable: {exc}") from None
        generation, injections = data.get("generation"), data.get("injections") or {}
        if not isinstance(generation, int) or not isinstance(injections, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in injections.items()):
            raise ControlError("control file must hold {generation: int, injections: {str: str}}")
        return generation, injections

    def environment(self) -> TaskEnvironment:
        if self.control is None:
            assert self.env is not None
            return self.env
        generation, injections = self._read_control()
        if generation != self.generation or self.env is None:
            self.env = self.suite.load_and_inject_default_environment(injections)
            self.generation = generation
        return self.env

    # -- MCP methods ----------------------------------------------------------------------------

    def initialize(self, params: dict[str, Any]) -> dict[str, Any]:
        asked = params.get("protocolVersion")
        version = asked if asked in SUPPORTED_VERSIONS else PROTOCOL_VERSION
        return {
            "protocolVersion": version,
            "capabilities": {"tools": {"listChanged": False}},
            "serverInfo": {"name": f"agentdojo-{self.suite.name}", "version": self.version},
        }

    def list_tools(self) -> dict[str, Any]:
        return {"tools": [
            {"name": f.name, "description": f.description, "inputSchema": f.parameters.model_json_schema()}
            for f in self.suite.tools
        ]}

    def call_tool(self, params: dict[str, Any]) -> dict[str, Any]:
        name, arguments = params.get("name"), params.get("arguments") or {}
        if not isinstance(name, str) or name not in self.runtime.functions:
            raise _RpcError(-32602, f"unknown tool: {name!r}")
        if not isinstance(arguments, dict):
            raise _RpcError(-32602, "arguments must be an object")
        try:
            env = self.environment()
        except ControlError as exc:
            return _text_result(f"EnvironmentError: {exc}", error=True)
        result, error = self.runtime.run_function(env, name, arguments)
        if error is not None:
            return _text_result(error, error=True)
        return _text_result(tool_result_to_str(result), error=False)

    def handle(self, message: dict[str, Any]) -> dict[str, Any] | None:
        method, rid = message.get("method"), message.get("id")
        if method is None or rid is None:
            return None  # a notification or a response: nothing to answer
        params = message.get("params") or {}
        try:
            if method == "initialize":
                result = self.initialize(params)
            elif method == "ping":
                result = {}
            elif method == "tools/list":
                result = self.list_tools()
            elif method == "tools/call":
                result = self.call_tool(params)
            else:
                raise _RpcError(-32601, f"method not found: {method}")
        except _RpcError as exc:
            return {"jsonrpc": "2.0", "id": rid, "error": {"code": exc.code, "message": exc.message}}
        # Never die on one request: answer it as an internal error. This is the benchmark's upstream,
        # not a control; the gateway relays the error result, and nothing passes for a success.
        except Exception as exc:
            traceback.print_exc(file=sys.stderr)
            return {"jsonrpc": "2.0", "id": rid, "error": {"code": -32603, "message": f"internal error: {exc}"}}
        return {"jsonrpc": "2.0", "id": rid, "result": result}


class _RpcError(Exception):
    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code, self.message = code, message


def _text_result(text: str, *, error: bool) -> dict[str, Any]:
    return {"content": [{"type": "text", "text": text}], "isError": error}


def serve(server: SuiteServer) -> None:
    out = sys.stdout
    sys.stdout = sys.stderr  # a stray print from a tool must not corrupt the protocol stream
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            message = json.loads(line)
        except ValueError:
            reply: dict[str, Any] | None = {"jsonrpc": "2.0", "id": None,
                                            "error": {"code": -32700, "message": "parse error"}}
        else:
            reply = server.handle(message) if isinstance(message, dict) else None
        if reply is not None:
            out.write(json.dumps(reply, ensure_ascii=False, default=str) + "\n")
            out.flush()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("suite", help="workspace, travel, banking or slack")
    parser.add_argument("--benchmark-version", default=DEFAULT_BENCHMARK_VERSION)
    args = parser.parse_args(argv)
    control = os.environ.get(CONTROL_VARIABLE)
    suite = get_suite(args.benchmark_version, args.suite)
    server = SuiteServer(suite, Path(control) if control else None, args.benchmark_version)
    serve(server)


if __name__ == "__main__":
    main()
