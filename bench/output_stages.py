"""CPU per call of the data-flow and output-defence stages, as ``Gateway`` assembles them.

    python -m bench.output_stages [--calls 2000]

For three results — a small answer (``"5"``), a 1 KB e-mail, and a 10 KB JSON listing — it times
``on_call`` of Flow (a labelled sink call in a session that has read untrusted output) and
``on_result`` of FlowMemory, OutputBounds, CheckOutput and Redact (default output settings:
sanitise, detect, quarantine, redact secrets) with ``time.process_time``, and prints µs per call.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from gatehold.auditor import Auditor
from gatehold.call import Caller, Target, ToolCall
from gatehold.config import parse_config
from gatehold.gateway import Gateway
from gatehold.pipeline.flow import Flow
from gatehold.runtime import open_audit

EMAIL = ("From: bob@corp.example\nTo: me@corp.example\nSubject: Quarterly numbers\n\n"
         + "Hi, the figures for the quarter are attached; revenue grew in every region and costs held. "
           "Let's go through them on Thursday at 10:00 in room 4.12, and bring the slides. " * 6)[:1024]
LISTING = json.dumps([{"id": i, "name": f"report-{i}.pdf", "owner": f"user{i}@corp.example",
                       "size": 1000 + i, "shared_with": ["team@corp.example"], "modified": "2026-11-20T10:00:00Z"}
                      for i in range(60)])[:10_240]
RESULTS = {"small": "5", "email-1KB": EMAIL, "json-10KB": LISTING}
CONFIG = {"roles": {"r": {"tools": {"up.*": {}}}},
          "labels": {"up.read": ["untrusted"], "up.send": ["external_sink"]},
          "flows": [{"from": ["untrusted"], "to": ["external_sink"], "effect": "ask", "match": "arguments"},
                    {"from": ["private"], "to": ["external_sink"], "effect": "deny", "match": "arguments"}]}


async def timed(label: str, calls: int, fn: Any) -> None:
    for _ in range(min(200, calls)):
        await fn()
    start = time.process_time()
    for _ in range(calls):
        await fn()
    print(f"  {label:34} {(time.process_time() - start) / calls * 1e6:9.1f} µs CPU per call")


async def main(calls: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        loaded = parse_config({"audit": {"sqlite": str(tmp / "audit.db")}, **CONFIG}, base_dir=tmp)
        gateway = Gateway(loaded, Auditor(open_audit(loaded)), {})
        caller = Caller("alice", ("r",), "apikey:a")
        read = ToolCall(caller, "tools/call", Target("tool", "up.read", "up", "read"), {}, "c-read", session="s")
        send = ToolCall(caller, "tools/call", Target("tool", "up.send", "up", "send"),
                        {"to": "bob@corp.example", "body": "numbers attached"}, "c-send", session="s")
        try:
            flow = next(s for s in gateway.pipeline.stages if isinstance(s, Flow))
            await flow.on_call(read)
            for stage in gateway.pipeline.stages:
                if stage.name == "flow_memory":
                    await stage.on_result(read, {"content": [{"type": "text", "text": EMAIL + LISTING}]})
            print("on_call")
            await timed("flow (sink call, tainted session)", calls, lambda: flow.on_call(send))
            for name, text in RESULTS.items():
                result = {"content": [{"type": "text", "text": text}]}
                print(f"on_result, {name} result")
                for stage in reversed(gateway.pipeline.stages):
                    if stage.name in ("flow_memory", "output_bounds", "check_output", "redact"):
                        await timed(stage.name, calls, lambda s=stage, r=result: s.on_result(read, r))
        finally:
            await gateway.stop()
            gateway.auditor.log.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=2000)
    asyncio.run(main(parser.parse_args().calls))
