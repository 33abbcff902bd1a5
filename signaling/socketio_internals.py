"""Every use of python-socketio's and python-engineio's internals, in one place, pinned.

roomwire needs five things the libraries do not offer as public API:
- one JSON codec (orjson) for every Socket.IO packet, so that what a client may send is judged
  by the encoder that writes every answer (docs/protocol.md, "JSON rules");
- client event frames that python-socketio mishandles answered in their ack instead: reserved
  names (it hands `connect`/`disconnect` sent as events to the connection handlers), names
  that are not strings, and frames whose JSON does not decode (it raises and logs a traceback);
- a bounded send queue per Engine.IO socket (it is unbounded: a client that stops reading
  grows the server without limit) and deadlines for sockets that never complete, or were
  refused, a Socket.IO connect;
- a broadcast without one asyncio task per recipient (`DirectEmitManager`);
- whether this node has members in a Socket.IO room.

tests/signaling/test_socketio_internals.py fails loudly when a release moves any of them, and
`verify()` refuses to start against another release than the pinned one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any

import engineio
import orjson
import socketio
from socketio import packet as sio_packet

from .protocol import RESERVED_EVENTS

log = logging.getLogger("roomwire.socketio")

PINNED = {"python-socketio": "5.18.1", "python-engineio": "4.15.1"}

# (sid, why) -> the ack to send: the composition root points it at the API's guard, so that
# refused frames are rate limited and counted like any other event.
RefusedHandler = Callable[[str, str], Awaitable[dict[str, Any]]]
# (eio_sid, why) for a socket dropped by the server for its own protection.
DroppedHandler = Callable[[str, str], None]


class IncompatibleSocketIO(RuntimeError):
    """python-socketio/engineio are not the releases whose internals this module was written against."""


def verify() -> None:
    found = {name: version(name) for name in PINNED}
    if found != PINNED:
        raise IncompatibleSocketIO(f"roomwire relies on the internals of {PINNED}; found {found}")


class OrjsonCodec:
    """The `json` module interface python-socketio calls (`dumps`, `loads`), backed by orjson."""

    @staticmethod
    def dumps(value: Any, **_: Any) -> str:
        return orjson.dumps(value).decode()

    @staticmethod
    def loads(text: str | bytes, **_: Any) -> Any:
        return orjson.loads(text)


@dataclass(frozen=True)
class RefusedPayload:
    """Stands for the data of a packet whose JSON orjson refused, so that the event is still
    dispatched (its ack id was read before the JSON) and answered with `why`."""

    why: str


class WirePacket(sio_packet.Packet):
    """Socket.IO packets encoded and decoded by orjson. roomwire sends no binary, so the walk
    over every payload looking for bytes is skipped."""

    json = OrjsonCodec
    uses_binary_events = False

    def decode(self, encoded_packet: str) -> int:
        try:
            return super().decode(encoded_packet)
        except orjson.JSONDecodeError as exc:  # raised by the JSON, the last thing decode() reads
            self.data = RefusedPayload(f"the event's JSON is not valid: {exc}")
            return 0


@dataclass(frozen=True)
class SocketLimits:
    """Per Engine.IO socket: what may wait to be written to it, and how long it may take to
    complete its Socket.IO connect."""

    queued_packets: int = 8192
    queued_bytes: int = 4 * 1024 * 1024
    connect_timeout: float = 10.0
    close_after_refusal: float = 2.0


# A socket cut off politely gets this long to read Engine.IO's close packet before its TCP
# connection is aborted anyway.
GOODBYE_SECONDS = 1.0


class SendQueue(asyncio.Queue):  # type: ignore[type-arg]
    """An Engine.IO socket's outgoing queue that knows how many bytes it holds."""

    def _init(self, maxsize: int) -> None:
        super()._init(maxsize)  # type: ignore[misc]
        self.bytes = 0

    def _put(self, item: Any) -> None:
        super()._put(item)  # type: ignore[misc]
        self.bytes += _packet_bytes(item)

    def _get(self) -> Any:
        item = super()._get()  # type: ignore[misc]
        self.bytes -= _packet_bytes(item)
        return item


def _packet_bytes(item: Any) -> int:
    data = getattr(item, "data", None)
    return len(data) if isinstance(data, str | bytes) else 0


class EngineServer(engineio.AsyncServer):
    """Engine.IO with a bounded send queue per socket, and sockets that can be cut off.

    Closing an Engine.IO socket does not close its WebSocket: the library keeps reading (and
    answering pongs) until the client goes. So each socket keeps the TCP transport of its
    WebSocket request, which `cut` closes.
    """

    limits = SocketLimits()
    on_dropped: DroppedHandler | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        websocket = self._async["websocket"]

        def tracked_websocket(handler: Any, server: Any) -> Callable[[dict[str, Any]], Awaitable[Any]]:
            inner = websocket(handler, server)
            socket = handler.__self__  # the handler is the socket's bound `_websocket_handler`

            async def run(environ: dict[str, Any]) -> Any:
                socket.roomwire_transport = getattr(environ.get("aiohttp.request"), "transport", None)
                return await inner(environ)

            return run

        self._async = {**self._async, "websocket": tracked_websocket}

    def create_queue(self, *args: Any, **kwargs: Any) -> asyncio.Queue:  # type: ignore[type-arg]
        return SendQueue(*args, **kwargs)

    async def send_packet(self, sid: str, pkt: Any) -> None:
        socket = self.sockets.get(sid)
        if socket is None or socket.closed or socket.closing:
            return
        queue = socket.queue
        if queue.qsize() >= self.limits.queued_packets or queue.bytes + _packet_bytes(pkt) > self.limits.queued_bytes:
            why = f"its send queue is full ({queue.qsize()} packets, {queue.bytes} bytes unread)"
            if self.on_dropped is not None:
                self.on_dropped(sid, why)
            await self.cut(sid, at_once=True)
            return
        await socket.send(pkt)

    async def cut(self, sid: str, *, at_once: bool) -> None:
        """Close a socket and its WebSocket connection; `at_once` discards what is unsent (for
        a client that does not read), else the client gets Engine.IO's close packet first."""
        socket = self.sockets.get(sid)
        if socket is None:
            return
        transport = getattr(socket, "roomwire_transport", None)
        await socket.close(wait=False, abort=at_once, reason=self.reason.SERVER_DISCONNECT)
        if transport is not None:
            if at_once:
                transport.abort()
            else:
                asyncio.get_running_loop().call_later(GOODBYE_SECONDS, transport.abort)


class SocketServer(socketio.AsyncServer):
    """python-socketio's server with roomwire's rules at the door (see the module docstring)."""

    def __init__(self, *, limits: SocketLimits, dropped: Callable[[], None] | None = None, **options: Any) -> None:
        super().__init__(serializer=WirePacket, **options)
        self.eio.limits = limits
        self.eio.on_dropped = self._dropped
        self._count_dropped = dropped
        self._on_refused: RefusedHandler | None = None
        self._deadlines: dict[str, asyncio.TimerHandle] = {}
        self._closing: set[asyncio.Future[None]] = set()

    def _engineio_server_class(self) -> type[engineio.AsyncServer]:
        return EngineServer

    def on_refused(self, handler: RefusedHandler) -> None:
        """Answer refused event frames (reserved or non-string names, undecodable JSON)."""
        self._on_refused = handler

    # -- frames python-socketio would mishandle ------------------------------------------------

    async def _handle_eio_message(self, eio_sid: str, data: Any) -> None:
        try:
            await super()._handle_eio_message(eio_sid, data)
        except ValueError as exc:  # a frame the decoder cannot read at all: nothing to answer
            log.debug("dropped an unreadable packet from %s: %s", eio_sid, exc)

    async def _handle_event(self, eio_sid: str, namespace: str | None, id: int | None, data: Any) -> None:
        if isinstance(data, RefusedPayload):
            await self._refuse(eio_sid, namespace, id, data.why)
        elif not isinstance(data, list) or not data or not isinstance(data[0], str):
            await self._refuse(eio_sid, namespace, id, "an event's name must be a string")
        elif data[0] in RESERVED_EVENTS:
            await self._refuse(eio_sid, namespace, id, f"{data[0]!r} is a reserved event name")
        else:
            await super()._handle_event(eio_sid, namespace, id, data)

    async def _refuse(self, eio_sid: str, namespace: str | None, id: int | None, why: str) -> None:
        sid = self.manager.sid_from_eio_sid(eio_sid, namespace or "/")
        if sid is None or not self.manager.is_connected(sid, namespace or "/"):
            ack = {"ok": False, "error": {"code": "unauthorized", "message": "connect to the namespace first"}}
        elif self._on_refused is not None:
            ack = await self._on_refused(sid, why)
        else:
            ack = {"ok": False, "error": {"code": "bad_request", "message": why}}
        if id is not None:
            await self._send_packet(eio_sid, self.packet_class(sio_packet.ACK, namespace=namespace, id=id, data=[ack]))

    # -- deadlines ---------------------------------------------------------------------------

    async def _handle_eio_connect(self, eio_sid: str, environ: dict[str, Any]) -> None:
        await super()._handle_eio_connect(eio_sid, environ)
        self._close_unless_connected(eio_sid, self.eio.limits.connect_timeout)

    async def _handle_connect(self, eio_sid: str, namespace: str | None, data: Any) -> None:
        await super()._handle_connect(eio_sid, namespace, data)
        if self.manager.sid_from_eio_sid(eio_sid, namespace or "/") is None:  # refused
            self._close_unless_connected(eio_sid, self.eio.limits.close_after_refusal)
        else:
            self._cancel_deadline(eio_sid)

    async def _handle_eio_disconnect(self, eio_sid: str, reason: Any = None) -> None:
        self._cancel_deadline(eio_sid)
        await super()._handle_eio_disconnect(eio_sid, reason)

    def _cancel_deadline(self, eio_sid: str) -> None:
        deadline = self._deadlines.pop(eio_sid, None)
        if deadline is not None:
            deadline.cancel()

    def _close_unless_connected(self, eio_sid: str, delay: float) -> None:
        self._cancel_deadline(eio_sid)
        loop = asyncio.get_running_loop()
        self._deadlines[eio_sid] = loop.call_later(delay, self._deadline_passed, eio_sid)

    def _deadline_passed(self, eio_sid: str) -> None:
        self._deadlines.pop(eio_sid, None)
        if self.manager.sid_from_eio_sid(eio_sid, "/") is None and eio_sid in self.eio.sockets:
            log.debug("closing %s: no Socket.IO connection was made", eio_sid)
            task = asyncio.ensure_future(self.eio.cut(eio_sid, at_once=False))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    def _dropped(self, eio_sid: str, why: str) -> None:
        log.warning("dropping connection %s: %s", eio_sid, why)
        if self._count_dropped is not None:
            self._count_dropped()


class DirectEmitManager(socketio.AsyncManager):
    """Broadcasts without one asyncio task per recipient.

    python-socketio's `AsyncManager.emit` wraps each recipient's send in `asyncio.create_task`
    and waits for them all. The send only puts the already-encoded packet on that socket's
    queue (the socket's own writer task does the I/O), so a plain loop does the same work, in
    order, at about a tenth of the CPU (bench/signaling.py: 131 -> 13 µs per presence delivery
    to 200 members). Emits that carry a callback (an ack id per recipient) take the stock path.
    """

    async def emit(
        self,
        event: str,
        data: Any,
        namespace: str,
        room: str | None = None,
        skip_sid: Any = None,
        callback: Any = None,
        to: str | None = None,
        **kwargs: Any,
    ) -> None:
        if callback is not None or namespace not in self.rooms:
            await super().emit(event, data, namespace, room=room, skip_sid=skip_sid, callback=callback, to=to, **kwargs)
            return
        args = list(data) if isinstance(data, tuple) else [] if data is None else [data]
        encoded = self.server.packet_class(sio_packet.EVENT, namespace=namespace, data=[event, *args]).encode()
        packet = engineio.packet.Packet(engineio.packet.MESSAGE, encoded)
        skip = skip_sid if isinstance(skip_sid, list) else [skip_sid]
        # A snapshot: a send that finds a timed-out client closes it, which changes the rooms.
        recipients = [eio_sid for sid, eio_sid in self.get_participants(namespace, to or room) if sid not in skip]
        for eio_sid in recipients:
            await self.server.eio.send_packet(eio_sid, packet)


def has_local_members(sio: socketio.AsyncServer, room: str) -> bool:
    """Whether any socket of this node is in the Socket.IO room."""
    return bool(sio.manager.rooms.get("/", {}).get(room))
