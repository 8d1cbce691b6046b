"""Operators: the humans who approve calls and throw the kill switch, with keys of their own.

An operator key looks like an API key (``ghk_<id>.<secret>``, scrypt-hashed in the config) but lives
in the separate ``operators`` table, so no agent credential opens the approval page or the admin
API, and no operator key is accepted at ``/mcp``.
"""

from __future__ import annotations

from typing import Literal

from gatehold.auth.apikeys import ApiKeyAuthenticator
from gatehold.call import Caller
from gatehold.config import ApiKey, Operator
from gatehold.errors import AuthenticationFailed, NotGranted

Power = Literal["approve", "kill"]


class OperatorAuthenticator:
    def __init__(self, operators: tuple[Operator, ...]):
        self._keys = ApiKeyAuthenticator(tuple(
            ApiKey(id=op.id, hash=op.hash, principal=op.principal, roles=op.can) for op in operators))
        self.configured = bool(operators)

    def authenticate(self, authorization: str | None, *, needs: Power) -> Caller:
        """The operator a ``Bearer`` header names, if they hold ``needs``.

        Raises ``AuthenticationFailed`` (401) for no or a bad key, ``NotGranted`` when the key is
        good but lacks the power. With no operators configured nobody gets in (fail closed).
        """
        if not self.configured:
            raise AuthenticationFailed("no operators are configured", code="auth.invalid")
        caller = self._keys.authenticate(authorization)
        operator = Caller(principal=caller.principal, roles=caller.roles,
                          credential_id="operator:" + caller.credential_id.removeprefix("apikey:"))
        if needs not in operator.roles:
            raise NotGranted(f"operator {operator.credential_id} may not {needs}", rule_id="operators")
        return operator
