"""roomwire signaling: tokens, rooms, presence and peer signaling over Socket.IO.

The names below load on first use, so that importing `roomwire.signaling.protocol` (what bots
and the SFU share with the server) does not import the server itself.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .backend import Retention, StateBackend
    from .media_backend import MediaBackend, MediaSession, MediaSignaling
    from .memory_backend import MemoryBackend
    from .protocol import Grants, ProtocolError
    from .rate_limit import RateLimit
    from .server import RUNNER_OPTIONS, SignalingServer
    from .tokens import Claims, TokenIssuer
    from .turn import TurnCredentials

_EXPORTS = {
    "Claims": "tokens",
    "Grants": "protocol",
    "MediaBackend": "media_backend",
    "MediaSession": "media_backend",
    "MediaSignaling": "media_backend",
    "MemoryBackend": "memory_backend",
    "ProtocolError": "protocol",
    "RUNNER_OPTIONS": "server",
    "RateLimit": "rate_limit",
    "Retention": "backend",
    "SignalingServer": "server",
    "StateBackend": "backend",
    "TokenIssuer": "tokens",
    "TurnCredentials": "turn",
}

__all__ = [
    "RUNNER_OPTIONS",
    "Claims",
    "Grants",
    "MediaBackend",
    "MediaSession",
    "MediaSignaling",
    "MemoryBackend",
    "ProtocolError",
    "RateLimit",
    "Retention",
    "SignalingServer",
    "StateBackend",
    "TokenIssuer",
    "TurnCredentials",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{module}", __name__), name)
