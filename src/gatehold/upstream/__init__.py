"""Clients for the real MCP servers behind the gateway (upstreams)."""
