"""Bearer-token authentication: every route declares exactly one of public/reader/approver.

Tokens come from ``Settings.reader_tokens`` and ``Settings.approver_tokens`` (identity ->
token). A presented token is compared with *every* configured token using
``hmac.compare_digest`` (no early exit), so the time taken does not reveal which token or how
much of it matched. Tokens are never logged or echoed; only the identity is.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Literal

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import SecretStr

log = logging.getLogger(__name__)
Role = Literal["anonymous", "reader", "approver"]
CHALLENGE = {"WWW-Authenticate": "Bearer"}


@dataclass(frozen=True)
class Identity:
    """Who made a request: the configured identity of the token, and its role."""

    name: str
    role: Role


ANONYMOUS = Identity("anonymous", "anonymous")


class Authenticator:
    """Resolves bearer tokens to identities (built once per app from the settings)."""

    def __init__(
        self,
        reader_tokens: Mapping[str, SecretStr | str],
        approver_tokens: Mapping[str, SecretStr | str],
    ):
        self._tokens: list[tuple[Identity, bytes]] = []
        # Approvers first: a token configured in both lists acts as an approver.
        for role, tokens in (("approver", approver_tokens), ("reader", reader_tokens)):
            for name, secret in tokens.items():
                token = secret.get_secret_value() if isinstance(secret, SecretStr) else secret
                if not token:
                    log.warning("ignoring the empty %s token of %r", role, name)
                    continue
                self._tokens.append((Identity(name, role), token.encode("utf-8")))  # type: ignore[arg-type]
        self.open_reads = not reader_tokens and not approver_tokens
        self.has_approvers = any(i.role == "approver" for i, _ in self._tokens)

    def identify(self, token: str | None) -> Identity | None:
        """The identity of a token, or None. Compares with every token, without early exit."""
        if not token:
            return None
        given = token.encode("utf-8", "surrogateescape")
        found: Identity | None = None
        for identity, secret in self._tokens:
            if hmac.compare_digest(secret, given) and found is None:
                found = identity
        return found


bearer = HTTPBearer(auto_error=False, description="A reader or approver token.")
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]


# The dependencies are ``async`` (they only compare tokens in memory) so FastAPI runs them on
# the event loop instead of paying a thread-pool hop on every request.
def _authenticator(request: Request) -> Authenticator:
    return request.app.state.authenticator


def _unauthorized(credentials: HTTPAuthorizationCredentials | None) -> HTTPException:
    reason = "unknown bearer token" if credentials else "missing bearer token"
    return HTTPException(status.HTTP_401_UNAUTHORIZED, reason, headers=CHALLENGE)


async def public() -> None:
    """Route dependency: no authentication (health and metrics)."""


async def reader(request: Request, credentials: Credentials) -> Identity:
    """Route dependency: a reader or approver token; open when no tokens are configured."""
    auth = _authenticator(request)
    if auth.open_reads:
        return ANONYMOUS
    identity = auth.identify(credentials.credentials if credentials else None)
    if identity is None:
        raise _unauthorized(credentials)
    return identity


async def approver(request: Request, credentials: Credentials) -> Identity:
    """Route dependency: an approver token (never open, even when no tokens are configured)."""
    auth = _authenticator(request)
    if not auth.has_approvers:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "no approver tokens configured")
    identity = auth.identify(credentials.credentials if credentials else None)
    if identity is None:
        raise _unauthorized(credentials)
    if identity.role != "approver":
        raise HTTPException(status.HTTP_403_FORBIDDEN, "this route needs an approver token")
    return identity


AUTH_DEPENDENCIES = (public, reader, approver)
Public = Depends(public)
Reader = Annotated[Identity, Depends(reader)]
Approver = Annotated[Identity, Depends(approver)]
