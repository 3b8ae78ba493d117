"""Bearer tokens: which scope a request's ``Authorization`` header grants.

Every configured token is compared, in constant time, with the one presented (SHA-256 digests
of both, so that lengths do not leak either), and no comparison stops early.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

import attrs

from sts_api.config import Token

READ = "read"
ADMIN = "admin"
#: What each scope may do: admin includes read.
GRANTS: dict[str, frozenset[str]] = {READ: frozenset({READ}), ADMIN: frozenset({READ, ADMIN})}


@attrs.frozen
class Caller:
    """Who made a request: the token's name (for logs) and its scope."""

    token_name: str
    scope: str

    def may(self, scope: str) -> bool:
        """True when this caller's scope includes ``scope``."""
        return scope in GRANTS.get(self.scope, frozenset())


class AuthError(Exception):
    """The request carries no usable token (401) or one without the needed scope (403);
    ``token_name`` names the token of a 403 (for the log), None for a 401."""

    def __init__(self, status: int, message: str, token_name: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.token_name = token_name


class TokenTable:
    """The configured tokens; ``authenticate`` maps an ``Authorization`` header to a ``Caller``."""

    def __init__(self, tokens: Iterable[Token]) -> None:
        self._entries = [(_digest(token.secret), token.name, token.scope) for token in tokens]

    def authenticate(self, header: str | None) -> Caller:
        """The caller for ``Authorization: Bearer <token>``; raises ``AuthError`` (401) otherwise."""
        if not header:
            raise AuthError(401, "missing bearer token: send the header 'Authorization: Bearer <token>'")
        scheme, _, presented = header.strip().partition(" ")
        presented = presented.strip()
        if scheme.lower() != "bearer" or not presented:
            raise AuthError(401, "expected the header 'Authorization: Bearer <token>'")
        digest = _digest(presented)
        match: Caller | None = None
        for expected, name, scope in self._entries:
            if hmac.compare_digest(digest, expected) and match is None:
                match = Caller(name, scope)
        if match is None:
            raise AuthError(401, "invalid bearer token")
        return match

    def require(self, header: str | None, scope: str) -> Caller:
        """The caller, when its token grants ``scope``; ``AuthError`` 401 or 403 otherwise."""
        caller = self.authenticate(header)
        if not caller.may(scope):
            raise AuthError(403, f"this operation needs a token with the {scope} scope; this token has {caller.scope}",
                            caller.token_name)
        return caller


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).digest()
