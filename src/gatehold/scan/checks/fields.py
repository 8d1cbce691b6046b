"""What the text checks read in a definition: its text fields, its input parameters, and safe excerpts.

:func:`text_fields` lists every string of a tool, prompt, resource or template definition that a
model reads, with a dotted path for the finding's location. It builds on the injection detector's
:func:`gatehold.output.detect.metadata_fields` (the same fields the gateway screens at list time:
``name``, ``title``, ``description``, ``annotations.title``, prompt ``arguments[i].*``, and every
non-structural string inside ``inputSchema``/``outputSchema``), adds the ``uri`` of a resource and
the ``uriTemplate`` of a template, and sorts each field into one of three kinds:

* ``name``: an identifier (the definition's name, a prompt argument's name, a schema property's name,
  a URI);
* ``prose``: a ``description`` or ``title``, anywhere;
* ``value``: any other string a schema carries (``default``, ``examples``, ``enum``, ``const``,
  vendor keys).

:func:`parameters` lists the top-level inputs of a tool (schema properties) or prompt (arguments),
each with its description; where the schema gives none, the ``Args:`` section of the tool's own
description stands in (Python MCP frameworks publish a function's docstring as the description and
its ``Args:`` text nowhere else).

:func:`visible` makes any text safe to show in a finding: hidden and control characters become
``<U+XXXX>`` escapes and the text is cut to a bound.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from gatehold.output.detect import MAX_METADATA_DEPTH, MAX_METADATA_NODES, metadata_fields

__all__ = [
    "FieldKind",
    "Parameter",
    "TextField",
    "docstring_args",
    "exceeds_bounds",
    "field_at",
    "parameters",
    "text_fields",
    "visible",
]

FieldKind = Literal["name", "prose", "value"]
_NAME_SUFFIX = " (name)"
_PROSE_KEYS = frozenset({"description", "title"})


@dataclass(frozen=True, slots=True)
class TextField:
    path: str  # e.g. "description", "inputSchema.properties.path.description", "arguments[0].name"
    kind: FieldKind
    value: str


@dataclass(frozen=True, slots=True)
class Parameter:
    """One top-level input of a tool or prompt."""

    name: str
    path: str  # "inputSchema.properties.<name>" or "arguments[<i>]"
    schema: Mapping[str, Any]  # the property's schema; empty for prompt arguments
    required: bool
    description: str  # the schema's description, else the Args: text of the definition's description
    title: str


def text_fields(definition: Mapping[str, Any]) -> tuple[TextField, ...]:
    """Every string of ``definition`` a model reads, in the detector's order, then ``uri``/``uriTemplate``."""
    out: list[TextField] = []
    for path, detector_kind, value in metadata_fields(definition):
        if detector_kind == "name" or path.endswith(_NAME_SUFFIX):
            out.append(TextField(path.removesuffix(_NAME_SUFFIX), "name", value))
        elif path == "name" or path.endswith("].name"):
            out.append(TextField(path, "name", value))
        elif _last_key(path) in _PROSE_KEYS:
            out.append(TextField(path, "prose", value))
        else:
            out.append(TextField(path, "value", value))
    if isinstance(definition, Mapping):
        for key in ("uri", "uriTemplate"):
            identifier = definition.get(key)
            if isinstance(identifier, str):
                out.append(TextField(key, "name", identifier))
    return tuple(out)


def _last_key(path: str) -> str:
    """The last key of a dotted path, list indexes dropped: ``a.enum[2]`` -> ``enum``."""
    return re.sub(r"\[\d+\]$", "", path.rpartition(".")[2])


def field_at(definition: Mapping[str, Any], offset: int) -> str | None:
    """The path of the field that ``offset`` of :func:`gatehold.output.detect.metadata_text` lies in.

    The detector reports metadata hits as offsets into that text: one ``<path>: <value>`` line per
    field, in :func:`metadata_fields` order.
    """
    position = 0
    for path, _kind, value in metadata_fields(definition):
        end = position + len(path) + 2 + len(value) + 1
        if offset < end:
            return path.removesuffix(_NAME_SUFFIX)
        position = end
    return None


def exceeds_bounds(definition: Mapping[str, Any]) -> bool:
    """Whether ``definition`` is nested deeper or holds more nodes than :func:`metadata_fields` reads.

    Such a definition is not read whole by any text check, so the scan must say so (fail closed).
    """
    stack: list[tuple[Any, int]] = [(definition, 0)]
    seen: set[int] = set()
    nodes = 0
    while stack:
        node, depth = stack.pop()
        nodes += 1
        if nodes > MAX_METADATA_NODES or depth > MAX_METADATA_DEPTH:
            return True
        if isinstance(node, Mapping | list) and id(node) not in seen:
            seen.add(id(node))
            values = node.values() if isinstance(node, Mapping) else node
            stack.extend((value, depth + 1) for value in values)
    return False


# "Args:" / "Arguments:" / "Parameters:" then indented "name: text" or "name (type): text" lines, each
# possibly continued on further, deeper-indented lines. Sections end at a line indented no deeper
# than the header.
_SECTION = re.compile(r"^(?P<indent>[ \t]*)(?:args|arguments|parameters|params)[ \t]*:[ \t]*$", re.I | re.M)
_ARG_LINE = re.compile(r"^(?P<indent>[ \t]+)(?P<name>[A-Za-z_][\w-]*)\s*(?:\([^)\n]*\))?\s*:\s?(?P<text>.*)$")


def docstring_args(description: str) -> dict[str, str]:
    """The parameter descriptions of an ``Args:`` section in a docstring-style description."""
    found: dict[str, str] = {}
    for section in _SECTION.finditer(description):
        header_indent = len(section["indent"].expandtabs())
        current: str | None = None
        arg_indent = 0
        for line in description[section.end():].split("\n")[1:]:
            if not line.strip():
                current = None
                continue
            indent = len(line) - len(line.lstrip())
            if indent <= header_indent:
                break
            m = _ARG_LINE.match(line)
            if m is not None and (current is None or len(m["indent"].expandtabs()) <= arg_indent):
                current = m["name"]
                arg_indent = len(m["indent"].expandtabs())
                found.setdefault(current, m["text"].strip())
            elif current is not None and indent > arg_indent:
                found[current] = f"{found[current]} {line.strip()}".strip()
    return found


def parameters(definition: Mapping[str, Any]) -> tuple[Parameter, ...]:
    """The top-level inputs of a tool (``inputSchema.properties``) or a prompt (``arguments``)."""
    description = definition.get("description")
    from_docstring = docstring_args(description) if isinstance(description, str) else {}
    out: list[Parameter] = []
    schema = definition.get("inputSchema")
    if isinstance(schema, Mapping):
        properties = schema.get("properties")
        required = schema.get("required")
        required_names = {str(n) for n in required} if isinstance(required, Sequence) and not isinstance(
            required, str) else set()
        if isinstance(properties, Mapping):
            for name, sub in properties.items():
                prop = sub if isinstance(sub, Mapping) else {}
                text = prop.get("description")
                title = prop.get("title")
                out.append(Parameter(
                    name=str(name), path=f"inputSchema.properties.{name}", schema=prop,
                    required=str(name) in required_names,
                    description=text if isinstance(text, str) else from_docstring.get(str(name), ""),
                    title=title if isinstance(title, str) else ""))
    arguments = definition.get("arguments")
    if isinstance(arguments, Sequence) and not isinstance(arguments, str | bytes):
        for i, argument in enumerate(arguments):
            if not isinstance(argument, Mapping) or not isinstance(argument.get("name"), str):
                continue
            text = argument.get("description")
            title = argument.get("title")
            out.append(Parameter(
                name=argument["name"], path=f"arguments[{i}]", schema={}, required=argument.get("required") is True,
                description=text if isinstance(text, str) else "", title=title if isinstance(title, str) else ""))
    return tuple(out)


def _hidden(char: str) -> bool:
    """Characters a reader does not see as themselves: controls, format characters, separators, tags,
    variation selectors, and the fillers that render blank."""
    if char in "\t\n\r":
        return False
    category = unicodedata.category(char)
    if category in ("Cc", "Cf", "Co", "Cs", "Cn", "Zl", "Zp"):
        return True
    if category == "Zs" and char != " ":
        return True
    code = ord(char)
    return (0xFE00 <= code <= 0xFE0F or 0xE0100 <= code <= 0xE01EF or code in (0x034F, 0x115F, 0x1160, 0x17B4,
                                                                                    0x17B5, 0x3164, 0xFFA0))


def visible(text: str, limit: int = 120) -> str:
    """``text`` on one line with hidden characters written as ``<U+XXXX>``, cut to about ``limit``
    characters (ending in ``…`` when cut). Tabs and line breaks become spaces."""
    out: list[str] = []
    size = 0
    for char in text:
        if char in "\t\n\r":
            piece = " "
        elif _hidden(char):
            piece = f"<U+{ord(char):04X}>"
        else:
            piece = char
        if size + len(piece) > limit:
            out.append("…")
            break
        out.append(piece)
        size += len(piece)
    return "".join(out)
