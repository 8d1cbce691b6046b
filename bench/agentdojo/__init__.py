"""AgentDojo replay benchmark: AgentDojo suites as MCP stdio servers, replayed through Gatehold."""
