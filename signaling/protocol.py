"""Wire-protocol constants and the one error type every transport reports (PROTOCOL.md)."""

from __future__ import annotations

import re
from typing import Any

PROTOCOL_VERSION = 1

ROOM_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
EPOCH_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
MAX_IDENTITY_LENGTH = 128
MAX_NAME_LENGTH = 128
MAX_METADATA_BYTES = 4 * 1024
MAX_MESSAGE_BYTES = 64 * 1024
MAX_SIGNAL_BYTES = 64 * 1024
MAX_SDP_BYTES = 128 * 1024
# Engine.IO closes the connection above this; everything below is answered in the ack.
MAX_PACKET_BYTES = 1024 * 1024

TRANSPORTS = ("websocket", "polling", "sse", "longpoll", "bot")
SIGNAL_TYPES = ("offer", "answer", "candidate", "bye")
PRESENCE_TYPES = ("join", "leave", "update", "track")
TRACK_KINDS = ("audio", "video")

# code -> HTTP status
ERROR_STATUS: dict[str, int] = {
    "bad_request": 400,
    "unauthorized": 401,
    "forbidden": 403,
    "not_found": 404,
    "conflict": 409,
    "too_large": 413,
    "rate_limited": 429,
    "internal": 500,
}


class ProtocolError(Exception):
    """An error a client is told about, in the protocol's one error format."""

    def __init__(self, code: str, message: str) -> None:
        if code not in ERROR_STATUS:
            raise ValueError(f"unknown error code {code!r}")
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def status(self) -> int:
        return ERROR_STATUS[self.code]

    def body(self) -> dict[str, Any]:
        """The HTTP body."""
        return {"error": {"code": self.code, "message": self.message}}

    def ack(self) -> dict[str, Any]:
        """The Socket.IO ack."""
        return {"ok": False, "error": {"code": self.code, "message": self.message}}


def bad_request(message: str) -> ProtocolError:
    return ProtocolError("bad_request", message)


def valid_room(room: object) -> bool:
    return isinstance(room, str) and ROOM_PATTERN.fullmatch(room) is not None


def valid_identity(identity: object) -> bool:
    return isinstance(identity, str) and 1 <= len(identity) <= MAX_IDENTITY_LENGTH
