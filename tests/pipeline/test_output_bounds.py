from typing import Any

import orjson
import pytest

from gatehold.call import Caller, Target, ToolCall
from gatehold.config import GatewaySettings, Role, ToolGrant
from gatehold.pipeline import Deny, Keep, Replace
from gatehold.pipeline.output_bounds import OutputBounds
from gatehold.policy.grants import Grants

pytestmark = pytest.mark.anyio


def call(tool: str) -> ToolCall:
    return ToolCall(Caller("a", ("r",), "k"), "tools/call", Target("tool", tool, "s", tool), {}, "c")


GRANTS = Grants({"r": Role(tools={"small": ToolGrant(max_result_bytes=200),
                                  "strict": ToolGrant(max_result_bytes=200, on_oversize="deny")})})
STAGE = OutputBounds(GRANTS, GatewaySettings(max_result_bytes=10_000))


def text_result(n: int, char: str = "x") -> dict[str, Any]:
    return {"content": [{"type": "text", "text": char * n}], "isError": False}


async def test_within_the_cap_is_kept() -> None:
    assert isinstance(await STAGE.on_result(call("small"), text_result(50)), Keep)
    assert isinstance(await STAGE.on_result(call("other"), text_result(5000)), Keep)


@pytest.mark.parametrize("char", ["x", "é", "😀"])
async def test_oversize_is_truncated_with_a_marker_under_the_cap(char: str) -> None:
    decision = await STAGE.on_result(call("small"), text_result(1000, char))
    assert isinstance(decision, Replace)
    assert len(orjson.dumps(decision.result)) <= 200
    assert decision.result["content"][-1]["text"].endswith("[gatehold: output truncated at 200 bytes]")


async def test_oversize_is_denied_when_configured_or_when_it_cannot_be_cut() -> None:
    assert isinstance(await STAGE.on_result(call("strict"), text_result(1000)), Deny)
    structured = {**text_result(10), "structuredContent": {"v": "y" * 1000}}
    assert isinstance(await STAGE.on_result(call("small"), structured), Deny)
    assert isinstance(await STAGE.on_result(call("other"), text_result(20_000)), Replace)
