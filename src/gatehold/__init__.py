"""Gatehold: a fail-closed security gateway for MCP tool servers."""

from gatehold.config import Config, LoadedConfig, load_config
from gatehold.errors import GateholdError

__all__ = ["Config", "GateholdError", "LoadedConfig", "load_config"]
__version__ = "0.1.0"
