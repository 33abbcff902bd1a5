"""Every use of python-socketio's and python-engineio's internals (and of aiohttp's WebSocket
parser queue), in one place, pinned.

roomwire needs what the libraries do not offer as public API:
- one JSON codec (orjson) for every Socket.IO packet, so that what a client may send is judged
  by the encoder that writes every answer (docs/protocol.md, "JSON rules") (`packets.py`);
- client event frames that python-socketio mishandles answered in their ack instead: reserved
  names (it hands `connect`/`disconnect` sent as events to the connection handlers), names
  that are not strings, frames whose JSON does not decode (it raises and logs a traceback),
  and binary packets or text ones it reads an attachment count from (a pending one swallows
  the socket's next frames) (`packets.py`, `socket_server.py`);
- a bounded send queue per Engine.IO socket (it is unbounded: a client that stops reading
  grows the server without limit) and deadlines for sockets that never complete, or were
  refused, a Socket.IO connect (`engine.py`, `socket_server.py`);
- the CPU and memory of Node's socket.io or less (docs/benchmarks.md): WebSocket frames
  written straight to the connection, one per broadcast and one writev per socket per pass
  of the event loop, instead of a writer task behind a queue and a task and a timer per packet
  (`wire.py`, `engine.py`); one timer for every socket's heartbeat instead of a task per ping
  and a monitor task (`heartbeats.py`); permessage-deflate refused where the WebSocket is made;
  the environ read from the request instead of copied; event frames taken from aiohttp's
  WebSocket parser as it reads them, not through a reader task woken per message
  (`frames.py`); the usual event frame read in one pass instead of python-socketio's
  character-by-character decode (`packets.py`); events dispatched and answered without
  python-socketio's wrappers, an eager event's handler in the pass that read its frame
  without a task of its own (`eager.py`), an emit to one connection without a room lookup;
  broadcasts without a task per recipient and disconnects that look at the sid's own rooms
  only (`socket_server.py`);
- whether this node has members in a Socket.IO room.

Where roomwire replaces a library method whole, the test of this package pins that method's
source: tests/signaling/test_socketio_internals.py fails loudly when a release moves or changes
any of them, and `verify()` refuses to start against another release than the pinned one.
"""

from __future__ import annotations

from importlib.metadata import version

from .engine import EngineServer, EngineSocket, RequestEnviron, SocketLimits, WebSocketDriver
from .heartbeats import HEARTBEAT_TICK, Heartbeats
from .packets import OrjsonCodec, RefusedPayload, WirePacket, encoded, plain_event
from .socket_server import DirectEmitManager, SocketServer, has_local_members
from .wire import Message, SendQueue, Wire, websocket_frame

__all__ = [
    "HEARTBEAT_TICK",
    "DirectEmitManager",
    "EngineServer",
    "EngineSocket",
    "Heartbeats",
    "IncompatibleSocketIO",
    "Message",
    "OrjsonCodec",
    "RefusedPayload",
    "RequestEnviron",
    "SendQueue",
    "SocketLimits",
    "SocketServer",
    "WebSocketDriver",
    "Wire",
    "WirePacket",
    "encoded",
    "has_local_members",
    "plain_event",
    "verify",
    "websocket_frame",
]

PINNED = {"python-socketio": "5.18.1", "python-engineio": "4.15.1"}
# aiohttp: the minor release whose WebSocket response and parser queue frames.py was written against
AIOHTTP_SERIES = "3.14"


class IncompatibleSocketIO(RuntimeError):
    """python-socketio/engineio are not the releases whose internals this package was written against."""


def verify() -> None:
    found = {name: version(name) for name in PINNED}
    aiohttp = version("aiohttp")
    if found != PINNED or not aiohttp.startswith(f"{AIOHTTP_SERIES}."):
        raise IncompatibleSocketIO(
            f"roomwire relies on the internals of {PINNED} and aiohttp {AIOHTTP_SERIES}.x; "
            f"found {found}, aiohttp {aiohttp}"
        )
