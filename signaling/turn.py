"""TURN REST credentials: the scheme coturn calls `use-auth-secret` (`static-auth-secret`).

The signaling server and the TURN server share one secret. For each participant the server
mints a username `<unix expiry>:<identity>` and its password base64(HMAC-SHA1(secret,
username)); the TURN server recomputes the password from the username and refuses it after the
expiry. Nothing is stored, credentials are per participant and die by themselves, and the
shared secret never reaches a client.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Sequence
from typing import Any

from .protocol import TURN_SCHEMES

DEFAULT_TTL = 3600
MAX_TTL = 24 * 3600  # coturn's own default limit; a longer-lived password is a leaked password


class TurnCredentials:
    """Mints the `iceServers` entry of one participant for the TURN servers at `urls`.

    turn = TurnCredentials(["turn:turn.example:3478?transport=udp"], secret="shared with coturn")
    turn.ice_server("alice")  # {"urls": [...], "username": "1767225600:alice", "credential": "..."}
    """

    def __init__(self, urls: str | Sequence[str], secret: str, ttl: int = DEFAULT_TTL) -> None:
        urls = [urls] if isinstance(urls, str) else list(urls)
        if not urls:
            raise ValueError("TURN credentials need at least one turn: or turns: URL")
        for url in urls:
            if not url.startswith(TURN_SCHEMES):
                raise ValueError(f"{url!r} is not a TURN URL: use turn:HOST:PORT?transport=udp (or turns:)")
        if not secret:
            raise ValueError("TURN credentials need the secret that the TURN server has as static-auth-secret")
        if not 1 <= ttl <= MAX_TTL:
            raise ValueError(f"the TURN credential lifetime must be 1..{MAX_TTL} seconds (24 h), not {ttl}")
        self.urls = tuple(urls)
        self.ttl = ttl
        self._secret = secret.encode()

    def __repr__(self) -> str:  # without the secret: this may end up in a log
        return f"TurnCredentials(urls={list(self.urls)!r}, ttl={self.ttl})"

    def ice_server(self, identity: str, now: float | None = None) -> dict[str, Any]:
        """`{urls, username, credential}` for `identity`, valid for `ttl` seconds from `now`."""
        expiry = int(time.time() if now is None else now) + self.ttl
        username = f"{expiry}:{identity}"
        digest = hmac.new(self._secret, username.encode(), hashlib.sha1).digest()
        return {"urls": list(self.urls), "username": username, "credential": base64.b64encode(digest).decode()}
