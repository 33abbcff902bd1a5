"""Wire-protocol constants and the one error type every transport reports (PROTOCOL.md)."""

from __future__ import annotations

import re
from typing import Any

import orjson

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


def encoded_size(value: Any) -> int:
    """Bytes of `value` as JSON: the size limits count what travels on the wire."""
    try:
        return len(orjson.dumps(value))
    except TypeError:
        raise bad_request("data must be JSON") from None


def parse_message(payload: dict[str, Any]) -> tuple[Any, str | None]:
    """A `message` payload (Socket.IO event or REST body): its `data` and optional `to`."""
    if "data" not in payload:
        raise bad_request("`data` is required")
    to = payload.get("to")
    if to is not None and not valid_identity(to):
        raise bad_request("`to` must be a participant's identity")
    if encoded_size(payload["data"]) > MAX_MESSAGE_BYTES:
        raise ProtocolError("too_large", f"message data is limited to {MAX_MESSAGE_BYTES} bytes")
    return payload["data"], to
