from gatehold.call import Caller
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


def scoped(mode: str) -> Grants:
    return Grants({"ops": Role(tools={"crm.get_invoice": ToolGrant(max_result_bytes=10)})},
                  {"crm:read": ("crm.get_*",), "crm:all": ("crm.*",), "crm:write": ("crm.update_*",)}, mode)


def oauth(*scopes: str, roles: tuple[str, ...] = ("ops",)) -> Caller:
    return Caller("alice", roles, "jwt:jti:1", scopes=frozenset(scopes))


def test_scope_mode_both_needs_a_role_grant_and_a_scope() -> None:
    g = scoped("both")
    assert g.tool_grants(oauth("crm:read"), "crm.get_invoice")[0].rule_id == "roles.ops.tools[crm.get_invoice]"
    assert g.tool_grants(oauth(), "crm.get_invoice") == ()
    assert g.tool_grants(oauth("crm:read", roles=()), "crm.get_invoice") == ()
    # A credential without scopes (API key, certificate) is judged by roles alone.
    assert g.tool_grants(Caller("ci", ("ops",), "apikey:ci"), "crm.get_invoice")


def test_step_up_names_the_narrowest_granting_scope_and_only_when_it_would_help() -> None:
    g = scoped("both")
    assert g.step_up_scopes(oauth(), "crm.get_invoice") == ("crm:read",)  # not the wider crm:all
    assert g.step_up_scopes(oauth(roles=()), "crm.get_invoice") == ()  # roles forbid it: no scope helps
    assert g.step_up_scopes(Caller("ci", ("ops",), "apikey:ci"), "crm.get_invoice") == ()
    assert g.tool_visible(oauth(), "crm.get_invoice")
    assert not g.tool_visible(oauth("crm:all"), "crm.delete_invoice")  # no role grant


def test_scope_mode_scopes_lets_a_scope_grant_and_roles_still_constrain() -> None:
    g = scoped("scopes")
    assert g.tool_grants(oauth("crm:write", roles=()), "crm.update_invoice")[0].rule_id == "scopes[crm:write]"
    assert g.tool_grants(oauth("crm:read"), "crm.get_invoice")[0].tool.max_result_bytes == 10
    assert g.tool_grants(oauth("crm:read"), "crm.update_invoice") == ()
    assert g.step_up_scopes(oauth("crm:read", roles=()), "crm.update_invoice") == ("crm:write",)


def test_scope_mode_roles_ignores_scopes() -> None:
    g = scoped("roles")
    assert g.tool_grants(oauth(), "crm.get_invoice")
    assert g.step_up_scopes(oauth(), "crm.get_invoice") == ()
