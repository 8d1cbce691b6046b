"""A saved listing: the result of ``tools/list`` (and optionally the other list methods) in a file.

Three shapes are accepted:

* one server's listing, ``{"tools": [...]}``, optionally with ``prompts``, ``resources`` and
  ``resourceTemplates`` (the result objects of the four list methods merged); its server has no name;
* an object keyed by server name whose values are such listings,
  ``{"files": {"tools": [...]}, "crm": {"tools": [...]}}``;
* either of the above, or each keyed listing, wrapped in a JSON-RPC response
  (``{"jsonrpc": "2.0", "id": 1, "result": {"tools": [...]}}``).

Every problem is a :class:`TargetError` naming the file and the place in it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gatehold.scan.model import ServerSnapshot
from gatehold.scan.targets.errors import TargetError

LISTING_KEYS = {"tools": "name", "prompts": "name", "resources": "uri", "resourceTemplates": "uriTemplate"}
"""Each list a listing may hold, and the string member that names its items."""

SHAPES = ('{"tools": [...]}, an object keyed by server name whose values are such objects, '
          "or a JSON-RPC response wrapping either")


def read_text(path: str) -> str:
    """The file's text, or a TargetError that says why it could not be read."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TargetError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise TargetError(f"{path}: is a directory, not a file") from None
    except UnicodeDecodeError as exc:
        raise TargetError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise TargetError(f"{path}: cannot read ({exc.strerror or type(exc).__name__})") from None


def load(path: str) -> list[ServerSnapshot]:
    """The servers a saved listing describes (``source="tools-json"``, ``listed=True``)."""
    text = read_text(path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise TargetError(f"{path}: not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})") from None
    data = _unwrap(path, data, "(top level)")
    if not isinstance(data, dict):
        raise TargetError(f"{path}: expected a JSON object ({SHAPES}), found {kind_of(data)}")
    if is_listing(data):
        return [snapshot(path, None, data, "(top level)")]
    if not data:
        raise TargetError(f"{path}: the object is empty; expected {SHAPES}")
    servers = []
    for name, value in data.items():
        where = f"server {name!r}"
        if not name:
            raise TargetError(f"{path}: a server name is empty")
        value = _unwrap(path, value, where)
        if not isinstance(value, dict) or not is_listing(value):
            raise TargetError(f"{path}: {where}: expected a listing such as {{\"tools\": [...]}}, found "
                              f"{kind_of(value) if not isinstance(value, dict) else 'an object without tools'}; "
                              f"the file should be {SHAPES}")
        servers.append(snapshot(path, name, value, where))
    return servers


def is_listing(data: Mapping[str, Any]) -> bool:
    """True when ``data`` holds a list under at least one of the listing keys."""
    return any(isinstance(data.get(key), list) for key in LISTING_KEYS)


def snapshot(path: str, name: str | None, listing: Mapping[str, Any], where: str) -> ServerSnapshot:
    kinds = {key: _items(path, listing, key, where) for key in LISTING_KEYS}
    return ServerSnapshot(name=name, source="tools-json", tools=kinds["tools"], prompts=kinds["prompts"],
                          resources=kinds["resources"], templates=kinds["resourceTemplates"], listed=True,
                          file=path)


def _unwrap(path: str, data: Any, where: str) -> Any:
    """The ``result`` of a JSON-RPC response, or ``data`` itself when it is not one."""
    if not isinstance(data, dict) or data.get("jsonrpc") != "2.0":
        return data
    if "error" in data:
        error = data["error"]
        message = error.get("message") if isinstance(error, dict) else None
        shown = f": {str(message)[:200]!r}" if message is not None else ""
        raise TargetError(f"{path}: {where}: a JSON-RPC error response{shown}, not a listing")
    if not isinstance(data.get("result"), dict):
        raise TargetError(f"{path}: {where}: a JSON-RPC response without a result object")
    return data["result"]


def _items(path: str, listing: Mapping[str, Any], key: str, where: str) -> tuple[Mapping[str, Any], ...]:
    value = listing.get(key)
    if value is None:
        return ()
    if not isinstance(value, list):
        raise TargetError(f"{path}: {where}: {key!r} must be a list, found {kind_of(value)}")
    member = LISTING_KEYS[key]
    singular = {"tools": "a tool", "prompts": "a prompt", "resources": "a resource",
                "resourceTemplates": "a resource template"}[key]
    for index, item in enumerate(value):
        if not isinstance(item, dict):
            raise TargetError(f"{path}: {where}: {key}[{index}] must be an object, found {kind_of(item)}")
        named = item.get(member)
        if not isinstance(named, str) or not named:
            found = kind_of(named) if member in item else "none"
            raise TargetError(f"{path}: {where}: {key}[{index}]: {singular} needs a non-empty string "
                              f"{member!r}, found {found}")
    return tuple(value)


def kind_of(value: Any) -> str:
    """A short English name for the JSON type of ``value``, for error messages."""
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "a number",
             float: "a number", type(None): "null"}
    return names.get(type(value), type(value).__name__)
