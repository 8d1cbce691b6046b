"""The ordered chain of controls every call passes through.

``Authenticate → Limit → Authorise → Validate → Flow → Approve → [forward] → Check output → Redact``

Authentication happens in the front (it decides the HTTP status); the stages here run on an
authenticated ``ToolCall``. ``on_call`` runs top-down and ``on_result`` bottom-up; auditing is
the chain's ``finally``, not a stage, so nothing can skip it.
"""

from gatehold.pipeline.chain import Pipeline
from gatehold.pipeline.outcome import Allow, Deny, Keep, Replace

__all__ = ["Allow", "Deny", "Keep", "Pipeline", "Replace"]
