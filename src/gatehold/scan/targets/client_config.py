"""MCP client configuration files: the servers an agent is set up to start or reach.

Shapes read (by extension: ``.toml`` is TOML, ``.yaml``/``.yml`` YAML, anything else JSON with
``//`` and ``/* */`` comments and trailing commas allowed, as VS Code and Zed write them):

* JSON ``{"mcpServers": {name: {command, args, env, cwd, url | httpUrl | serverUrl, type, headers}}}``:
  Claude Desktop, Cursor, Windsurf, Gemini CLI, Cline, Claude Code's project ``.mcp.json``;
* JSON ``{"servers": {...}}`` (VS Code ``mcp.json``) and ``{"mcp": {"servers": {...}}}`` (VS Code
  ``settings.json``);
* JSON ``{"context_servers": {name: {"command": {path, args, env}} | {command, args, env} | {url}}}`` (Zed;
  an extension-provided server declares no command, so how it starts is unknown);
* Claude Code's ``~/.claude.json``: ``mcpServers`` at the top level, and per project under
  ``projects.<dir>.mcpServers``; a project's server is named ``<name>@<dir>`` so that names stay
  unique within the file;
* TOML ``[mcp_servers.<name>]`` with command, args, env, cwd, url, http_headers (Codex ``config.toml``);
* YAML ``mcpServers:`` as a list of ``{name, command, args, env, url}`` or a mapping by name (Continue).

Values are kept as written (``${VAR}`` placeholders are not expanded; values may be secrets: the
report must redact them). A server marked disabled is still returned: it is still on disk.
Unknown keys are ignored (every client adds its own), but a key the scanner reads must have the
right type, or the file is refused with a :class:`TargetError` that says where.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NoReturn

import yaml

from gatehold.scan.model import ConfigText, Launch, ServerSnapshot
from gatehold.scan.targets.errors import TargetError
from gatehold.scan.targets.tools_json import kind_of, read_text

URL_KEYS = ("url", "httpUrl", "serverUrl")
JSON_SECTIONS = "mcpServers, servers, mcp.servers, context_servers or projects.<dir>.mcpServers"

Path_ = tuple[str, ...]


def load(path: str, *, allow_empty: bool = False) -> tuple[list[ServerSnapshot], ConfigText]:
    """The servers a client configuration declares (``source="client-config"``, not listed).

    A file with no MCP section at all is an error unless ``allow_empty`` (set for discovered
    files, where an editor's settings without MCP servers is normal).
    """
    text = read_text(path)
    suffix = Path(path).suffix.lower()
    if suffix == ".toml":
        servers = _from_toml(path, text, allow_empty)
    elif suffix in (".yaml", ".yml"):
        servers = _from_yaml(path, text, allow_empty)
    else:
        servers = _from_json(path, text, allow_empty)
    return servers, ConfigText(path, "client", text)


# -- JSON (with comments) -------------------------------------------------------------------


def _from_json(path: str, text: str, allow_empty: bool) -> list[ServerSnapshot]:
    try:
        cleaned = strip_jsonc(text)
        data = json.loads(cleaned)
    except JsoncError as exc:
        raise TargetError(f"{path}: not valid JSON: {exc.message} (line {exc.line}, column {exc.column})") from None
    except json.JSONDecodeError as exc:
        raise TargetError(f"{path}: not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})") from None
    if not isinstance(data, dict):
        raise TargetError(f"{path}: expected a JSON object at the top level, found {kind_of(data)}")
    lines = json_key_lines(cleaned)
    builder = _Builder(path, lines)
    found = False
    for key in ("mcpServers", "servers"):
        if key in data:
            found = True
            builder.section(data[key], (key,))
    mcp = data.get("mcp")
    if isinstance(mcp, dict) and "servers" in mcp:
        found = True
        builder.section(mcp["servers"], ("mcp", "servers"))
    if "context_servers" in data:
        found = True
        builder.section(data["context_servers"], ("context_servers",), zed=True)
    projects = data.get("projects")
    if isinstance(projects, dict):
        for directory, project in projects.items():
            if isinstance(project, dict) and "mcpServers" in project:
                found = True
                builder.section(project["mcpServers"], ("projects", directory, "mcpServers"), suffix=f"@{directory}")
    if not found and not allow_empty:
        raise TargetError(f"{path}: no MCP servers found: expected a {JSON_SECTIONS} section")
    return builder.servers


class JsoncError(ValueError):
    def __init__(self, message: str, line: int, column: int):
        super().__init__(message)
        self.message, self.line, self.column = message, line, column


def strip_jsonc(text: str) -> str:
    """``text`` with comments and trailing commas blanked out (outside strings only).

    Every removed character becomes a space and newlines stay, so line and column numbers in a
    JSON error still point into the file as written.
    """
    out = list(text)
    i, n = 0, len(text)
    in_string = False
    comma = -1  # a comma with only whitespace after it so far
    while i < n:
        c = text[i]
        if in_string:
            if c == "\\":
                i += 2
                continue
            if c == '"':
                in_string = False
            i += 1
            continue
        if c == "/" and i + 1 < n and text[i + 1] in "/*":
            if text[i + 1] == "/":
                end = text.find("\n", i)
                end = n if end == -1 else end
            else:
                close = text.find("*/", i + 2)
                if close == -1:
                    line = text.count("\n", 0, i) + 1
                    raise JsoncError("unterminated /* comment", line, i - text.rfind("\n", 0, i))
                end = close + 2
            for j in range(i, end):
                if out[j] != "\n":
                    out[j] = " "
            i = end
            continue
        if c == '"':
            in_string = True
            comma = -1
        elif c == ",":
            comma = i
        elif c in "]}":
            if comma >= 0:
                out[comma] = " "
            comma = -1
        elif not c.isspace():
            comma = -1
        i += 1
    return "".join(out)


def json_key_lines(text: str) -> dict[Path_, int]:
    """The 1-based line of every object key in a JSON text, by its path (array items are ``"[]"``).

    The first occurrence of a path wins. ``text`` must be plain JSON (comments already blanked).
    """
    found: dict[Path_, int] = {}
    containers: list[str] = []
    path: list[str] = []
    keys: list[str | None] = []
    key: str | None = None
    i, n, line = 0, len(text), 1
    while i < n:
        c = text[i]
        if c == "\n":
            line += 1
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            k = j + 1
            while k < n and text[k] in " \t\r\n":
                k += 1
            if k < n and text[k] == ":" and containers and containers[-1] == "{":
                try:
                    key = str(json.loads(text[i:j + 1]))
                except json.JSONDecodeError:
                    key = text[i + 1:j]
                found.setdefault((*path, key), line)
            i = j + 1
            continue
        elif c in "{[":
            if containers:
                path.append((key or "") if containers[-1] == "{" else "[]")
            containers.append(c)
            keys.append(key)
            key = None
        elif c in "}]" and containers:
            containers.pop()
            key = keys.pop()
            if containers:
                path.pop()
        i += 1
    return found


# -- TOML (Codex) ------------------------------------------------------------------------------

_TOML_TABLE = re.compile(r"""^\s*\[\s*mcp_servers\s*\.\s*(?:"((?:[^"\\]|\\.)*)"|'([^']*)'|([A-Za-z0-9_-]+))\s*\]""")


def _from_toml(path: str, text: str, allow_empty: bool) -> list[ServerSnapshot]:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise TargetError(f"{path}: not valid TOML: {exc}") from None
    lines: dict[Path_, int] = {}
    for number, row in enumerate(text.splitlines(), start=1):
        match = _TOML_TABLE.match(row)
        if match:
            name = match.group(1) if match.group(1) is not None else match.group(2) or match.group(3)
            lines.setdefault(("mcp_servers", name), number)
    builder = _Builder(path, lines)
    if "mcp_servers" in data:
        builder.section(data["mcp_servers"], ("mcp_servers",))
    elif not allow_empty:
        raise TargetError(f"{path}: no MCP servers found: expected [mcp_servers.<name>] tables")
    return builder.servers


# -- YAML (Continue) ---------------------------------------------------------------------------


def _from_yaml(path: str, text: str, allow_empty: bool) -> list[ServerSnapshot]:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise TargetError(f"{path}: not valid YAML: {_yaml_problem(exc)}") from None
    if not isinstance(data, dict):
        raise TargetError(f"{path}: expected a YAML mapping at the top level, found {kind_of(data)}")
    lines: dict[Path_, int] = {}
    if node is not None:
        yaml_key_lines(node, (), lines)
    builder = _Builder(path, lines)
    if "mcpServers" in data:
        builder.section(data["mcpServers"], ("mcpServers",))
    elif not allow_empty:
        raise TargetError(f"{path}: no MCP servers found: expected an mcpServers section")
    return builder.servers


def yaml_key_lines(node: yaml.Node, path: Path_, found: dict[Path_, int]) -> None:
    """Lines of mapping keys and sequence items (items by index) of a composed YAML document."""
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = str(key_node.value)
            found.setdefault((*path, key), key_node.start_mark.line + 1)
            yaml_key_lines(value_node, (*path, key), found)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            found.setdefault((*path, str(index)), item.start_mark.line + 1)
            yaml_key_lines(item, (*path, str(index)), found)


def _yaml_problem(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or type(exc).__name__
    if mark is not None:
        return f"{problem} (line {mark.line + 1}, column {mark.column + 1})"
    return str(problem)


# -- entries -----------------------------------------------------------------------------------


class _Builder:
    """Turns one file's server sections into snapshots, checking the types of what it reads."""

    def __init__(self, path: str, lines: Mapping[Path_, int]):
        self.path = path
        self.lines = lines
        self.servers: list[ServerSnapshot] = []
        self._where: dict[str, str] = {}

    def section(self, value: Any, at: Path_, *, zed: bool = False, suffix: str = "") -> None:
        dotted = ".".join(at)
        if isinstance(value, dict):
            for name, entry in value.items():
                self.add(str(name), entry, (*at, str(name)), zed=zed, suffix=suffix)
        elif isinstance(value, list):
            for index, entry in enumerate(value):
                if not isinstance(entry, dict):
                    self.fail(f"{dotted}[{index}]", f"must be an object, found {kind_of(entry)}")
                name = entry.get("name", entry.get("uses"))
                if not isinstance(name, str) or not name:
                    self.fail(f"{dotted}[{index}]", "needs a non-empty string \"name\"")
                self.add(name, entry, (*at, str(index)), zed=zed, suffix=suffix, listed_at=f"{dotted}[{index}]")
        elif value is not None:
            self.fail(dotted, f"must be an object of servers by name, found {kind_of(value)}")

    def add(self, name: str, entry: Any, at: Path_, *, zed: bool, suffix: str, listed_at: str | None = None) -> None:
        where = listed_at or ".".join(at)
        if not name:
            self.fail(where, "a server name is empty")
        if not isinstance(entry, dict):
            self.fail(where, f"a server entry must be an object, found {kind_of(entry)}")
        full = name + suffix
        if full in self._where:
            self.fail(where, f"server {full!r} is already defined at {self._where[full]}")
        self._where[full] = where
        launch = self.launch(where, entry, zed=zed)
        line = self.lines.get(at)
        self.servers.append(ServerSnapshot(name=full, source="client-config", launch=launch, file=self.path,
                                           line=line))

    def launch(self, where: str, entry: Mapping[str, Any], *, zed: bool) -> Launch | None:
        command: Any = entry.get("command")
        args: Any = entry.get("args")
        env: Any = entry.get("env")
        if zed and isinstance(command, dict):  # Zed's older form: {"command": {"path", "args", "env"}}
            inner = command
            command, args, env = inner.get("path"), inner.get("args"), inner.get("env")
            where = f"{where}.command"
        argv: tuple[str, ...] = ()
        if isinstance(command, list):  # some clients write the whole argv as a list
            argv = self.strings(where, "command", command)
            if not argv:
                self.fail(where, "\"command\" is an empty list")
        elif command is not None:
            if not isinstance(command, str):
                self.fail(where, f"\"command\" must be a string, found {kind_of(command)}")
            if not command.strip():
                self.fail(where, "\"command\" is empty")
            argv = (command,)
        if args is not None:
            if not isinstance(args, list):
                self.fail(where, f"\"args\" must be a list of strings, found {kind_of(args)}")
            argv = (*argv, *self.strings(where, "args", args)) if argv else ()
        url = None
        for key in URL_KEYS:
            if entry.get(key) is not None:
                url = entry[key]
                if not isinstance(url, str) or not url.strip():
                    self.fail(where, f"{key!r} must be a non-empty string, found {kind_of(url)}")
                break
        headers = self.mapping(where, "headers", entry.get("headers", entry.get("http_headers")))
        cwd = entry.get("cwd")
        if cwd is not None and not isinstance(cwd, str):
            self.fail(where, f"\"cwd\" must be a string, found {kind_of(cwd)}")
        kind = entry.get("type")
        if kind is not None and not isinstance(kind, str):
            self.fail(where, f"\"type\" must be a string, found {kind_of(kind)}")
        if not argv and url is None:
            return None  # e.g. an editor extension's server: how it starts is not in this file
        return Launch(command=argv, env=self.mapping(where, "env", env), url=url, headers=headers, cwd=cwd)

    def strings(self, where: str, key: str, values: list[Any]) -> tuple[str, ...]:
        for index, value in enumerate(values):
            if not isinstance(value, str):
                self.fail(where, f"\"{key}\" must be a list of strings; item {index} is {kind_of(value)}")
        return tuple(values)

    def mapping(self, where: str, key: str, value: Any) -> dict[str, str]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.fail(where, f"\"{key}\" must be an object of strings, found {kind_of(value)}")
        for name, item in value.items():
            if not isinstance(item, str):
                self.fail(where, f"\"{key}.{name}\" must be a string, found {kind_of(item)}")
        return {str(name): item for name, item in value.items()}

    def fail(self, where: str, problem: str) -> NoReturn:
        raise TargetError(f"{self.path}: {where}: {problem}")

