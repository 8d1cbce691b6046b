"""One audit event, and the redaction every argument passes through before it is recorded.

An ``AuditEvent`` is what a caller hands to the audit log. It names the credential by its id,
never the credential itself, and its ``arguments`` must already have been through
``redact_arguments``: the audit trail is kept for years and read by many people, so a secret
that reaches it has leaked.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any, Literal

import orjson

REDACTED = "[REDACTED]"
TRUNCATED = "[TRUNCATED]"
MAX_DEPTH = 64
MIN_SECRET_LENGTH = 4  # shorter "secrets" would redact ordinary words and numbers everywhere

# Case-insensitive substrings of a mapping key whose value is hidden whatever it is.
SECRET_KEY_PARTS = (
    "password",
    "passwd",
    "secret",
    "token",
    "api_key",
    "apikey",
    "authorization",
    "credential",
    "private_key",
    "cookie",
)

Kind = Literal["request", "decision", "lifecycle"]
Decision = Literal["allow", "ask", "deny", "error", "info"]
_KINDS = frozenset(("request", "decision", "lifecycle"))
_DECISIONS = frozenset(("allow", "ask", "deny", "error", "info"))


def utc_now() -> str:
    """The current time as ISO 8601 UTC with microseconds, e.g. ``2026-01-02T03:04:05.123456Z``."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True, kw_only=True)
class AuditEvent:
    """What happened to one request, or to the gateway itself (``kind="lifecycle"``)."""

    kind: Kind
    correlation_id: str
    principal: str | None
    credential_id: str | None  # the id of the key or token used; never the credential
    method: str | None
    server: str | None
    tool: str | None
    arguments: Any  # already redacted by the caller; JSON-able
    decision: Decision
    reason: str
    rule_id: str | None
    outcome: str | None
    latency_ms: float | None
    code: str | None  # a stable error code such as ``policy.not_granted``
    detail: dict[str, Any] | None = None
    time: str = field(default_factory=utc_now)

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ValueError(f"audit event kind must be one of {sorted(_KINDS)}, not {self.kind!r}")
        if self.decision not in _DECISIONS:
            raise ValueError(f"audit decision must be one of {sorted(_DECISIONS)}, not {self.decision!r}")

    def to_dict(self) -> dict[str, Any]:
        """The event as plain JSON values: a deep copy, so later changes by the caller do not leak in.

        Values JSON has no type for are written as their ``str()``. Raises ``TypeError`` if the
        event still cannot be serialised (an integer beyond 64 bits, or nesting deeper than 254).
        """
        raw = {f.name: getattr(self, f.name) for f in fields(self)}
        try:
            encoded = orjson.dumps(raw, default=str, option=orjson.OPT_NON_STR_KEYS)
        except orjson.JSONEncodeError as exc:
            raise TypeError(f"audit event is not JSON-serialisable: {exc}") from exc
        value: dict[str, Any] = orjson.loads(encoded)
        return value


def is_secret_key(key: str) -> bool:
    lowered = key.lower()
    return any(part in lowered for part in SECRET_KEY_PARTS)


def redact_arguments(value: Any, secret_values: Iterable[str]) -> Any:
    """A deep copy of ``value`` that is safe to audit.

    - The value under any mapping key that looks secret-bearing (see ``SECRET_KEY_PARTS``) becomes
      ``"[REDACTED]"``, whatever its type.
    - Every occurrence of a known secret value (at least four characters) inside any string,
      mapping keys included, becomes ``"[REDACTED]"``.
    - Containers nested deeper than ``MAX_DEPTH`` become ``"[TRUNCATED]"``; this also stops
      self-referencing structures.

    Tuples become lists. Values that are not JSON types are replaced by their redacted ``str()``
    so nothing unexpected reaches the log.
    """
    secrets = sorted({s for s in secret_values if len(s) >= MIN_SECRET_LENGTH}, key=len, reverse=True)
    return _redact(value, secrets, 0)


def _redact_text(text: str, secrets: list[str]) -> str:
    for secret in secrets:  # longest first, so a secret containing another is hidden whole
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def _redact(value: Any, secrets: list[str], depth: int) -> Any:
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return _redact_text(value, secrets)
    if depth >= MAX_DEPTH:
        return TRUNCATED
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            name = key if isinstance(key, str) else str(key)
            safe_name = _redact_text(name, secrets)
            out[safe_name] = REDACTED if is_secret_key(name) else _redact(item, secrets, depth + 1)
        return out
    if isinstance(value, list | tuple):
        return [_redact(item, secrets, depth + 1) for item in value]
    return _redact_text(str(value), secrets)
