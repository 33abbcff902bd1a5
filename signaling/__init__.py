"""roomwire signaling: tokens, rooms, presence and peer signaling over Socket.IO."""

from .backend import Retention, StateBackend
from .media_backend import MediaBackend, MediaSession, MediaSignaling
from .memory_backend import MemoryBackend
from .protocol import ProtocolError
from .rate_limit import RateLimit
from .server import SignalingServer
from .tokens import Claims, Grants, TokenIssuer

__all__ = [
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
]
