from pathlib import Path

import orjson

from gatehold.audit import AuditLog, JsonlSink
from gatehold.auditor import Auditor
from gatehold.call import Caller, Target, ToolCall


def test_runtime_tokens_and_the_callers_own_token_are_redacted(tmp_path: Path) -> None:
    log = AuditLog([JsonlSink(tmp_path / "a.jsonl")])
    obtained: list[str] = []
    auditor = Auditor(log, ["configured-secret"])
    auditor.add_secret_source(lambda: tuple(obtained))
    obtained.append("upstream-access-token-1")  # fetched after the auditor was built
    caller = Caller("alice", (), "jwt:jti:1", scopes=frozenset(), token="callers-own-bearer-token")
    call = ToolCall(caller, "tools/call", Target("tool", "x.echo", "x", "echo"),
                    {"text": "configured-secret upstream-access-token-1 callers-own-bearer-token kept"}, "c1")
    auditor.call(call, decision="allow", reason="upstream said upstream-access-token-1", rule_id=None,
                 outcome="ok", code=None, latency_ms=1.0, stages=[])
    auditor.request(correlation_id="c2", caller=caller, method="ping", decision="deny",
                    reason="echoed callers-own-bearer-token")
    log.flush()
    log.close()
    text = (tmp_path / "a.jsonl").read_text()
    for value in ("configured-secret", "upstream-access-token-1", "callers-own-bearer-token"):
        assert value not in text
    first = orjson.loads(text.splitlines()[0])
    assert first["arguments"]["text"].endswith(" kept")  # only the secrets were cut
