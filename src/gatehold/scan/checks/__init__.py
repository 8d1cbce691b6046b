"""The scanner's checks, one module each; ``ALL`` is the order they run and are listed in reports.

Each module declares ``CHECKS`` (its rule ids, titles, default severities, rationale and
remediation) and ``run(scan) -> Iterable[Finding]``. ``fields`` and ``capabilities`` are helpers
the checks share, not checks.
"""

from __future__ import annotations

from gatehold.scan.checks import (
    drift,
    hidden_unicode,
    overbroad,
    poisoning,
    secrets,
    shadowing,
    toxic_flow,
    transport,
    unbounded_schema,
    unpinned,
)

ALL = (
    poisoning,
    hidden_unicode,
    secrets,
    overbroad,
    unbounded_schema,
    shadowing,
    toxic_flow,
    transport,
    drift,
    unpinned,
)
