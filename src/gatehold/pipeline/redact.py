"""Redact: no secret reaches the agent in a result.

Every readable text of the result (see ``output/walk.py``) goes through the secret redactor:
every secret value the gateway holds (configured secrets, upstream access tokens it obtained,
the caller's own bearer token), in the encodings ``output/secrets.py`` lists, and, with
``output.redact_secrets``, the known formats of keys, tokens, private keys and connection strings.
The kinds and counts found go to the audit record, never the values.
"""

from __future__ import annotations

from typing import Any

from gatehold.call import ToolCall
from gatehold.output.secrets import REDACTED, SecretRedactor
from gatehold.output.walk import rewrite_result
from gatehold.pipeline.outcome import Allow, CallDecision, Keep, Replace, ResultDecision


class Redact:
    name = "redact"

    def __init__(self, redactor: SecretRedactor):
        self.redactor = redactor  # shared: its matcher is rebuilt only when the held secrets change

    async def on_call(self, call: ToolCall) -> CallDecision:
        return Allow()

    async def on_result(self, call: ToolCall, result: dict[str, Any]) -> ResultDecision:
        found: dict[str, int] = {}
        token = call.caller.token if call.caller.token and len(call.caller.token) >= 8 else None

        def redact(text: str) -> str:
            done = self.redactor.text(text)
            for kind, count in done.found.items():
                found[kind] = found.get(kind, 0) + count
            out = done.text
            if token is not None and token in out:
                found["caller_token"] = found.get("caller_token", 0) + out.count(token)
                out = out.replace(token, REDACTED)
            return out

        out = rewrite_result(result, redact)
        if not found:
            return Keep()
        return Replace(out, "secrets redacted", {"secrets": found})
