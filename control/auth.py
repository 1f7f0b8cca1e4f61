"""Bearer-token auth for the control API.

Tokens live in config as SHA-256 hex digests (never the token itself); a presented
token is hashed and compared with every configured digest in constant time
(``hmac.compare_digest``, no early exit). Roles: ``read``, ``submit``, ``operate``,
``admin``; ``admin`` implies all others, ``operate`` implies ``read``. An endpoint
names the roles that may call it (any one suffices).

A ``read`` or ``submit`` token may list the tenants it acts for: it then submits,
reads messages and events and checks leases for those tenants only (403 otherwise);
``operate`` and ``admin`` tokens are global.

With no tokens configured the API is open (the embedded demo on 127.0.0.1). The
token is never logged: failures log the token's configured name, or nothing.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass

ROLES = ("read", "submit", "operate", "admin")
IMPLIED = {"admin": frozenset(ROLES), "operate": frozenset({"operate", "read"}),
           "submit": frozenset({"submit"}), "read": frozenset({"read"})}


@dataclass(frozen=True, slots=True)
class Token:
    name: str
    sha256: str  # lowercase hex digest of the token
    roles: frozenset[str]
    tenants: frozenset[str] | None = None  # None: every tenant


GLOBAL_ROLES = frozenset({"operate", "admin"})  # never limited to tenants


@dataclass(frozen=True, slots=True)
class Principal:
    name: str
    roles: frozenset[str]  # with implied roles expanded
    tenants: frozenset[str] | None = None  # None: every tenant

    def may(self, needed: Iterable[str]) -> bool:
        return any(role in self.roles for role in needed)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class AuthError(Exception):
    """401 (no or unknown token) or 403 (token lacks the role)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


class Authenticator:
    def __init__(self, tokens: Iterable[Token]) -> None:
        self.tokens = list(tokens)

    @property
    def enabled(self) -> bool:
        return bool(self.tokens)

    def identify(self, authorization: str | None) -> Principal:
        """The caller of an ``Authorization`` header; raises AuthError(401)."""
        if not authorization:
            raise AuthError(401, "missing bearer token")
        scheme, _, presented = authorization.partition(" ")
        if scheme.lower() != "bearer" or not presented.strip():
            raise AuthError(401, "expected 'Authorization: Bearer <token>'")
        digest = hash_token(presented.strip()).encode()
        found: Token | None = None
        for token in self.tokens:  # compare with all: time does not depend on which matched
            if hmac.compare_digest(digest, token.sha256.lower().encode()):
                found = token
        if found is None:
            raise AuthError(401, "unknown token")
        roles: set[str] = set()
        for role in found.roles:
            roles |= IMPLIED.get(role, frozenset())
        tenants = None if found.roles & GLOBAL_ROLES else found.tenants
        return Principal(found.name, frozenset(roles), tenants)

    def authorize(self, authorization: str | None, needed: Iterable[str]) -> Principal | None:
        """None when auth is off; the principal when allowed; AuthError otherwise."""
        if not self.enabled:
            return None
        principal = self.identify(authorization)
        needed = tuple(needed)
        if not principal.may(needed):
            raise AuthError(403, f"needs one of the roles: {', '.join(needed)}")
        return principal
