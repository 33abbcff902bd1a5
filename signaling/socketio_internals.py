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
import math
import struct
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any, ClassVar

import engineio
import orjson
import socketio
from aiohttp import web
from engineio.async_drivers.aiohttp import WebSocket as AiohttpWebSocket
from engineio.async_socket import AsyncSocket
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


# A socket the server closes gets this long to read Engine.IO's close packet and hang up before
# its TCP connection is aborted anyway.
GOODBYE_SECONDS = 1.0
# Pings due within one tick leave together: one wakeup of the server pings many sockets, and
# their pongs come back together (a wakeup costs more than the ping it sends: docs/benchmarks.md).
HEARTBEAT_TICK = 0.5


class SendQueue(asyncio.Queue):  # type: ignore[type-arg]
    """An Engine.IO socket's outgoing queue (long polling, and a WebSocket until it is wired)
    that knows how many bytes it holds."""

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

    def backlog(self) -> tuple[int, int]:
        """Packets and bytes waiting."""
        return self.qsize(), self.bytes


def _packet_bytes(item: Any) -> int:
    data = getattr(item, "data", None)
    return len(data) if isinstance(data, str | bytes) else 0


def websocket_frame(pkt: engineio.packet.Packet) -> bytes:
    """The packet as one WebSocket frame from the server (unmasked, uncompressed), built once
    per packet however many sockets it goes to."""
    frame: bytes | None = getattr(pkt, "roomwire_frame", None)
    if frame is None:
        encoded = pkt.encode()
        payload, first = (encoded.encode(), 0x81) if isinstance(encoded, str) else (encoded, 0x82)
        size = len(payload)
        if size < 126:
            header = bytes((first, size))
        elif size < 65536:
            header = struct.pack("!BBH", first, 126, size)
        else:
            header = struct.pack("!BBQ", first, 127, size)
        frame = pkt.roomwire_frame = header + payload
    return frame


class Wire:
    """A socket's WebSocket connection, written to without aiohttp's writer. Once the WebSocket
    is the socket's transport the wire takes the place of its queue: what is put is written,
    and the frames a socket gets during one pass of the event loop leave together, in one
    writev, at the end of it."""

    __slots__ = ("frames", "outbox", "size", "transport")

    def __init__(self, transport: asyncio.Transport, outbox: Outbox) -> None:
        self.transport = transport
        self.outbox = outbox
        self.frames: list[bytes] = []
        self.size = 0

    def put_nowait(self, pkt: engineio.packet.Packet) -> None:
        if self.transport.is_closing():
            return
        frame = websocket_frame(pkt)
        if not self.frames:
            self.outbox.waiting(self)
        self.frames.append(frame)
        self.size += len(frame)

    async def put(self, pkt: engineio.packet.Packet) -> None:
        self.put_nowait(pkt)

    def backlog(self) -> tuple[int, int]:
        """Packets and bytes written and not taken by the kernel yet (the bytes are what counts)."""
        return 0, self.transport.get_write_buffer_size() + self.size

    # the rest of the queue's interface, for python-engineio's code: nothing ever waits here
    def qsize(self) -> int:
        return 0

    def empty(self) -> bool:
        return True

    def task_done(self) -> None:
        pass

    async def join(self) -> None:
        pass

    def flush(self) -> None:
        frames, self.frames, self.size = self.frames, [], 0
        if not frames or self.transport.is_closing():
            return
        if len(frames) == 1:
            self.transport.write(frames[0])
        else:
            self.transport.writelines(frames)


class Outbox:
    """The wires with frames waiting, flushed by one callback at the end of the loop's pass."""

    def __init__(self) -> None:
        self._waiting: list[Wire] = []

    def waiting(self, wire: Wire) -> None:
        if not self._waiting:
            asyncio.get_running_loop().call_soon(self.flush)
        self._waiting.append(wire)

    def flush(self) -> None:
        waiting, self._waiting = self._waiting, []
        for wire in waiting:
            try:
                wire.flush()
            except Exception:  # one broken connection must not hold up the frames of the others
                log.exception("writing to a WebSocket failed")


PING = engineio.packet.Packet(engineio.packet.PING)  # one packet, one frame, for every socket


class Heartbeats:
    """Engine.IO's ping/pong for every socket of a server, from one timer.

    python-engineio starts a task per socket per ping and a monitor task that wakes once per
    socket per `ping_timeout`. Here each tick pings the sockets that are due, cuts those that
    left their last ping unanswered for `ping_timeout`, and removes closed ones from the
    server's sockets (closed long-polling sockets that nothing else removes, as the monitor
    did). Sockets are held by sid: a closed one is not kept alive here.
    """

    def __init__(self, server: EngineServer) -> None:
        self.server = server
        # tick -> sids to ping then; tick -> sids whose ping must be answered by then
        self._pings: dict[int, list[str]] = {}
        self._deadlines: dict[int, list[str]] = {}
        self._next = 0  # the first tick not handled yet
        self._answer_ticks = math.ceil(server.ping_timeout / HEARTBEAT_TICK)  # a pong is late after these
        self._timer: asyncio.TimerHandle | None = None

    def ping_later(self, socket: EngineSocket) -> None:
        """Ping the socket `ping_interval` from now (its pong, or its connection, just came)."""
        loop = asyncio.get_running_loop()
        if self._timer is None:
            self._next = int(loop.time() / HEARTBEAT_TICK) + 1
            self._timer = loop.call_at(self._next * HEARTBEAT_TICK, self._tick)
        tick = max(self._next, math.ceil((loop.time() + self.server.ping_interval) / HEARTBEAT_TICK))
        self._pings.setdefault(tick, []).append(socket.sid)

    def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        now = int(loop.time() / HEARTBEAT_TICK)
        while self._next <= now:
            pinged = self._next - self._answer_ticks
            for sid in self._deadlines.pop(self._next, ()):
                socket = self._open(sid)
                if socket is not None and socket.last_ping and socket.pinged_tick == pinged:
                    self._cut(socket)  # that ping is still unanswered
            for sid in self._pings.pop(self._next, ()):
                socket = self._open(sid)
                if socket is not None:
                    self._ping(socket)
            self._next += 1
        self._timer = None
        if self._pings or self._deadlines:
            self._timer = loop.call_at(self._next * HEARTBEAT_TICK, self._tick)

    def _open(self, sid: str) -> EngineSocket | None:
        """The socket if it is open. A closed one is removed from the server's sockets; a closing
        one (its disconnect handler runs) is looked at again later."""
        socket = self.server.sockets.get(sid)
        if socket is None:
            return None
        if socket.closed:
            del self.server.sockets[sid]
            return None
        if socket.closing:
            self.ping_later(socket)
            return None
        return socket

    def _ping(self, socket: EngineSocket) -> None:
        socket.last_ping = time.time()
        socket.pinged_tick = self._next
        socket.queue.put_nowait(PING)
        self._deadlines.setdefault(self._next + self._answer_ticks, []).append(socket.sid)

    def _cut(self, socket: EngineSocket) -> None:
        self.server.in_background(self.server.cut(socket.sid, at_once=False, reason=self.server.reason.PING_TIMEOUT))


class EngineSocket(AsyncSocket):
    """An Engine.IO socket whose WebSocket frames go straight to its connection (python-engineio
    runs a writer task behind a queue, and a task and a timer per packet read or written) and
    whose pings come from the server's `Heartbeats`. A WebSocket with permessage-deflate keeps
    the library's own loops: aiohttp's writer compresses."""

    server: EngineServer
    queue: SendQueue | Wire  # a Wire once its WebSocket is its transport
    transport: asyncio.Transport | None = None  # of its WebSocket request: `cut` closes it
    pinged_tick = -1  # the heartbeat tick of its last ping
    goodbye: asyncio.TimerHandle | None = None  # cuts its connection, closed, if the client stays

    async def send(self, pkt: engineio.packet.Packet) -> None:
        if await self.check_ping_timeout():
            self.queue.put_nowait(pkt)

    def schedule_ping(self) -> None:
        if self.last_ping:  # a pong for the last ping (or the connection): the next one is due later
            self.last_ping = None
            self.server.heartbeats.ping_later(self)

    async def close(self, wait: bool = True, abort: bool = False, reason: Any = None) -> None:
        if self.closed or self.closing:
            return
        await super().close(wait=wait, abort=abort, reason=reason)
        if self.transport is not None and not self.transport.is_closing():
            # a client that does not hang up is hung up on
            self.goodbye = asyncio.get_running_loop().call_later(GOODBYE_SECONDS, self.transport.abort)

    async def _websocket_handler(self, ws: WebSocketDriver) -> None:
        self.transport = ws.request.transport
        if ws._sock.compress:
            await super()._websocket_handler(ws)
        elif self.connected:
            if await self._upgrade(ws):
                await self._serve(ws._sock)
        else:
            self.connected = self.upgraded = True
            await self._serve(ws._sock)

    async def _upgrade(self, ws: WebSocketDriver) -> bool:
        """From long polling: the client probes (`2probe`, answered `3probe`), the pending poll
        is ended, and the client's `5` makes the WebSocket its transport."""
        self.upgrading = True  # meanwhile, packets wait in the queue
        try:
            if await ws.wait() != "2probe":
                return False
            await ws.send("3probe")
            self.queue.put_nowait(engineio.packet.Packet(engineio.packet.NOOP))  # ends the poll
            upgrade = await ws.wait()
            self.upgraded = isinstance(upgrade, str) and upgrade[:1] == "5"
            return self.upgraded
        except OSError:
            return False
        finally:
            self.upgrading = False

    async def _serve(self, websocket: web.WebSocketResponse) -> None:
        assert self.transport is not None
        wire = Wire(self.transport, self.server.outbox)
        while not self.queue.empty():  # the open packet, or what waited for the upgrade
            pkt = self.queue.get_nowait()
            self.queue.task_done()
            if pkt is not None:
                wire.put_nowait(pkt)
        self.queue = wire
        message = self.server.handlers["message"]  # python-socketio's
        limit = self.server.max_http_buffer_size
        while True:
            try:
                data = (await websocket.receive()).data
            except (Exception, asyncio.CancelledError):  # aiohttp cancels it when the connection is lost
                break
            if data == "3":
                self.schedule_ping()
            elif not isinstance(data, str | bytes) or len(data) > limit:  # closed, or a broken frame
                break
            elif isinstance(data, str) and data[:1] == "4":
                try:
                    await message(self.sid, data[1:])
                except Exception:
                    log.exception("%s: message handler error", self.sid)
            else:
                try:
                    await self.receive(engineio.packet.Packet(encoded_packet=data))
                except engineio.exceptions.UnknownPacketError:
                    pass
                except engineio.exceptions.SocketIsClosedError:
                    break
                except Exception:
                    log.exception("%s: receive error", self.sid)
        wire.flush()
        await websocket.close()
        await self.close(wait=False, abort=True, reason=self.server.reason.TRANSPORT_CLOSE)
        if self.goodbye is not None:  # the client hung up
            self.goodbye.cancel()


def _environ_key(header: str) -> str:
    name = header.upper().replace("-", "_")
    return name if name in ("CONTENT_TYPE", "CONTENT_LENGTH") else "HTTP_" + name


class RequestEnviron(Mapping[str, Any]):
    """The WSGI-style environ python-engineio and python-socketio read, looked up in the aiohttp
    request when read. python-engineio's aiohttp driver copies every header into a new dict,
    which python-socketio keeps for as long as the connection lives (~1.5 KiB each)."""

    __slots__ = ("_request",)

    # the entries of python-engineio's `translate_request` that are not request headers
    _FIXED: ClassVar[dict[str, Callable[[web.Request], Any]]] = {
        "wsgi.input": lambda request: request.content,
        "wsgi.errors": lambda _: sys.stderr,
        "wsgi.version": lambda _: (1, 0),
        "wsgi.async": lambda _: True,
        "wsgi.multithread": lambda _: False,
        "wsgi.multiprocess": lambda _: False,
        "wsgi.run_once": lambda _: False,
        "SERVER_SOFTWARE": lambda _: "aiohttp",
        "REQUEST_METHOD": lambda request: request.method,
        "QUERY_STRING": lambda request: request.query_string or "",
        "RAW_URI": lambda request: request.path_qs,
        "SERVER_PROTOCOL": lambda request: f"HTTP/{request.version[0]}.{request.version[1]}",
        "REMOTE_ADDR": lambda _: "127.0.0.1",
        "REMOTE_PORT": lambda _: "0",
        "SERVER_NAME": lambda _: "aiohttp",
        "SERVER_PORT": lambda _: "0",
        "aiohttp.request": lambda request: request,
        "wsgi.url_scheme": lambda request: RequestEnviron(request).get("HTTP_X_FORWARDED_PROTO", "http"),
        "PATH_INFO": lambda request: request.path,
        "SCRIPT_NAME": lambda _: "",
    }

    def __init__(self, request: web.Request) -> None:
        self._request = request

    def __getitem__(self, key: str) -> Any:
        if key.startswith(("HTTP_", "CONTENT_")):
            values = [value for name, value in self._request.headers.items() if _environ_key(name) == key]
            if values:  # a repeated header: its values joined (content type and length: the last)
                return ",".join(values) if key.startswith("HTTP_") else values[-1]
            raise KeyError(key)
        return self._FIXED[key](self._request)

    def __iter__(self) -> Iterator[str]:
        yield from self._FIXED
        yield from dict.fromkeys(_environ_key(name) for name in self._request.headers)

    def __len__(self) -> int:
        return len(self._FIXED) + len({_environ_key(name) for name in self._request.headers})


class WebSocketDriver(AiohttpWebSocket):
    """python-engineio's aiohttp WebSocket, offering permessage-deflate only when the server
    enables it (~180 KiB per connection and a quarter of the CPU: docs/benchmarks.md)."""

    server: EngineServer

    async def __call__(self, environ: dict[str, Any]) -> web.WebSocketResponse:
        # python-engineio's, with the `compress` argument
        self.request = environ["aiohttp.request"]
        self._sock = web.WebSocketResponse(
            max_msg_size=self.server.max_http_buffer_size, compress=self.server.websocket_compression
        )
        await self._sock.prepare(self.request)
        self.environ = environ
        await self.handler(self)
        return self._sock


class EngineServer(engineio.AsyncServer):
    """Engine.IO with `EngineSocket`s: a bounded send queue per socket, WebSocket frames written
    directly, one timer for every socket's heartbeat, and sockets that can be cut off."""

    limits = SocketLimits()
    on_dropped: DroppedHandler | None = None
    websocket_compression = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **{**kwargs, "monitor_clients": False})  # `Heartbeats` does its work
        if self.cookie:
            raise ValueError("roomwire's Engine.IO server sets no cookie")
        self._async = {**self._async, "websocket": WebSocketDriver, "translate_request": RequestEnviron}
        self.heartbeats = Heartbeats(self)
        self.outbox = Outbox()
        self._background: set[asyncio.Future[Any]] = set()

    def create_queue(self, *args: Any, **kwargs: Any) -> asyncio.Queue:  # type: ignore[type-arg]
        return SendQueue(*args, **kwargs)

    async def _handle_connect(self, environ: dict[str, Any], transport: str, jsonp_index: int | None = None) -> Any:
        # python-engineio's, with roomwire's socket class (and neither a monitor task nor a cookie)
        sid = self.generate_id()
        socket = self.sockets[sid] = EngineSocket(self, sid)
        interval = int(self.ping_interval + self.ping_interval_grace_period) * 1000
        opening = {"sid": sid, "upgrades": self._upgrades(sid, transport), "pingTimeout": int(self.ping_timeout * 1000),
                   "pingInterval": interval, "maxPayload": self.max_http_buffer_size}  # fmt: skip
        await socket.send(engineio.packet.Packet(engineio.packet.OPEN, opening))
        refusal = await self._trigger_event("connect", sid, environ, run_async=False)
        if refusal is not None and refusal is not True:
            del self.sockets[sid]
            return self._unauthorized(refusal or None)
        socket.schedule_ping()
        if transport == "websocket":  # aiohttp checks the upgrade's headers
            response = await WebSocketDriver(socket._websocket_handler, self)(environ)
            if socket.closed and self.sockets.get(sid) is socket:
                del self.sockets[sid]
            return response
        socket.connected = True
        try:
            return self._ok(await socket.poll(), jsonp_index=jsonp_index)
        except engineio.exceptions.QueueEmpty:
            return self._bad_request()

    def deliver(self, sid: str, pkt: engineio.packet.Packet) -> None:
        """Send a packet to a socket without awaiting anything. A socket whose client left its
        last ping unanswered too long (as python-engineio's `send` checks), or whose unsent
        packets are over the limits, is closed instead, in the background."""
        socket = self.sockets.get(sid)
        if socket is None or socket.closed or socket.closing:
            return
        packets, size = socket.queue.backlog()
        if packets >= self.limits.queued_packets or size + _packet_bytes(pkt) > self.limits.queued_bytes:
            if self.on_dropped is not None:
                self.on_dropped(sid, f"its send queue is full ({packets} packets, {size} bytes unread)")
            self.in_background(self.cut(sid, at_once=True))
        elif socket.last_ping and time.time() - socket.last_ping > self.ping_timeout:
            self.in_background(socket.close(wait=False, abort=False, reason=self.reason.PING_TIMEOUT))
        else:
            socket.queue.put_nowait(pkt)

    async def send_packet(self, sid: str, pkt: Any) -> None:
        self.deliver(sid, pkt)

    def in_background(self, work: Awaitable[Any]) -> None:
        """Run `work` in a task that is kept until it is done."""
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def cut(self, sid: str, *, at_once: bool, reason: str | None = None) -> None:
        """Close a socket and its WebSocket connection; `at_once` discards what is unsent (for
        a client that does not read), else the client gets Engine.IO's close packet first."""
        socket = self.sockets.get(sid)
        if socket is None:
            return
        await socket.close(wait=False, abort=at_once, reason=reason or self.reason.SERVER_DISCONNECT)
        if at_once and socket.transport is not None:
            socket.transport.abort()


class SocketServer(socketio.AsyncServer):
    """python-socketio's server with roomwire's rules at the door (see the module docstring)."""

    def __init__(
        self,
        *,
        limits: SocketLimits,
        websocket_compression: bool = False,
        dropped: Callable[[], None] | None = None,
        **options: Any,
    ) -> None:
        super().__init__(serializer=WirePacket, **options)
        self.eio.limits = limits
        self.eio.websocket_compression = websocket_compression
        self.eio.on_dropped = self._dropped
        # python-socketio's `handle_request` only awaits Engine.IO's: one coroutine fewer held
        # for the whole life of every WebSocket
        self.handle_request = self.eio.handle_request
        self._count_dropped = dropped
        self._on_refused: RefusedHandler | None = None
        self._deadlines: dict[str, asyncio.TimerHandle] = {}
        self._handling: set[asyncio.Task[None]] = set()

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
            # python-socketio's, less its logging and its task helper's checks: a task per event
            namespace = namespace or "/"
            sid = self.manager.sid_from_eio_sid(eio_sid, namespace)
            if self.manager.is_connected(sid, namespace):
                handling = asyncio.get_running_loop().create_task(
                    self._handle_event_internal(self, sid, eio_sid, data, namespace, id)
                )
                self._handling.add(handling)
                handling.add_done_callback(self._handling.discard)

    async def _handle_event_internal(
        self, server: Any, sid: str, eio_sid: str, data: list[Any], namespace: str, id: int | None
    ) -> None:
        # python-socketio's, for roomwire's handlers: coroutine functions, no namespace classes
        handler, args = self._get_event_handler(data[0], namespace, (sid, *data[1:]))
        if handler is None:
            return
        answer = await handler(*args)
        if id is not None:
            args = [] if answer is None else list(answer) if isinstance(answer, tuple) else [answer]
            await self._send_packet(eio_sid, self.packet_class(sio_packet.ACK, namespace=namespace, id=id, data=args))

    async def _send_packet(self, eio_sid: str, pkt: sio_packet.Packet) -> None:
        # python-socketio's, without awaiting: roomwire's packets have no binary attachments
        self.eio.deliver(eio_sid, engineio.packet.Packet(engineio.packet.MESSAGE, pkt.encode()))

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
            self.eio.in_background(self.eio.cut(eio_sid, at_once=False))

    def _dropped(self, eio_sid: str, why: str) -> None:
        log.warning("dropping connection %s: %s", eio_sid, why)
        if self._count_dropped is not None:
            self._count_dropped()


class DirectEmitManager(socketio.AsyncManager):
    """Broadcasts without one asyncio task per recipient, and disconnects that only look at the
    rooms of the one disconnecting.

    python-socketio's `AsyncManager.emit` wraps each recipient's send in `asyncio.create_task`
    and waits for them all. Here the one encoded packet (and its one WebSocket frame) is handed
    to each recipient's socket in a plain loop, in order, awaiting nothing (docs/benchmarks.md).
    Emits that carry a callback (an ack id per recipient) take the stock path.

    python-socketio's `basic_disconnect` copies and searches every room of the namespace (each
    socket has one of its own), so each disconnect cost as much as all connections together.
    """

    def __init__(self) -> None:
        super().__init__()
        self._rooms_of: dict[str, dict[str, tuple[Any, ...]]] = {}  # namespace -> sid -> its rooms

    def basic_enter_room(self, sid: str, namespace: str, room: Any, eio_sid: str | None = None) -> None:
        super().basic_enter_room(sid, namespace, room, eio_sid=eio_sid)
        index = self._rooms_of.setdefault(namespace, {})
        rooms = index.get(sid, ())
        if room not in rooms:
            index[sid] = (*rooms, room)

    def basic_leave_room(self, sid: str, namespace: str, room: Any) -> None:
        super().basic_leave_room(sid, namespace, room)
        index = self._rooms_of.get(namespace, {})
        rooms = tuple(r for r in index.get(sid, ()) if r != room)
        if rooms:
            index[sid] = rooms
        else:
            index.pop(sid, None)

    def basic_disconnect(self, sid: str, namespace: str, **kwargs: Any) -> None:
        # python-socketio's, with the sid's own rooms instead of a search of all of them
        if namespace not in self.rooms:
            return
        for room in self._rooms_of.get(namespace, {}).get(sid, ()):
            self.basic_leave_room(sid, namespace, room)
        self.callbacks.pop(sid, None)
        for pending in (self.pending_connect, self.pending_disconnect):
            if sid in pending.get(namespace, ()):
                pending[namespace].remove(sid)
                if not pending[namespace]:
                    del pending[namespace]

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
        deliver = self.server.eio.deliver
        for sid, eio_sid in self.get_participants(namespace, to or room):
            if sid not in skip:
                deliver(eio_sid, packet)


def has_local_members(sio: socketio.AsyncServer, room: str) -> bool:
    """Whether any socket of this node is in the Socket.IO room."""
    return bool(sio.manager.rooms.get("/", {}).get(room))
