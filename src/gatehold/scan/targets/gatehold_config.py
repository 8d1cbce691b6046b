"""A ``gatehold.yaml``: each upstream of the gateway is a server of the scan.

The file is validated with the gateway's own loader, so the scan refuses exactly what
``gatehold check`` refuses. An upstream's snapshot carries how the gateway starts or reaches it:

* ``launch.env`` maps each variable to the *reference* of the secret the gateway injects (for
  ``env: {API_TOKEN: crm_token}`` with ``secrets: {crm_token: env:CRM_TOKEN}`` the value is
  ``env:CRM_TOKEN``), never to a secret's value: the scanner does not resolve secrets;
* ``labels`` are the policy's ``labels:`` entries for this upstream's tools, keyed by the tool
  part of the exposed name. Labels are written against exposed names (``<prefix><sep><tool>``),
  and which tools an upstream has is only known by connecting, so the map is kept as globs: an
  entry whose part before the separator matches the upstream's prefix contributes its part after
  the separator (``crm.delete_*`` gives ``delete_*`` for upstream ``crm``; ``*.send`` gives
  ``send`` for every upstream; a bare ``*`` gives ``*``; other entries without a separator are
  left out). With an empty prefix every entry applies as written. A key may
  therefore be a glob; match tool names against it with ``fnmatch.fnmatchcase``.
"""

from __future__ import annotations

import fnmatch
import json
import re
from pathlib import Path
from typing import Any, Literal

import yaml

from gatehold.config import Config, HttpUpstream, StdioUpstream, load_config
from gatehold.errors import ConfigError
from gatehold.scan.model import ConfigText, Launch, ServerSnapshot
from gatehold.scan.targets.errors import TargetError
from gatehold.scan.targets.tools_json import kind_of, read_text

CLIENT_KEYS = ("mcpServers", "servers", "mcp", "context_servers", "projects", "mcp_servers")


def detect_kind(path: str) -> Literal["client", "gatehold"]:
    """Which loader reads ``path``: a gatehold.yaml has ``upstreams``, a client config its server section.

    ``.json``/``.jsonc``/``.toml`` files are client configurations. A YAML file (or one with another
    extension that parses as YAML) is a gatehold configuration when it has ``upstreams`` and a
    client configuration when it has ``mcpServers``; anything else is a TargetError.
    """
    suffix = Path(path).suffix.lower()
    if suffix in (".json", ".jsonc", ".toml"):
        return "client"
    text = read_text(path)
    if suffix not in (".yaml", ".yml"):
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError:
            parsed = None
        if isinstance(parsed, dict):
            return "client"
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        if suffix in (".yaml", ".yml"):
            raise TargetError(f"{path}: not valid YAML, so neither a gatehold configuration nor a client "
                              "configuration") from None
        data = None
    if isinstance(data, dict):
        if "upstreams" in data:
            return "gatehold"
        if any(key in data for key in CLIENT_KEYS):
            return "client"
    raise TargetError(f"{path}: not a configuration the scanner reads: expected a gatehold.yaml (with "
                      "`upstreams:`) or an MCP client configuration (with `mcpServers`, `servers`, "
                      f"`context_servers` or `[mcp_servers.*]`); found {kind_of(data)}"
                      f"{' without either key' if isinstance(data, dict) else ''}")


def load(path: str) -> tuple[list[ServerSnapshot], ConfigText]:
    """One snapshot per upstream (``source="gatehold-config"``, not listed), and the file's text."""
    text = read_text(path)
    try:
        loaded = load_config(path)
    except ConfigError as exc:
        shown = "; ".join(exc.problems[:5]) + (f"; and {len(exc.problems) - 5} more" if len(exc.problems) > 5 else "")
        raise TargetError(f"{path}: invalid gatehold configuration: {shown}") from None
    config = loaded.config
    lines = upstream_lines(text)
    servers = []
    for name, upstream in config.upstreams.items():
        servers.append(ServerSnapshot(name=name, source="gatehold-config", launch=launch_of(config, upstream),
                                      file=path, line=lines.get(name), labels=labels_for(config, name)))
    return servers, ConfigText(path, "gatehold", text)


def launch_of(config: Config, upstream: StdioUpstream | HttpUpstream) -> Launch:
    if isinstance(upstream, StdioUpstream):
        env = {var: config.secrets.get(ref, ref) for var, ref in upstream.env.items()}
        return Launch(command=tuple(upstream.command), env=env, cwd=upstream.cwd)
    return Launch(url=upstream.url, headers=dict(upstream.headers))


def labels_for(config: Config, upstream: str) -> dict[str, tuple[str, ...]]:
    """The policy's labels that can apply to ``upstream``'s tools, keyed by tool name or glob."""
    prefix = config.prefix_of(upstream)
    separator = config.gateway.namespace_separator
    found: dict[str, list[str]] = {}
    for pattern, labels in config.labels.items():
        if not prefix:
            tool: str | None = pattern
        else:
            head, sep, tail = pattern.partition(separator)
            if sep:
                tool = tail if tail and fnmatch.fnmatchcase(prefix, head) else None
            else:
                tool = "*" if pattern.strip("*") == "" else None  # "*" labels every tool of every upstream
        if tool is not None:
            merged = found.setdefault(tool, [])
            merged.extend(label for label in labels if label not in merged)
    return {tool: tuple(labels) for tool, labels in found.items()}


_TOP_KEY = re.compile(r"^(\S[^:#]*?)\s*:")
_UPSTREAM_KEY = re.compile(r"""^(\s+)(?:"((?:[^"\\]|\\.)*)"|'([^']*)'|([^\s:#'"][^:#]*?))\s*:""")


def upstream_lines(text: str) -> dict[str, int]:
    """The 1-based line of each upstream's key under ``upstreams:`` (block-style YAML; best effort)."""
    found: dict[str, int] = {}
    inside, indent = False, None
    for number, row in enumerate(text.splitlines(), start=1):
        if not row.strip() or row.lstrip().startswith("#"):
            continue
        top = _TOP_KEY.match(row)
        if top is not None:
            inside, indent = top.group(1).strip("'\"") == "upstreams", None
            continue
        match = _UPSTREAM_KEY.match(row) if inside else None
        if match is None:
            continue
        if indent is None:
            indent = len(match.group(1))
        if len(match.group(1)) == indent:
            name: Any = next(g for g in match.groups()[1:] if g is not None)
            found.setdefault(str(name), number)
    return found
