"""Access tokens: HS256 JWTs minted by `TokenIssuer` and checked on every transport."""

from __future__ import annotations

import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

import jwt

from .protocol import (
    SERVER_IDENTITY,
    Grants,
    ProtocolError,
    bad_request,
    check_metadata,
    check_name,
    encoded_json,
    valid_identity,
    valid_room,
)

ALGORITHM = "HS256"
DEFAULT_TTL = 3600
MAX_TTL = 7 * 24 * 3600
MIN_SECRET_BYTES = 32


@dataclass(frozen=True, slots=True)
class Claims:
    identity: str
    room: str | None
    name: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    grants: Grants = field(default_factory=Grants)
    expires_at: int = 0

    def require_room(self, room: str) -> None:
        """A room token only opens its own room; an admin token opens every room."""
        if self.grants.admin and self.room is None:
            return
        if self.room != room:
            raise ProtocolError("forbidden", "this token is for another room")


def claims_from_payload(payload: dict[str, Any]) -> Claims:
    """Validate a decoded JWT payload against the protocol's claim rules (`bad_request`)."""
    identity = payload.get("sub")
    if not valid_identity(identity):
        raise bad_request("sub must be a string of 1 to 128 characters")
    encoded_json(identity, "sub")
    if identity == SERVER_IDENTITY:
        raise bad_request(f"the identity {SERVER_IDENTITY!r} is reserved for messages from the server")
    try:
        grants = Grants.parse(payload.get("grants"))
    except ValueError as exc:
        raise bad_request(str(exc)) from None
    room = payload.get("room")
    if room is None and not grants.admin:
        raise bad_request("room is required unless the token is an admin token")
    if room is not None and not valid_room(room):
        raise bad_request("room must match ^[A-Za-z0-9_-]{1,64}$")
    return Claims(
        identity=identity,
        room=room,
        name=check_name(payload.get("name", "")),
        metadata=check_metadata(payload.get("metadata", {})),
        grants=grants,
        expires_at=int(payload["exp"]),
    )


class TokenIssuer:
    """Mints and verifies access tokens with one server secret."""

    def __init__(self, secret: str) -> None:
        if len(secret.encode()) < MIN_SECRET_BYTES:
            raise ValueError(f"the secret must be at least {MIN_SECRET_BYTES} bytes long")
        self._secret = secret

    def __repr__(self) -> str:  # never show the secret in logs or tracebacks
        return "TokenIssuer(secret=<hidden>)"

    def mint(
        self,
        *,
        identity: str,
        room: str | None,
        name: str = "",
        metadata: dict[str, Any] | None = None,
        grants: Grants | None = None,
        ttl: int = DEFAULT_TTL,
    ) -> str:
        """Mint a token; raises ProtocolError(`bad_request`) on claims the protocol forbids."""
        if not isinstance(ttl, int) or isinstance(ttl, bool) or not 1 <= ttl <= MAX_TTL:
            raise bad_request(f"ttl must be an integer number of seconds from 1 to {MAX_TTL}")
        now = int(time.time())
        payload: dict[str, Any] = {
            "sub": identity,
            "iat": now,
            "exp": now + ttl,
            "jti": uuid.uuid4().hex,
            "grants": asdict(grants or Grants()),
        }
        if room is not None:
            payload["room"] = room
        if name:
            payload["name"] = name
        if metadata:
            payload["metadata"] = metadata
        claims_from_payload(payload)  # refuse to mint what we would refuse to accept
        return jwt.encode(payload, self._secret, algorithm=ALGORITHM)

    def verify(self, token: object) -> Claims:
        """Return the token's claims, or raise ProtocolError('unauthorized')."""
        if not isinstance(token, str) or not token:
            raise ProtocolError("unauthorized", "a token is required")
        try:
            payload = jwt.decode(
                token,
                self._secret,
                algorithms=[ALGORITHM],
                options={"require": ["exp", "sub"]},
            )
        except jwt.ExpiredSignatureError:
            raise ProtocolError("unauthorized", "the token has expired") from None
        except jwt.ImmatureSignatureError:
            raise ProtocolError("unauthorized", "the token is not valid yet (nbf)") from None
        except jwt.InvalidSignatureError:
            raise ProtocolError("unauthorized", "the token's signature is invalid") from None
        except jwt.PyJWTError as exc:
            raise ProtocolError("unauthorized", f"invalid token: {exc}") from None
        try:
            return claims_from_payload(payload)
        except ProtocolError as exc:
            raise ProtocolError("unauthorized", f"invalid token claims: {exc.message}") from None
