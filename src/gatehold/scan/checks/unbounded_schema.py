"""Input schemas that accept anything: nothing for the gateway (or the server) to hold arguments to.

``unbounded-schema`` reports, per tool:

* at most one finding about the schema as a whole (low): no ``inputSchema`` or one that is not an
  object schema, or a top-level object whose ``additionalProperties`` is not ``false`` (undeclared
  arguments pass);
* per parameter (properties at any depth, array items included), one finding per reason:
  a property with no type at all (no ``type``, ``enum``, ``const``, ``$ref`` or combinator): free-form;
  an object with no ``properties`` that does not close ``additionalProperties``: a free-form object;
  a string with no ``maxLength``, ``pattern``, ``enum``, ``const`` or ``format`` where the name or
  description says it carries a path, file, directory, URL, URI, host, command, script, query or code.

Parameter findings are low, and medium when the parameter carries a path, URL or command (by its name
or description), the arguments that do harm when unbounded.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from gatehold.scan.checks.fields import visible
from gatehold.scan.model import CheckInfo, Finding, ScanInput, ServerSnapshot, Severity

__all__ = ["CHECKS", "UNBOUNDED_SCHEMA", "run", "sensitive"]

UNBOUNDED_SCHEMA = CheckInfo(
    id="unbounded-schema",
    title="Input schema that accepts arbitrary arguments",
    severity="low",
    rationale=(
        "Schema validation is the first line of argument control: an argument that the schema leaves "
        "unbounded (no type, a free-form object, undeclared properties, a path or URL string of any shape) "
        "is whatever a hijacked model writes into it. Servers then receive arguments nobody reviewed, "
        "and gateway policies have nothing precise to hold them to."),
    remediation=(
        "Tighten the tool's inputSchema: `additionalProperties: false`, a `type` for every property, declared "
        "`properties` for objects, and `pattern`/`enum`/`maxLength`/`format` for paths, URLs and commands. "
        "Behind Gatehold, add per-argument constraints in the policy (`path_within`, host allow-lists, `regex`, "
        "`enum`)."),
)

CHECKS: tuple[CheckInfo, ...] = (UNBOUNDED_SCHEMA,)

_MAX_DEPTH = 8
_MAX_PARAMETERS = 500
_TYPED = ("type", "enum", "const", "$ref", "anyOf", "oneOf", "allOf", "not", "$dynamicRef")
_STRING_BOUNDS = ("maxLength", "pattern", "enum", "const", "format")
_SENSITIVE_TOKENS = frozenset({"path", "paths", "file", "files", "filename", "filepath", "pathname", "dir", "dirs",
                               "directory", "folder", "url", "urls", "uri", "uris", "link", "href", "host", "hostname",
                               "endpoint", "command", "cmd", "cmdline", "script", "query", "sql", "code"})
_HARMFUL_TOKENS = frozenset({"path", "paths", "file", "files", "filename", "filepath", "pathname", "dir", "dirs",
                             "directory", "folder", "url", "urls", "uri", "uris", "link", "href", "host", "hostname",
                             "endpoint", "command", "cmd", "cmdline", "script"})
_NOT_A_VALUE = frozenset({"id", "ids", "count", "size", "type", "length", "index", "number", "format", "mode", "limit"})
_SENSITIVE_TEXT = re.compile(r"""
    \b(?:file\s*(?:path|name)|paths?|director(?:y|ies)|folders?|urls?|uris?|web\s+address|host\s*names?|hosts?
      |commands?|scripts?|sql|(?:search\s+)?quer(?:y|ies)|source\s+code|code\s+to\s+(?:run|execute))\b""", re.I | re.X)
_HARMFUL_TEXT = re.compile(r"""
    \b(?:file\s*(?:path|name)|paths?|director(?:y|ies)|folders?|urls?|uris?|web\s+address|host\s*names?|hosts?
      |commands?|scripts?)\b""", re.I | re.X)


def run(scan: ScanInput) -> Iterator[Finding]:
    for server in scan.servers:
        for tool in server.tools:
            yield from _tool(server, tool)


def _tokens(name: str) -> list[str]:
    name = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name)
    return [t for t in re.split(r"[^a-z0-9]+", name.lower()) if t]


def sensitive(name: str, description: str) -> tuple[bool, bool]:
    """(carries a path/file/URL/host/command/script/query/code, carries a path/URL/command in particular)."""
    tokens = _tokens(name)
    if tokens and tokens[-1] in _NOT_A_VALUE:
        tokens = []
    named = [t for t in tokens if t in _SENSITIVE_TOKENS]
    harmful = any(t in _HARMFUL_TOKENS for t in named) or _HARMFUL_TEXT.search(description) is not None
    return bool(named) or _SENSITIVE_TEXT.search(description) is not None, harmful


def _tool(server: ServerSnapshot, tool: Mapping[str, Any]) -> Iterator[Finding]:
    name = str(tool.get("name", ""))
    shown = visible(name, 60)
    schema = tool.get("inputSchema")

    def finding(severity: Severity, field: str, message: str, evidence: str = "") -> Finding:
        return Finding(UNBOUNDED_SCHEMA.id, severity, f"tool {shown!r}: {message}",
                       server.at("tool", name, visible(field, 200)), evidence)

    if not isinstance(schema, Mapping):
        yield finding("low", "inputSchema", "has no input schema: any arguments are accepted")
        return
    if schema.get("type") != "object":
        yield finding("low", "inputSchema", "input schema is not an object schema",
                      visible(f"type: {schema.get('type')!r}", 80))
    elif schema.get("additionalProperties") is not False:
        yield finding("low", "inputSchema.additionalProperties",
                      "accepts undeclared arguments (additionalProperties is not false)")
    seen = 0
    for path, prop_name, prop, depth in _properties(schema, "inputSchema"):
        seen += 1
        if seen > _MAX_PARAMETERS:
            yield finding("low", "inputSchema", f"has more than {_MAX_PARAMETERS} parameters; the rest were not read")
            return
        raw = prop.get("description")
        description = raw if isinstance(raw, str) else ""
        is_sensitive, harmful = sensitive(prop_name, description)
        severity: Severity = "medium" if harmful else "low"
        label = visible(prop_name, 60)
        if depth > _MAX_DEPTH:
            yield finding("low", path, f"parameter {label!r} is nested deeper than {_MAX_DEPTH} levels; not read")
            continue
        if not any(key in prop for key in _TYPED):
            yield finding(severity, path, f"parameter {label!r} has no type: any value is accepted",
                          visible(description, 120))
            continue
        if _free_object(prop):
            yield finding(severity, path, f"parameter {label!r} is a free-form object (no properties, "
                          "additionalProperties not false)", visible(description, 120))
        items = prop.get("items")
        listed = "array" in _types(prop) and isinstance(items, Mapping) and _unbounded_string(items)
        if is_sensitive and (_unbounded_string(prop) or listed):
            what = f"{_what(prop_name, description)} string{' list' if listed else ''}"
            yield finding(severity, path, f"parameter {label!r} is a {what} with no maxLength, pattern, enum, const "
                          "or format", visible(description, 120))


def _what(name: str, description: str) -> str:
    for token in _tokens(name):
        if token in _SENSITIVE_TOKENS:
            return token
    m = _SENSITIVE_TEXT.search(description)
    return m.group().lower() if m else "sensitive"


def _types(schema: Mapping[str, Any]) -> set[str]:
    kind = schema.get("type")
    if isinstance(kind, str):
        return {kind}
    if isinstance(kind, Sequence):
        return {k for k in kind if isinstance(k, str)}
    return set()


def _free_object(schema: Mapping[str, Any]) -> bool:
    return ("object" in _types(schema) and not schema.get("properties") and not schema.get("patternProperties")
            and schema.get("additionalProperties") in (None, True, {}))


def _unbounded_string(schema: Mapping[str, Any]) -> bool:
    """A string (or a string branch of anyOf/oneOf) with none of the bounding keywords."""
    if any(key in schema for key in _STRING_BOUNDS):
        return False
    branches = [b for key in ("anyOf", "oneOf") for b in _seq(schema.get(key)) if isinstance(b, Mapping)]
    if any("string" in _types(b) and not any(k in b for k in _STRING_BOUNDS) for b in branches):
        return True
    return "string" in _types(schema)


def _seq(value: Any) -> list[Any]:
    return list(value) if isinstance(value, Sequence) and not isinstance(value, str | bytes) else []


def _properties(schema: Mapping[str, Any], root: str) -> Iterator[tuple[str, str, Mapping[str, Any], int]]:
    """Every property schema at any depth: (path, name, schema, depth). Array items count under their
    parameter's name; past ``_MAX_DEPTH`` a property is yielded once with its depth and not entered."""
    stack: list[tuple[Mapping[str, Any], str, int]] = [(schema, root, 0)]
    while stack:
        node, path, depth = stack.pop()
        properties = node.get("properties")
        if not isinstance(properties, Mapping):
            continue
        children = []
        for name, sub in properties.items():
            if not isinstance(sub, Mapping):
                continue
            child = f"{path}.properties.{name}"
            yield child, str(name), sub, depth + 1
            if depth + 1 > _MAX_DEPTH:
                continue
            children.append((sub, child, depth + 1))
            items = sub.get("items")
            if isinstance(items, Mapping) and "properties" in items:
                children.append((items, f"{child}.items", depth + 1))
        stack.extend(reversed(children))
