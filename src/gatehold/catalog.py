"""The aggregated catalogue: every upstream's tools, prompts and resources under one server.

Tools and prompts are namespaced (``<prefix><sep><name>``; the prefix defaults to the upstream's
name). Resources keep their URIs and are routed by them. A name (or URI) that two upstreams
expose is a collision: it is reported and served by neither, never silently overridden.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Any

from gatehold.call import Target

log = logging.getLogger("gatehold.catalog")

LIST_METHODS = {
    "tools": ("tools/list", "tools"),
    "prompts": ("prompts/list", "prompts"),
    "resources": ("resources/list", "resources"),
    "templates": ("resources/templates/list", "resourceTemplates"),
}


@dataclass(frozen=True, slots=True)
class Entry:
    target: Target
    definition: dict[str, Any]  # as the client sees it (exposed name)


@dataclass
class UpstreamListing:
    """What one upstream listed, per kind."""

    tools: list[dict[str, Any]] = field(default_factory=list)
    prompts: list[dict[str, Any]] = field(default_factory=list)
    resources: list[dict[str, Any]] = field(default_factory=list)
    templates: list[dict[str, Any]] = field(default_factory=list)


def template_regex(template: str) -> re.Pattern[str]:
    """A regex for an RFC 6570 URI template: each ``{expr}`` matches one or more characters."""
    parts = re.split(r"\{[^}]*\}", template)
    return re.compile(".+?".join(re.escape(p) for p in parts) + r"\Z", re.DOTALL)


class Catalog:
    def __init__(self, prefixes: dict[str, str], separator: str):
        self._prefixes = prefixes
        self._sep = separator
        self._listings: dict[str, UpstreamListing] = {}
        self.tools: dict[str, Entry] = {}
        self.prompts: dict[str, Entry] = {}
        self.resources: dict[str, Entry] = {}
        self.templates: list[tuple[re.Pattern[str], Entry]] = []
        self.collisions: list[str] = []

    def exposed(self, upstream: str, name: str) -> str:
        prefix = self._prefixes[upstream]
        return f"{prefix}{self._sep}{name}" if prefix else name

    def update(self, upstream: str, listing: UpstreamListing) -> list[str]:
        """Replace one upstream's listing and rebuild; returns the collisions found."""
        self._listings[upstream] = listing
        self._rebuild()
        return self.collisions

    def remove(self, upstream: str) -> None:
        self._listings.pop(upstream, None)
        self._rebuild()

    def _rebuild(self) -> None:
        collisions: list[str] = []
        tools = self._named("tool", "tools", collisions)
        prompts = self._named("prompt", "prompts", collisions)
        resources: dict[str, list[Entry]] = {}
        templates: list[tuple[re.Pattern[str], Entry]] = []
        for upstream, listing in self._listings.items():
            for res in listing.resources:
                uri = res.get("uri")
                if isinstance(uri, str):
                    target = Target("resource", f"{upstream}.{uri}", upstream, uri)
                    resources.setdefault(uri, []).append(Entry(target, res))
            for tpl in listing.templates:
                uri_t = tpl.get("uriTemplate")
                if isinstance(uri_t, str):
                    target = Target("resource", f"{upstream}.{uri_t}", upstream, uri_t)
                    templates.append((template_regex(uri_t), Entry(target, tpl)))
        self.tools, self.prompts = tools, prompts
        self.resources = self._unique("resource", resources, collisions)
        self.templates = templates
        if collisions:
            log.warning("name collisions (served by neither upstream): %s", "; ".join(collisions))
        self.collisions = collisions

    def _named(self, kind: str, attr: str, collisions: list[str]) -> dict[str, Entry]:
        found: dict[str, list[Entry]] = {}
        for upstream, listing in self._listings.items():
            for item in getattr(listing, attr):
                name = item.get("name")
                if not isinstance(name, str) or not name:
                    continue
                exposed = self.exposed(upstream, name)
                schema = item.get("inputSchema") if kind == "tool" else None
                target = Target(kind, exposed, upstream, name,  # type: ignore[arg-type]
                                schema if isinstance(schema, dict) else None)
                found.setdefault(exposed, []).append(Entry(target, {**item, "name": exposed}))
        return self._unique(kind, found, collisions)

    @staticmethod
    def _unique(kind: str, found: dict[str, list[Entry]], collisions: list[str]) -> dict[str, Entry]:
        unique: dict[str, Entry] = {}
        for key, entries in found.items():
            owners = sorted({e.target.upstream for e in entries})
            if len(entries) > 1:
                collisions.append(f"{kind} {key!r} exposed by {', '.join(owners)}")
                continue
            unique[key] = entries[0]
        return unique

    def resource_for(self, uri: str) -> Entry | None:
        """The one upstream serving ``uri``: listed exactly, or matched by exactly one template."""
        entry = self.resources.get(uri)
        if entry is not None:
            return entry
        matches = [e for rx, e in self.templates if rx.match(uri)]
        upstreams = {e.target.upstream for e in matches}
        if len(upstreams) != 1:
            return None  # none, or ambiguous between upstreams: route nowhere (fail closed)
        e = matches[0]
        return Entry(Target("resource", f"{e.target.upstream}.{uri}", e.target.upstream, uri), e.definition)
