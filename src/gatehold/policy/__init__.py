"""Argument policy: tool input schemas and least-privilege argument constraints."""

from gatehold.policy.constraints import Violation, check_arguments
from gatehold.policy.schema import MAX_ERRORS, CompiledSchema, SchemaCache

__all__ = ["MAX_ERRORS", "CompiledSchema", "SchemaCache", "Violation", "check_arguments"]
