"""The wire protocol (docs/protocol.md): its limits, its shapes, its one error type, and the one
rule for what JSON a client may send.

Bots and the SFU import this module and nothing else of the server, so it needs nothing but
orjson: no aiohttp server, no python-socketio, no JWT.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Any, Literal, NotRequired, TypedDict

import orjson

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
# Objects and arrays in any JSON a client sends, the outermost one included. Far above what a
# real payload needs, far below what breaks an encoder (orjson stops at 254 levels).
MAX_JSON_DEPTH = 32

SIGNAL_TYPES = ("offer", "answer", "candidate", "bye")
# the schemes of the `iceServers` URLs that are TURN servers (RFC 7065)
TURN_SCHEMES = ("turn:", "turns:")
# `from` of a message the server (REST, an embedding app) sends: no participant may have it.
SERVER_IDENTITY = "server"
# `kicked {reason}` for a connection whose participant the room no longer lists (it was removed
# while its node could not reach the shared state): clients connect and join again. Other
# reasons ("replaced", "removed", an app's own) mean: stay out.
REJOIN = "rejoin"
# Socket.IO's reserved event names (its emit-reserved list plus the connection events):
# a client event with one of these names is refused, never dispatched.
RESERVED_EVENTS = frozenset(
    {"connect", "connect_error", "disconnect", "disconnecting", "newListener", "removeListener"}
)

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
    "unavailable": 503,
}


# -- wire shapes -----------------------------------------------------------------------------


class Track(TypedDict):
    sid: str
    kind: Literal["audio", "video"]
    source: str


class Participant(TypedDict):
    identity: str
    name: str
    metadata: dict[str, Any]
    joinedAt: int  # ms since the epoch
    transport: Literal["websocket", "polling", "sse", "longpoll", "bot"]
    tracks: list[Track]


class PresenceEvent(TypedDict):
    type: Literal["join", "leave", "update", "track"]
    participant: Participant
    epoch: str
    offset: int
    ts: int  # ms since the epoch


# `from` is an identity, or SERVER_IDENTITY (a keyword in Python, hence this spelling)
Message = TypedDict("Message", {"id": str, "from": str, "data": Any, "ts": int})


class ErrorBody(TypedDict):
    code: str
    message: str


class Ack(TypedDict):
    """Every client event's answer: `{ok: true, ...}` or `{ok: false, error}`."""

    ok: bool
    error: NotRequired[ErrorBody]


@dataclass(frozen=True, slots=True)
class Grants:
    publish: bool = True
    subscribe: bool = True
    data: bool = True
    admin: bool = False

    @classmethod
    def parse(cls, raw: object) -> Grants:
        if raw is None:
            return _grants()
        if not isinstance(raw, dict):
            raise ValueError("grants must be an object")
        unknown = set(raw) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown grants: {', '.join(sorted(unknown))}")
        for key, value in raw.items():
            if not isinstance(value, bool):
                raise ValueError(f"grant {key!r} must be a boolean")
        return _grants(**raw)


@functools.cache
def _grants(publish: bool = True, subscribe: bool = True, data: bool = True, admin: bool = False) -> Grants:
    # one instance per combination (there are 16), shared by every connection that has it
    return Grants(publish, subscribe, data, admin)


# -- errors ----------------------------------------------------------------------------------


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


# -- rules -----------------------------------------------------------------------------------


def valid_room(room: object) -> bool:
    return isinstance(room, str) and ROOM_PATTERN.fullmatch(room) is not None


def valid_identity(identity: object) -> bool:
    return isinstance(identity, str) and 1 <= len(identity) <= MAX_IDENTITY_LENGTH


def encoded_json(value: Any, what: str = "the payload") -> bytes:
    """`value` as the JSON the server will send on: the test of each value a client sends
    (names, metadata, message and signal data, REST bodies). A socket event's payload as a whole
    was decoded by orjson and needs only `check_depth` (socket_api.require_object).

    The encoder that writes every answer (orjson) is the one that judges, so nothing accepted
    here can fail later on its way out: strings must be valid UTF-8 (no lone surrogates),
    integers fit 64 bits, and objects and arrays nest at most MAX_JSON_DEPTH levels.
    """
    check_depth(value, what)
    try:
        return orjson.dumps(value)
    except (TypeError, orjson.JSONEncodeError) as exc:
        raise bad_request(f"{what} is not valid JSON: {exc}") from None


_CONTAINERS = (dict, list, tuple)  # a tuple: `dict | list | tuple` builds a new union at every call


def check_depth(value: Any, what: str = "the payload") -> None:
    """Refuse a value whose objects and arrays nest deeper than MAX_JSON_DEPTH levels."""
    if _depth_exceeds(value, MAX_JSON_DEPTH):
        raise bad_request(f"{what} nests deeper than {MAX_JSON_DEPTH} levels of objects and arrays")


def _depth_exceeds(value: Any, limit: int) -> bool:
    # Iterative: a value nested far deeper than the interpreter's recursion limit must not
    # crash the check meant to refuse it.
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, _CONTAINERS):
            children = item
        else:
            continue
        if depth > limit:
            return True
        for child in children:
            if isinstance(child, _CONTAINERS):
                stack.append((child, depth + 1))
    return False


def check_name(name: object) -> str:
    if not isinstance(name, str) or len(name) > MAX_NAME_LENGTH:
        raise bad_request(f"name must be a string of at most {MAX_NAME_LENGTH} characters")
    encoded_json(name, "name")
    return name


def check_metadata(metadata: object) -> dict[str, Any]:
    if not isinstance(metadata, dict):
        raise bad_request("metadata must be a JSON object")
    size = len(encoded_json(metadata, "metadata"))
    if size > MAX_METADATA_BYTES:
        raise ProtocolError("too_large", f"metadata is {size} bytes encoded; the limit is {MAX_METADATA_BYTES}")
    return metadata


def check_data(value: Any, limit: int, what: str) -> Any:
    """A `data` field (message, signal): valid JSON of at most `limit` bytes encoded."""
    if len(encoded_json(value, what)) > limit:
        raise ProtocolError("too_large", f"{what} is limited to {limit} bytes")
    return value


def parse_message(payload: dict[str, Any]) -> tuple[Any, str | None]:
    """A `message` payload (Socket.IO event or REST body): its `data` and optional `to`."""
    if "data" not in payload:
        raise bad_request("`data` is required")
    to = payload.get("to")
    if to is not None and not valid_identity(to):
        raise bad_request("`to` must be a participant's identity")
    return check_data(payload["data"], MAX_MESSAGE_BYTES, "message data"), to
