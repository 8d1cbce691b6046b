"""The tamper-evident audit log: hash-chained records written by a group-commit thread."""

from gatehold.audit.chain import GENESIS, canonical, check_link, link, record_hash
from gatehold.audit.log import AuditLog
from gatehold.audit.record import REDACTED, AuditEvent, redact_arguments
from gatehold.audit.sinks import AuditSink, JsonlSink, SqliteSink
from gatehold.audit.verify import VerifyResult, tail, verify_jsonl, verify_sqlite

__all__ = [
    "GENESIS",
    "REDACTED",
    "AuditEvent",
    "AuditLog",
    "AuditSink",
    "JsonlSink",
    "SqliteSink",
    "VerifyResult",
    "canonical",
    "check_link",
    "link",
    "record_hash",
    "redact_arguments",
    "tail",
    "verify_jsonl",
    "verify_sqlite",
]
