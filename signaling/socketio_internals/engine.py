"""python-engineio's server with roomwire's sockets: a bounded send queue, WebSocket frames
written straight to the connection, one heartbeat timer for all, and sockets that can be cut."""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import engineio
from aiohttp import web
from engineio.async_drivers.aiohttp import WebSocket as AiohttpWebSocket
from engineio.async_socket import AsyncSocket

from . import eager
from .frames import ServerWebSocket
from .heartbeats import Heartbeats
from .wire import TEXT, Outbox, SendQueue, Wire, packet_bytes

log = logging.getLogger("roomwire.socketio")

# (eio_sid, why) for a socket dropped by the server for its own protection.
DroppedHandler = Callable[[str, str], None]
# (eio_sid, the Socket.IO packet of an Engine.IO message) -> whether it was taken: handled at once
# (an event), or left to python-socketio's message handler (anything else).
EventTaker = Callable[[str, str], bool]


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


class EngineSocket(AsyncSocket):
    """An Engine.IO socket whose WebSocket frames go straight to its connection (python-engineio
    runs a writer task behind a queue, and a task and a timer per packet read or written) and
    whose pings come from the server's `Heartbeats`. A WebSocket with permessage-deflate keeps
    the library's own loops: aiohttp's writer compresses."""

    server: EngineServer
    queue: SendQueue | Wire  # a Wire once its WebSocket is its transport

    def __init__(self, server: EngineServer, sid: str) -> None:
        super().__init__(server, sid)
        # Every attribute a socket will have, set here: one first set later can turn the
        # instance's compact attribute storage into a dict of its own (an `event_task` set at
        # each join cost 0.7 KiB per idle connection, docs/benchmarks.md).
        self.transport: asyncio.Transport | None = None  # of its WebSocket request: `cut` closes it
        self.pinged_tick = -1  # the heartbeat tick of its last ping
        self.goodbye: asyncio.TimerHandle | None = None  # cuts its connection, closed, if the client stays

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

    async def _serve(self, websocket: ServerWebSocket) -> None:
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
        frames, take = websocket._reader, self._take
        while True:
            # events and pongs are taken as they are parsed while this waits with nothing queued
            frames.take = take
            # not kept while waiting: the last message the loop handled is often the connect,
            # whose token would stay in memory for the life of the connection
            data = None
            try:
                data = (await websocket.receive()).data
            except (Exception, asyncio.CancelledError):  # aiohttp cancels it when the connection is lost
                break
            finally:
                frames.take = None
            if take(data):  # a pong or an event that was queued behind another message
                continue
            if not isinstance(data, TEXT) or len(data) > limit:  # closed, or a broken frame
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

    def _take(self, data: Any) -> bool:
        """A message as aiohttp parsed it: a pong, or an event (`42...`), is handled at once."""
        if data == "3":
            self.schedule_ping()
            return True
        take_event = self.server.take_event
        if take_event is None or type(data) is not str or data[:2] != "42":
            return False
        try:
            return take_event(self.sid, data[1:])
        except Exception:  # as a failing message handler: logged, and the socket reads on
            log.exception("%s: event frame error", self.sid)
            return True


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

    def __init__(self, handler: Callable[[WebSocketDriver], Awaitable[None]], server: EngineServer) -> None:
        super().__init__(handler, server)
        self.request: web.Request | None = None  # set here, not first in __call__ (see EngineSocket)
        self.environ: dict[str, Any] | None = None

    async def __call__(self, environ: dict[str, Any]) -> web.WebSocketResponse:
        # python-engineio's, with the `compress` argument
        self.request = environ["aiohttp.request"]
        self._sock = ServerWebSocket(
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
    loop: asyncio.AbstractEventLoop  # of its connections: set at every connect
    on_dropped: DroppedHandler | None = None
    take_event: EventTaker | None = None  # python-socketio's server sets it
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
        self.loop = asyncio.get_running_loop()
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
        if packets >= self.limits.queued_packets or size + packet_bytes(pkt) > self.limits.queued_bytes:
            if self.on_dropped is not None:
                self.on_dropped(sid, f"its send queue is full ({packets} packets, {size} bytes unread)")
            self.in_background(self.cut(sid, at_once=True))
        elif socket.last_ping and time.time() - socket.last_ping > self.ping_timeout:
            self.in_background(socket.close(wait=False, abort=False, reason=self.reason.PING_TIMEOUT))
        else:
            socket.queue.put_nowait(pkt)

    async def send_packet(self, sid: str, pkt: Any) -> None:
        self.deliver(sid, pkt)

    def in_background(self, work: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run `work` in a task that is kept until it is done (on the loop of the last connection:
        a task per event, and `ensure_future` looks the loop up again each time)."""
        task = self.loop.create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    def run_now(self, work: Coroutine[Any, Any, Any]) -> asyncio.Task[Any] | None:
        """Run `work` at once, and in a task once it waits (eager.py: only for work that starts
        no timeout before it first waits); the task, if it waited."""
        rest = eager.start(work)
        return None if rest is None else self.in_background(rest)

    async def cut(self, sid: str, *, at_once: bool, reason: str | None = None) -> None:
        """Close a socket and its WebSocket connection; `at_once` discards what is unsent (for
        a client that does not read), else the client gets Engine.IO's close packet first."""
        socket = self.sockets.get(sid)
        if socket is None:
            return
        await socket.close(wait=False, abort=at_once, reason=reason or self.reason.SERVER_DISCONNECT)
        if at_once and socket.transport is not None:
            socket.transport.abort()
