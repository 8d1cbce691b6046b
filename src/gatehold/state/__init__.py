"""Shared state: the credential revocation list, in SQLite (embedded) or Redis (shared)."""

from gatehold.state.revocations import (
    KINDS,
    RedisRevocations,
    Revocation,
    RevocationStore,
    SqliteRevocations,
    open_revocations,
    revocation_keys,
)

__all__ = [
    "KINDS",
    "RedisRevocations",
    "Revocation",
    "RevocationStore",
    "SqliteRevocations",
    "open_revocations",
    "revocation_keys",
]
