"""Saved listings: the three accepted shapes, and a clear TargetError for everything else."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gatehold.scan.targets.errors import TargetError
from gatehold.scan.targets.tools_json import load

READ = {"name": "read_file", "description": "Read a file.", "inputSchema": {"type": "object"}}
SEND = {"name": "send", "description": "Send a message.", "inputSchema": {"type": "object"}}


def write(tmp_path: Path, data: Any, name: str = "tools.json") -> str:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
    return str(path)


def test_a_single_listing_is_one_unnamed_server(tmp_path: Path) -> None:
    path = write(tmp_path, {"tools": [READ, SEND], "nextCursor": None})
    (server,) = load(path)
    assert server.name is None
    assert server.source == "tools-json"
    assert server.listed is True
    assert server.file == path
    assert [t["name"] for t in server.tools] == ["read_file", "send"]
    assert server.tools[0] == READ  # kept exactly as saved


def test_the_other_listing_kinds_are_read_too(tmp_path: Path) -> None:
    listing = {"tools": [READ], "prompts": [{"name": "greet"}], "resources": [{"uri": "file:///a", "name": "a"}],
               "resourceTemplates": [{"uriTemplate": "file:///{path}", "name": "files"}]}
    (server,) = load(write(tmp_path, listing))
    assert [kind for kind, _, _ in server.items()] == ["tool", "prompt", "resource", "template"]
    assert server.templates[0]["uriTemplate"] == "file:///{path}"


def test_listings_keyed_by_server_name(tmp_path: Path) -> None:
    (files, crm) = load(write(tmp_path, {"files": {"tools": [READ]}, "crm": {"tools": [SEND], "prompts": []}}))
    assert (files.name, crm.name) == ("files", "crm")
    assert files.tools == (READ,)
    assert crm.tools == (SEND,)
    assert all(s.listed and s.source == "tools-json" for s in (files, crm))


def test_a_json_rpc_response_is_unwrapped(tmp_path: Path) -> None:
    (server,) = load(write(tmp_path, {"jsonrpc": "2.0", "id": 1, "result": {"tools": [READ]}}))
    assert server.name is None
    assert server.tools == (READ,)
    keyed = {"files": {"jsonrpc": "2.0", "id": 7, "result": {"tools": [READ]}}}
    (named,) = load(write(tmp_path, keyed, "keyed.json"))
    assert named.name == "files"
    assert named.tools == (READ,)


def test_an_empty_tool_list_is_a_server_without_tools(tmp_path: Path) -> None:
    (server,) = load(write(tmp_path, {"tools": []}))
    assert server.tools == ()
    assert server.listed


@pytest.mark.parametrize(("content", "expected"), [
    ("{not json", "not valid JSON: Expecting property name enclosed in double quotes (line 1, column 2)"),
    ('[{"tools": []}]', "expected a JSON object"),
    ("{}", "the object is empty"),
    ('{"tools": [{"description": "no name"}]}', "tools[0]: a tool needs a non-empty string 'name'"),
    ('{"tools": [{"name": 42}]}', "tools[0]: a tool needs a non-empty string 'name', found a number"),
    ('{"tools": ["read_file"]}', "tools[0] must be an object, found a string"),
    ('{"tools": [], "prompts": {"a": 1}}', "'prompts' must be a list, found an object"),
    ('{"resources": [{"name": "no uri"}]}', "resources[0]: a resource needs a non-empty string 'uri'"),
    ('{"files": {"tools": [{"name": ""}]}}', "server 'files': tools[0]: a tool needs a non-empty string 'name'"),
    ('{"files": ["read_file"]}', "server 'files': expected a listing"),
    ('{"files": {"description": "x"}}', "an object without tools"),
    ('{"jsonrpc": "2.0", "id": 1, "error": {"code": -32601, "message": "no such method"}}',
     "a JSON-RPC error response: 'no such method', not a listing"),
    ('{"jsonrpc": "2.0", "id": 1, "result": []}', "a JSON-RPC response without a result object"),
])
def test_malformed_input_is_a_clear_error_naming_the_file(tmp_path: Path, content: str, expected: str) -> None:
    path = write(tmp_path, content)
    with pytest.raises(TargetError) as caught:
        load(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ")
    assert expected in message
    assert "\n" not in message


def test_unreadable_files_are_target_errors(tmp_path: Path) -> None:
    with pytest.raises(TargetError, match="no such file"):
        load(str(tmp_path / "missing.json"))
    with pytest.raises(TargetError, match="is a directory"):
        load(str(tmp_path))
    binary = tmp_path / "binary.json"
    binary.write_bytes(b'{"tools": ["\xff"]}')
    with pytest.raises(TargetError, match="not UTF-8 text"):
        load(str(binary))
