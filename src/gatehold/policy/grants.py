"""Role and scope grants: which tools, prompts and resources a caller may see and use. Default deny.

OAuth scopes map to tools (``scopes: {"invoices:read": ["crm.get_*"]}``) and combine with role
grants according to ``auth.oauth.scope_mode``: ``both`` (a tool call needs a role grant and a
held scope that grants the tool), ``scopes`` (a held scope suffices; a role grant for the same
tool still supplies its argument constraints), or ``roles`` (scopes are ignored). Scope rules
apply only to callers whose credential carries scopes (``Caller.scopes is not None``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase
from functools import lru_cache

from gatehold.call import Caller
from gatehold.config import Role, ToolGrant

ScopeMode = str  # "both" | "scopes" | "roles", validated by the config model


@dataclass(frozen=True, slots=True)
class Grant:
    rule_id: str  # e.g. "roles.reader.tools[files.read_*]": where in the config the grant lives
    tool: ToolGrant


def _specificity(pattern: str) -> tuple[int, int]:
    is_glob = any(ch in pattern for ch in "*?[")
    return (0 if is_glob else 1, len(pattern))


class Grants:
    """Resolves grants for a caller's roles. Pure and cached: the answer depends only on the config."""

    def __init__(self, roles: Mapping[str, Role], scopes: Mapping[str, tuple[str, ...]] | None = None,
                 scope_mode: ScopeMode = "roles"):
        self._roles = dict(roles)
        self._scopes = dict(scopes or {})
        self.scope_mode = scope_mode
        self.for_tool = lru_cache(maxsize=65536)(self._for_tool)
        self.scopes_granting = lru_cache(maxsize=65536)(self._scopes_granting)
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

    def _scopes_granting(self, exposed: str) -> frozenset[str]:
        """Every configured scope one of whose patterns matches the tool."""
        return frozenset(scope for scope, patterns in self._scopes.items()
                         if any(fnmatchcase(exposed, p) for p in patterns))

    def _scoped(self, caller: Caller) -> bool:
        return caller.scopes is not None and self.scope_mode != "roles"

    def tool_grants(self, caller: Caller, exposed: str) -> tuple[Grant, ...]:
        """The grants that let this caller call the tool now; empty means deny."""
        by_role = self.for_tool(caller.roles, exposed)
        if not self._scoped(caller):
            return by_role
        assert caller.scopes is not None
        held = self.scopes_granting(exposed) & caller.scopes
        if not held:
            return ()
        if self.scope_mode == "both" or by_role:
            return by_role
        return (Grant(f"scopes[{min(held)}]", ToolGrant()),)

    def step_up_scopes(self, caller: Caller, exposed: str) -> tuple[str, ...]:
        """The scope a scope-limited caller should add to call the tool; empty when no scope would help.

        Several scopes may grant a tool (``tools:all`` and ``tools:math``); the challenge names only
        the narrowest (its matching pattern most specific, then the fewest patterns), because
        clients request every scope a challenge names and a step-up must not widen a token more
        than the call needs.
        """
        if not self._scoped(caller) or (self.scope_mode == "both" and not self.for_tool(caller.roles, exposed)):
            return ()
        granting = self.scopes_granting(exposed)
        if not granting:
            return ()

        def narrowness(scope: str) -> tuple[tuple[int, int], int]:
            patterns = self._scopes[scope]
            return max(_specificity(p) for p in patterns if fnmatchcase(exposed, p)), -len(patterns)

        return (max(sorted(granting), key=narrowness),)

    def tool_visible(self, caller: Caller, exposed: str) -> bool:
        """Listed in tools/list: callable now, or after a step-up the caller's roles allow."""
        return bool(self.tool_grants(caller, exposed) or self.step_up_scopes(caller, exposed))

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
