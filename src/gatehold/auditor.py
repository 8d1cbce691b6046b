"""Builds audit events for the gateway's decisions and hands them to the audit log."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from gatehold.audit import AuditEvent, AuditLog, redact_arguments
from gatehold.call import Caller, ToolCall
from gatehold.errors import AuditUnavailable
from gatehold.output.secrets import SecretRedactor


class Auditor:
    def __init__(self, log: AuditLog, secret_values: Iterable[str] = ()):
        self.log = log
        self._secrets = tuple(s for s in secret_values if len(s) >= 4)
        self._sources: list[Callable[[], Iterable[str]]] = []
        # Held values in their encodings and the known secret formats, on top of the key-based rules.
        self._patterns = SecretRedactor(self.known_values)

    def add_secret_source(self, source: Callable[[], Iterable[str]]) -> None:
        """Values obtained at run time (upstream access tokens) that must be redacted like configured secrets."""
        self._sources.append(source)

    def known_values(self) -> tuple[str, ...]:
        """Every secret value the gateway holds right now: configured secrets and run-time tokens."""
        values = self._secrets
        for source in self._sources:
            values += tuple(source())
        return values

    def _known(self, caller: Caller | None) -> tuple[str, ...]:
        values = self.known_values()
        if caller is not None and caller.token:
            values += (caller.token,)  # a caller's own bearer token never enters the trail either
        return values

    def redacted(self, arguments: dict[str, Any], caller: Caller | None = None) -> dict[str, Any]:
        """``arguments`` with every secret the gateway knows replaced, as the audit would show them."""
        return self._scrub(arguments, self._known(caller))  # type: ignore[no-any-return]

    def _scrub(self, value: Any, known: tuple[str, ...]) -> Any:
        """Secret-named keys, known values (and their encodings) and known secret formats, all redacted."""
        return self._patterns.json(redact_arguments(value, known))[0]

    def ensure_healthy(self) -> None:
        if not self.log.healthy:
            # Fail closed: with the audit trail broken, no call may proceed unrecorded.
            raise AuditUnavailable("audit log is not healthy", rule_id="audit.healthy")

    def call(self, call: ToolCall, *, decision: str, reason: str, rule_id: str | None, outcome: str,
             code: str | None, latency_ms: float, stages: list[list[str]],
             found: dict[str, Any] | None = None) -> None:
        self.log.record(AuditEvent(
            kind="decision",
            correlation_id=call.correlation_id,
            principal=call.caller.principal,
            credential_id=call.caller.credential_id,
            method=call.method,
            server=call.target.upstream,
            tool=call.target.exposed,
            arguments=self._scrub(call.arguments, known := self._known(call.caller)),
            decision=decision,  # type: ignore[arg-type]
            reason=self._scrub(reason, known),
            rule_id=rule_id,
            outcome=outcome,
            latency_ms=round(latency_ms, 3),
            code=code,
            detail={"stages": stages, **({"found": self._scrub(found, known)} if found else {})},
        ))

    def request(self, *, correlation_id: str, caller: Caller | None, method: str | None,
                decision: str, reason: str, code: str | None = None, outcome: str | None = None,
                latency_ms: float | None = None, detail: dict[str, Any] | None = None,
                server: str | None = None, tool: str | None = None) -> None:
        """One record for a request that is not a pipeline call, or that never reached one."""
        self.log.record(AuditEvent(
            kind="request",
            correlation_id=correlation_id,
            principal=caller.principal if caller else None,
            credential_id=caller.credential_id if caller else None,
            method=method,
            server=server,
            tool=tool,
            arguments=None,
            decision=decision,  # type: ignore[arg-type]
            reason=self._scrub(reason, self._known(caller)),
            rule_id=None,
            outcome=outcome,
            latency_ms=None if latency_ms is None else round(latency_ms, 3),
            code=code,
            detail=None if detail is None else self._scrub(detail, self._known(caller)),
        ))

    def lifecycle(self, reason: str, detail: dict[str, Any] | None = None) -> None:
        self.log.record(AuditEvent(
            kind="lifecycle", correlation_id="-", principal=None, credential_id=None, method=None,
            server=None, tool=None, arguments=None, decision="info", reason=reason, rule_id=None,
            outcome=None, latency_ms=None, code=None,
            detail=None if detail is None else self._scrub(detail, self.known_values()),
        ))
