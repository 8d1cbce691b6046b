"""Data-flow labels of tools: from policy globs, tightened (never loosened) by the tool's annotations.

Labels say what a tool's output is (``untrusted`` third-party content, the user's ``private``
data) and what calling it does (``external_sink``: sends data or grants access outside;
``destructive``). Every matching glob adds its labels. Annotations come from the upstream, so they
may only add labels: ``openWorldHint: true`` adds ``untrusted`` (and ``external_sink`` unless the
tool also says ``readOnlyHint: true``); ``destructiveHint: true`` adds ``destructive`` unless the
tool says ``readOnlyHint: true``. Only annotations the upstream states count (``explicit``): the
protocol's defaults for absent hints would label every tool a destructive open-world sink.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from typing import Any

from gatehold.config import Label

Labels = frozenset[str]
NONE: Labels = frozenset()


class Labeller:
    def __init__(self, labels: Mapping[str, tuple[Label, ...]], *, annotations: bool = True):
        self._exact = {k: frozenset(v) for k, v in labels.items() if not _is_glob(k)}
        self._globs = [(k, frozenset(v)) for k, v in labels.items() if _is_glob(k)]
        self._annotations = annotations
        self._cache: dict[str, Labels] = {}

    def from_policy(self, exposed: str) -> Labels:
        cached = self._cache.get(exposed)
        if cached is not None:
            return cached
        found = set(self._exact.get(exposed, NONE))
        for pattern, labels in self._globs:
            if fnmatch.fnmatchcase(exposed, pattern):
                found |= labels
        result = frozenset(found)
        if len(self._cache) < 65_536:
            self._cache[exposed] = result
        return result

    def labels(self, exposed: str, annotations: Mapping[str, Any] | None) -> Labels:
        """Every label of ``exposed``: the policy's, plus what stated annotations add."""
        labels = self.from_policy(exposed)
        if not self._annotations or not annotations:
            return labels
        return labels | from_annotations(annotations)


def from_annotations(annotations: Mapping[str, Any]) -> Labels:
    read_only = annotations.get("readOnlyHint") is True
    added: set[str] = set()
    if annotations.get("openWorldHint") is True:
        added.add("untrusted")
        if not read_only:
            added.add("external_sink")
    if annotations.get("destructiveHint") is True and not read_only:
        added.add("destructive")
    return frozenset(added)


def _is_glob(pattern: str) -> bool:
    return any(ch in pattern for ch in "*?[")
