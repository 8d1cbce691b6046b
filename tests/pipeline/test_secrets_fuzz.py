"""Fuzz: a secret the gateway holds never appears in anything a client sees or the audit keeps.

The real pipeline stages that touch results (Redact, CheckOutput) and the real auditor writing a
real JSONL audit file; the upstream's result, its error message and the client's arguments all
carry the held secret, raw or encoded, at random places of random structures.
"""

from __future__ import annotations

import base64
import binascii
import string
import tempfile
import urllib.parse
from pathlib import Path
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gatehold.audit import AuditLog, JsonlSink
from gatehold.auditor import Auditor
from gatehold.call import Caller, Target, ToolCall
from gatehold.config import OutputSettings, parse_config
from gatehold.errors import GateholdError
from gatehold.output.detect import InjectionDetector
from gatehold.output.secrets import SecretRedactor
from gatehold.pipeline import Pipeline
from gatehold.pipeline.check_output import CheckOutput
from gatehold.pipeline.redact import Redact
from gatehold.policy.grants import Grants
from gatehold.policy.schema import SchemaCache
from gatehold.runtime import build_gateway

ENCODINGS = {
    "raw": lambda s: s,
    "base64": lambda s: base64.b64encode(s.encode()).decode(),
    "base64url": lambda s: base64.urlsafe_b64encode(s.encode()).decode().rstrip("="),
    "percent": lambda s: urllib.parse.quote(s, safe=""),
    "hex": lambda s: binascii.hexlify(s.encode()).decode(),
}
# Held secrets are random keys; a run of one character ('000...') would also "match" the chain's
# all-zero genesis hash, which is not a leak.
secret_values = st.text(alphabet=string.ascii_letters + string.digits + "-_.~+/=!@#$%^&*", min_size=12,
                        max_size=48).filter(lambda s: len(set(s)) >= 6)
filler = st.text(max_size=40)


@st.composite
def carrier(draw: st.DrawFn, secret: str) -> tuple[Any, str]:
    """A JSON value with the secret (in one encoding) hidden somewhere inside a string."""
    encoding = draw(st.sampled_from(sorted(ENCODINGS)))
    text = draw(filler) + ENCODINGS[encoding](secret) + draw(filler)
    shape = draw(st.sampled_from(["text", "nested", "list", "key"]))
    if shape == "text":
        return text, encoding
    if shape == "nested":
        return {"a": {"b": [draw(filler), text]}}, encoding
    if shape == "list":
        return [draw(filler), [text]], encoding
    return {text: draw(filler)}, encoding


async def run_once(secret: str, value: Any, tmp: Path) -> tuple[str, str]:
    log = AuditLog([JsonlSink(tmp / "audit.jsonl")])
    auditor = Auditor(log, [secret])
    stages = [Redact(SecretRedactor(auditor.known_values)),
              CheckOutput(OutputSettings(), Grants({}, {}, "roles"), SchemaCache(), InjectionDetector(),
                          definition=lambda c: None, quarantined=lambda c: None, labels=lambda c: frozenset())]
    pipeline = Pipeline(stages, auditor)
    call = ToolCall(Caller("alice", (), "apikey:a"), "tools/call", Target("tool", "up.t", "up", "t"),
                    {"carried": value}, "c1")
    text = value if isinstance(value, str) else orjson.dumps(value).decode()

    async def forward(_: ToolCall) -> dict[str, Any]:
        return {"content": [{"type": "text", "text": text}], "structuredContent": {"v": value}}

    try:
        result = await pipeline.run(call, forward)
        visible = orjson.dumps(result).decode()
    except GateholdError as exc:
        visible = exc.public
    log.flush()
    log.close()
    return visible, (tmp / "audit.jsonl").read_text()


def assert_absent(secret: str, *texts: str) -> None:
    for text in texts:
        for encoding, encode in ENCODINGS.items():
            assert encode(secret) not in text, f"{encoding} form leaked"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), secret=secret_values)
def test_held_secrets_never_reach_the_client_or_the_audit(data: st.DataObject, secret: str) -> None:
    import anyio

    value, _encoding = data.draw(carrier(secret))
    with tempfile.TemporaryDirectory() as tmp:
        visible, trail = anyio.run(run_once, secret, value, Path(tmp))
    assert_absent(secret, visible, trail)
    # JSON escaping could spell the secret differently in the file: check the decoded records too.
    for line in trail.split("\n"):
        if line:
            assert_absent(secret, str(orjson.loads(line)))


@settings(max_examples=40, deadline=None)
@given(data=st.data(), secret=secret_values)
def test_upstream_error_messages_never_carry_held_secrets(data: st.DataObject, secret: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        loaded = parse_config({"audit": {"sqlite": None, "jsonl": str(Path(tmp) / "a.jsonl")}}, base_dir=Path(tmp))
        gateway = build_gateway(loaded)
        gateway.auditor.add_secret_source(lambda: (secret,))
        value, _ = data.draw(carrier(secret))
        message = value if isinstance(value, str) else orjson.dumps(value).decode()
        cleaned = gateway.clean_error({"code": -32000, "message": message})
        gateway.auditor.log.close()
    assert_absent(secret, cleaned["message"])
