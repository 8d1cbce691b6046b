"""Metadata screening at list time: tool, prompt and resource definitions are data from the upstream.

Every ``description`` and ``title`` (top level, annotations, and anywhere inside the input and
output schemas) is sanitised before a client sees it. A definition is flagged when the detector
scores it as an injection, when hiding content was removed from it (tag characters, bidi
controls, terminal escapes, HTML comments or hidden elements: a description has no honest use for
them), or when its name carries hidden characters. With ``output.injection.metadata: quarantine``
a flagged definition is withheld from lists and its calls are refused until a human accepts it:
``output.accepted`` maps the exposed name to the SHA-256 of the definition as the upstream listed
it, so any later change is flagged again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from gatehold.config import OutputSettings
from gatehold.output.detect import InjectionDetector
from gatehold.output.sanitise import Sanitiser

_TEXT_KEYS = ("description", "title")
_HIDING = ("tag_chars", "bidi", "ansi", "html_comment", "hidden_html", "too_deep")
_KINDS = ("tools", "prompts", "resources", "templates")
_MAX_DEPTH = 32


def definition_digest(definition: dict[str, Any]) -> str:
    return "sha256:" + hashlib.sha256(orjson.dumps(definition, option=orjson.OPT_SORT_KEYS)).hexdigest()


@dataclass(frozen=True, slots=True)
class Flag:
    kind: str  # tools | prompts | resources | templates
    name: str  # the upstream's own name (or URI)
    exposed: str
    digest: str
    reason: str


@dataclass
class Screening:
    flagged: list[Flag] = field(default_factory=list)
    removed: dict[str, int] = field(default_factory=dict)


class MetadataScreen:
    def __init__(self, settings: OutputSettings, detector: InjectionDetector):
        self._settings = settings
        self._sanitiser = Sanitiser(settings.allowed_link_hosts)
        self._detector = detector

    def screen(self, items: dict[str, list[dict[str, Any]]], exposed: Callable[[str, str], str]) -> Screening:
        """Sanitise ``items`` (kind -> definitions) in place; return what was flagged, and whether withheld.

        ``exposed(kind, name)`` gives the client-facing name. Flagged definitions that are not
        accepted are removed from ``items`` under ``metadata: quarantine``; under ``annotate`` they
        stay with a warning in front of their description.
        """
        mode = self._settings.injection.metadata
        report = Screening()
        for kind in _KINDS:
            kept = []
            for definition in items.get(kind, []):
                name = str(definition.get("uri" if kind == "resources" else "uriTemplate" if kind == "templates"
                                          else "name", ""))
                digest = definition_digest(definition)
                cleaned, removed = self._clean(definition) if self._settings.sanitise else (definition, {})
                for key, count in removed.items():
                    report.removed[key] = report.removed.get(key, 0) + count
                reason = self._reason(definition, cleaned, removed, kind) if mode != "off" else None
                shown = exposed(kind, name)
                if reason is not None and self._settings.accepted.get(shown) != digest:
                    report.flagged.append(Flag(kind, name, shown, digest, reason))
                    if mode == "quarantine":
                        continue
                    text = cleaned.get("description")
                    warning = f"[gatehold: this definition was flagged: {reason}]"
                    cleaned = {**cleaned, "description": f"{warning} {text}" if isinstance(text, str) else warning}
                kept.append(cleaned)
            if kind in items:
                items[kind] = kept
        return report

    def _reason(self, raw: dict[str, Any], cleaned: dict[str, Any], removed: dict[str, int], kind: str) -> str | None:
        hiding = sorted(k for k in removed if k in _HIDING)
        if hiding:
            return f"hidden content in metadata ({', '.join(hiding)})"
        name = raw.get("name")
        if isinstance(name, str) and self._sanitiser.clean(name).changed:
            return "hidden characters in the name"
        finding = self._detector.scan_metadata(cleaned)
        if finding.flagged:
            return f"suspected injection: {finding.explain()}"
        return None

    def _clean(self, definition: dict[str, Any]) -> tuple[dict[str, Any], dict[str, int]]:
        removed: dict[str, int] = {}
        return self._walk(definition, removed, 0), removed

    def _walk(self, node: Any, removed: dict[str, int], depth: int) -> Any:
        if depth > _MAX_DEPTH:
            # Fail closed: a definition too deep to read is flagged, not passed unread.
            removed["too_deep"] = 1
            return node
        if isinstance(node, list):
            return [self._walk(item, removed, depth + 1) for item in node]
        if not isinstance(node, dict):
            return node
        out: dict[str, Any] = {}
        for key, value in node.items():
            if key in _TEXT_KEYS and isinstance(value, str):
                cleaned = self._sanitiser.clean(value)
                for kind, count in cleaned.removed.items():
                    removed[kind] = removed.get(kind, 0) + count
                out[key] = cleaned.text
            else:
                out[key] = self._walk(value, removed, depth + 1)
        return out
