"""Role grants: which tools, prompts and resources a caller may see and use. Default deny."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase
from functools import lru_cache

from gatehold.config import Role, ToolGrant


@dataclass(frozen=True, slots=True)
class Grant:
    rule_id: str  # e.g. "roles.reader.tools[files.read_*]": where in the config the grant lives
    tool: ToolGrant


def _specificity(pattern: str) -> tuple[int, int]:
    is_glob = any(ch in pattern for ch in "*?[")
    return (0 if is_glob else 1, len(pattern))


class Grants:
    """Resolves grants for a caller's roles. Pure and cached: the answer depends only on the config."""

    def __init__(self, roles: Mapping[str, Role]):
        self._roles = dict(roles)
        self.for_tool = lru_cache(maxsize=65536)(self._for_tool)
        self.prompt_rule = lru_cache(maxsize=65536)(self._prompt_rule)
        self.resource_rule = lru_cache(maxsize=65536)(self._resource_rule)

    def _for_tool(self, roles: tuple[str, ...], exposed: str) -> tuple[Grant, ...]:
        """Per role, the most specific pattern that matches (exact name over globs, longer globs first).

        A call is allowed when any returned grant accepts it. An empty tuple means no role grants the
        tool: the default is deny.
        """
        found: list[Grant] = []
        for role_name in roles:
            role = self._roles.get(role_name)
            if role is None:
                continue  # an unknown role grants nothing
            matches = [p for p in role.tools if fnmatchcase(exposed, p)]
            if matches:
                best = max(matches, key=_specificity)
                found.append(Grant(f"roles.{role_name}.tools[{best}]", role.tools[best]))
        return tuple(found)

    def _first(self, roles: tuple[str, ...], key: str, kind: str) -> str | None:
        for role_name in roles:
            role = self._roles.get(role_name)
            if role is None:
                continue
            patterns: tuple[str, ...] = role.prompts if kind == "prompts" else role.resources
            for pattern in patterns:
                if fnmatchcase(key, pattern):
                    return f"roles.{role_name}.{kind}[{pattern}]"
        return None

    def _prompt_rule(self, roles: tuple[str, ...], exposed: str) -> str | None:
        return self._first(roles, exposed, "prompts")

    def _resource_rule(self, roles: tuple[str, ...], key: str) -> str | None:
        return self._first(roles, key, "resources")
