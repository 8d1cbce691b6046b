"""CPU per call of the kill-switch and approval stages for a call that needs no approval.

    python bench/stages.py [--calls 50000]

Runs ``KillCheck.on_call`` and ``Approve.on_call`` as ``Gateway`` assembles them (SQLite revocation
list on the default 50 ms window, an in-process approval store), on one granted call, and prints
``time.process_time`` per call.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from gatehold.auditor import Auditor
from gatehold.call import Caller, Target, ToolCall
from gatehold.config import parse_config
from gatehold.gateway import Gateway
from gatehold.pipeline.approve import Approve
from gatehold.pipeline.kill import KillCheck
from gatehold.runtime import open_audit


async def main(calls: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        loaded = parse_config({"audit": {"sqlite": str(tmp / "audit.db")},
                               "roles": {"r": {"tools": {"up.add": {}}}}}, base_dir=tmp)
        gateway = Gateway(loaded, Auditor(open_audit(loaded)), {})
        call = ToolCall(Caller("alice", ("r",), "apikey:a"), "tools/call", Target("tool", "up.add", "up", "add"),
                        {"a": 1, "b": 2}, "bench")
        try:
            for stage in gateway.pipeline.stages:
                if not isinstance(stage, KillCheck | Approve):
                    continue
                for _ in range(2000):
                    await stage.on_call(call)
                start = time.process_time()
                for _ in range(calls):
                    await stage.on_call(call)
                per_call = (time.process_time() - start) / calls * 1e6
                print(f"{type(stage).__name__}: {per_call:.2f} µs CPU per call")
        finally:
            await gateway.stop()
            gateway.auditor.log.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=50_000)
    asyncio.run(main(parser.parse_args().calls))
