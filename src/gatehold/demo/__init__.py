"""The bundled demo: a small stdio MCP server and the policy that guards it."""
