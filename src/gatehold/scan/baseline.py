"""Baselines: findings a team has reviewed and accepted, each with a reason, in a committed YAML file.

::

    version: 1
    accepted:
      - fingerprint: "<Finding.fingerprint>"
        check: unbounded-schema        # must match the finding's check id
        location: files.read_file      # Location.qualified_name, for the reader
        reason: "paths are confined by the gateway's path_within constraint"   # required
        expires: 2027-06-30            # optional; from that day on the entry no longer suppresses

A finding whose fingerprint is accepted (and whose check agrees, when the entry names one) moves to
``ScanReport.suppressed`` with the entry's reason. Anything malformed in the file is a
:class:`BaselineError` naming the file and the entry, never a traceback and never a silently
ignored entry: a baseline that cannot be read must not hide findings, nor be mistaken for empty.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import yaml

from gatehold.scan.files import replace_atomically
from gatehold.scan.model import Finding, Suppressed

VERSION = 1
_TOP_KEYS = frozenset({"version", "accepted"})
_ENTRY_KEYS = frozenset({"fingerprint", "check", "location", "reason", "expires"})
_FINGERPRINT = re.compile(r"[0-9a-f]{16,64}")
_HEADER = (
    "# gatehold scan baseline: findings reviewed and accepted, each with a reason.\n"
    "# An entry stops suppressing its finding on its 'expires' date (optional, YYYY-MM-DD).\n"
)


class BaselineError(Exception):
    """The baseline file cannot be used; the message names the file and, where it applies, the entry."""


@dataclass(frozen=True, slots=True)
class Accepted:
    fingerprint: str
    reason: str
    check: str | None = None
    location: str | None = None
    expires: date | None = None


@dataclass(frozen=True, slots=True)
class Baseline:
    path: str
    entries: tuple[Accepted, ...]
    today: date = field(default_factory=date.today)

    def is_expired(self, entry: Accepted) -> bool:
        return entry.expires is not None and entry.expires <= self.today

    @property
    def expired(self) -> tuple[Accepted, ...]:
        """Entries past their date: their findings are active again."""
        return tuple(e for e in self.entries if self.is_expired(e))

    def split(self, findings: Iterable[Finding]) -> tuple[list[Finding], list[Suppressed]]:
        """(findings still active, findings accepted by a live entry with the entry's reason)."""
        live = {e.fingerprint: e for e in self.entries if not self.is_expired(e)}
        active: list[Finding] = []
        suppressed: list[Suppressed] = []
        for finding in findings:
            entry = live.get(finding.fingerprint)
            if entry is not None and (entry.check is None or entry.check == finding.check):
                suppressed.append(Suppressed(finding=finding, reason=entry.reason))
            else:
                active.append(finding)
        return active, suppressed

    def stale(self, findings: Iterable[Finding]) -> list[str]:
        """Fingerprints of entries that matched no finding of this scan (candidates for removal)."""
        present = {f.fingerprint for f in findings}
        return [e.fingerprint for e in self.entries if e.fingerprint not in present]


def load(path: str | Path, *, today: date | None = None) -> Baseline:
    name = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BaselineError(f"baseline {name}: cannot read: {exc.__class__.__name__}: {exc}") from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = ""
        mark = getattr(exc, "problem_mark", None)
        if mark is not None:
            where = f" at line {mark.line + 1}, column {mark.column + 1}"
        problem = getattr(exc, "problem", None) or "not valid YAML"
        raise BaselineError(f"baseline {name}: invalid YAML{where}: {problem}") from None
    entries = _parse(name, document)
    return Baseline(path=name, entries=entries, today=today or date.today())


def write(path: str | Path, findings: Sequence[Finding], reason: str, *, keep: Baseline | None = None) -> None:
    """Write a baseline accepting every finding in ``findings`` with ``reason``.

    With ``keep``, a finding that baseline already accepted keeps its old reason and date. The file
    is replaced atomically.
    """
    if not isinstance(reason, str) or not reason.strip():
        raise BaselineError(f"baseline {path}: a non-empty reason is required to accept findings")
    kept = {e.fingerprint: e for e in keep.entries} if keep is not None else {}
    rows: dict[str, dict[str, Any]] = {}
    for finding in sorted(findings, key=lambda f: (f.check, f.location.qualified_name, f.fingerprint)):
        fingerprint = finding.fingerprint
        if fingerprint in rows:
            continue
        old = kept.get(fingerprint)
        row: dict[str, Any] = {
            "fingerprint": fingerprint,
            "check": finding.check,
            "location": finding.location.qualified_name,
            "reason": old.reason if old is not None else reason.strip(),
        }
        if old is not None and old.expires is not None:
            row["expires"] = old.expires
        rows[fingerprint] = row
    body = yaml.safe_dump({"version": VERSION, "accepted": list(rows.values())}, sort_keys=False,
                          allow_unicode=False, default_flow_style=False, width=1000)
    replace_atomically(Path(path), (_HEADER + body).encode("utf-8"))


def _parse(name: str, document: object) -> tuple[Accepted, ...]:
    if not isinstance(document, dict):
        got = "an empty file" if document is None else f"a {_kind(document)}"
        raise BaselineError(f"baseline {name}: expected a mapping with 'version' and 'accepted', got {got}")
    unknown = sorted(str(k) for k in document if k not in _TOP_KEYS)
    if unknown:
        raise BaselineError(f"baseline {name}: unknown key(s) {', '.join(unknown)}; expected version and accepted")
    version = document.get("version")
    if version != VERSION or isinstance(version, bool):
        raise BaselineError(f"baseline {name}: unsupported version {version!r}; expected version: {VERSION}")
    if "accepted" not in document:
        raise BaselineError(f"baseline {name}: missing 'accepted' (a list of accepted findings, may be [])")
    accepted = document["accepted"]
    if not isinstance(accepted, list):
        raise BaselineError(f"baseline {name}: 'accepted' must be a list, got a {_kind(accepted)}")
    entries: list[Accepted] = []
    first: dict[str, int] = {}
    for index, raw in enumerate(accepted):
        entry = _entry(f"baseline {name}: accepted[{index}]", raw)
        if entry.fingerprint in first:
            raise BaselineError(f"baseline {name}: accepted[{index}]: fingerprint {entry.fingerprint} is already "
                                f"accepted by accepted[{first[entry.fingerprint]}]")
        first[entry.fingerprint] = index
        entries.append(entry)
    return tuple(entries)


def _entry(where: str, raw: object) -> Accepted:
    if not isinstance(raw, dict):
        raise BaselineError(f"{where}: expected a mapping with fingerprint and reason, got a {_kind(raw)}")
    unknown = sorted(str(k) for k in raw if k not in _ENTRY_KEYS)
    if unknown:
        raise BaselineError(f"{where}: unknown key(s) {', '.join(unknown)}; "
                            f"expected {', '.join(sorted(_ENTRY_KEYS))}")
    fingerprint = raw.get("fingerprint")
    if not isinstance(fingerprint, str) or not _FINGERPRINT.fullmatch(fingerprint):
        raise BaselineError(f"{where}: 'fingerprint' must be a finding's fingerprint (lower-case hex, "
                            f"as in the JSON report), got {_show(fingerprint)}")
    reason = raw.get("reason")
    if not isinstance(reason, str) or not reason.strip():
        raise BaselineError(f"{where}: 'reason' is required and must be non-empty text (why the finding is accepted)")
    return Accepted(fingerprint=fingerprint, reason=reason.strip(), check=_text(where, raw, "check"),
                    location=_text(where, raw, "location"), expires=_date(where, raw.get("expires")))


def _text(where: str, raw: dict[Any, Any], key: str) -> str | None:
    value = raw.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise BaselineError(f"{where}: '{key}' must be non-empty text when given, got {_show(value)}")
    return value.strip()


def _date(where: str, value: object) -> date | None:
    if value is None:
        return None
    if isinstance(value, date):  # YAML reads an unquoted 2027-06-30 as a date (a datetime is a date too)
        return value if type(value) is date else date(value.year, value.month, value.day)
    if isinstance(value, str):
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise BaselineError(f"{where}: 'expires' must be a date written YYYY-MM-DD, got {_show(value)}")


def _kind(value: object) -> str:
    return {dict: "mapping", list: "list", str: "string", int: "number", float: "number",
            bool: "boolean"}.get(type(value), type(value).__name__)


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
