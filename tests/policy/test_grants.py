from gatehold.config import Role, ToolGrant
from gatehold.policy.grants import Grants


def grants() -> Grants:
    return Grants({
        "reader": Role(tools={"files.*": ToolGrant(), "files.read_file": ToolGrant(strict=False)},
                       prompts=("files.summarise",), resources=("files.file:///docs/*",)),
        "ops": Role(tools={"crm.get_*": ToolGrant(max_result_bytes=10)}),
    })


def test_default_deny() -> None:
    g = grants()
    assert g.for_tool((), "files.read_file") == ()
    assert g.for_tool(("ghost",), "files.read_file") == ()
    assert g.for_tool(("ops",), "files.read_file") == ()
    assert g.prompt_rule(("ops",), "files.summarise") is None
    assert g.resource_rule(("reader",), "files.file:///etc/passwd") is None


def test_most_specific_pattern_per_role() -> None:
    found = grants().for_tool(("reader",), "files.read_file")
    assert [x.rule_id for x in found] == ["roles.reader.tools[files.read_file]"]
    assert found[0].tool.strict is False
    assert [x.rule_id for x in grants().for_tool(("reader",), "files.write")] == ["roles.reader.tools[files.*]"]


def test_each_role_contributes_its_grant() -> None:
    found = grants().for_tool(("reader", "ops"), "crm.get_invoice")
    assert [x.rule_id for x in found] == ["roles.ops.tools[crm.get_*]"]


def test_globs_are_case_sensitive_and_anchored() -> None:
    g = grants()
    assert g.for_tool(("ops",), "CRM.get_x") == ()
    assert g.for_tool(("ops",), "xcrm.get_x") == ()
    assert g.prompt_rule(("reader",), "files.summarise") == "roles.reader.prompts[files.summarise]"
    assert g.resource_rule(("reader",), "files.file:///docs/a.md") == "roles.reader.resources[files.file:///docs/*]"
