"""gatehold scan: an offline scanner for MCP servers and client configurations."""
