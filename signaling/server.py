"""`SignalingServer`: the embeddable signaling service (Socket.IO, REST, presence fallbacks)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Any

import socketio
from aiohttp import web

from .backend import Participant, Retention, StateBackend
from .direct_emit import DirectEmitManager
from .media_backend import MediaBackend
from .memory_backend import MemoryBackend
from .metrics import Metrics
from .presence_routes import add_presence_routes
from .protocol import MAX_PACKET_BYTES, ProtocolError, bad_request
from .rate_limit import RateLimit
from .rest_api import add_rest_routes
from .rooms import Hooks, JoinHook, LeaveHook, MessageHook, RoomService, is_socket_owner
from .socket_api import SocketAPI
from .tokens import TokenIssuer

log = logging.getLogger("roomwire.server")

SERVER_KEY = web.AppKey("roomwire_server", "SignalingServer")


class SignalingServer:
    """Rooms, presence and signaling, attachable to any aiohttp application.

    >>> server = SignalingServer(secret="a long random secret")
    >>> server.attach(app, prefix="/rtc")
    """

    def __init__(
        self,
        *,
        secret: str,
        backend: StateBackend | None = None,
        media: MediaBackend | None = None,
        dev: bool = False,
        cors_origins: Sequence[str] = (),
        ice_servers: Sequence[dict[str, Any]] = (),
        retention: Retention | None = None,
        rate_limit: RateLimit | None = None,
        ping_interval: float = 3.0,
        ping_timeout: float = 3.0,
        websocket_compression: bool = False,
        client_manager: socketio.AsyncManager | None = None,
    ) -> None:
        self.issuer = TokenIssuer(secret)
        self.backend = backend or MemoryBackend(retention)
        self.media = media
        self.dev = dev
        self.cors_origins = tuple(cors_origins)
        self.ice_servers = [dict(server) for server in ice_servers]
        self.rate_limit = rate_limit or RateLimit()
        self.metrics = Metrics()
        self.hooks = Hooks()
        self.prefix = ""
        # permessage-deflate costs ~180 KiB per idle connection and a quarter of the CPU
        # (docs/benchmarks.md); like Centrifugo and Node's socket.io, off unless asked for.
        self.websocket_compression = websocket_compression
        self.sio = socketio.AsyncServer(
            async_mode="aiohttp",
            # None = same origin only; a browser page from another origin needs --cors-origin.
            cors_allowed_origins=list(self.cors_origins) or None,
            ping_interval=ping_interval,
            ping_timeout=ping_timeout,
            max_http_buffer_size=MAX_PACKET_BYTES,
            client_manager=client_manager or DirectEmitManager(),
            logger=False,
            engineio_logger=False,
        )
        self.rooms = RoomService(self.backend, self.sio, self.metrics, self.hooks, media)
        self.sockets = SocketAPI(self)

    # -- embedding -------------------------------------------------------------------------

    def attach(self, app: web.Application, prefix: str = "") -> None:
        """Mount Socket.IO (`{prefix}/socket.io/`), the REST API and the presence fallbacks."""
        prefix = "/" + prefix.strip("/") if prefix.strip("/") else ""
        self.prefix = prefix
        app[SERVER_KEY] = self
        for method in ("GET", "POST", "OPTIONS"):
            app.router.add_route(method, f"{prefix}/socket.io/", self._handle_engineio)
        add_rest_routes(app, self, prefix)
        add_presence_routes(app, self, prefix)
        app.on_startup.append(self._on_startup)
        app.on_shutdown.append(self._on_shutdown)

    async def _handle_engineio(self, request: web.Request) -> web.StreamResponse:
        if not self.websocket_compression and "Sec-WebSocket-Extensions" in request.headers:
            # engine.io accepts whatever extension the client offers; an offer it never sees
            # negotiates none
            headers = request.headers.copy()
            del headers["Sec-WebSocket-Extensions"]
            request = request.clone(headers=headers)
        return await self.sio.handle_request(request)

    async def _on_startup(self, app: web.Application) -> None:
        await self.start()

    async def _on_shutdown(self, app: web.Application) -> None:
        await self.close()

    async def start(self) -> None:
        await self.backend.start()
        if self.media is not None:
            await self.media.start(self)

    async def close(self) -> None:
        for sid in list(self.sockets.connections):
            await self.sio.disconnect(sid)
        await self.sockets.drain()
        if self.media is not None:
            await self.media.close()
        await self.backend.close()
        # python-socketio starts a pub/sub manager's listener (AsyncRedisManager) and never
        # stops it
        listener = getattr(self.sio.manager, "thread", None)
        if isinstance(listener, asyncio.Task):
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener

    def on_join(self, hook: JoinHook) -> JoinHook:
        """Register `async def hook(room, participant) -> str | None`; a reason string refuses."""
        self.hooks.on_join.append(hook)
        return hook

    def on_leave(self, hook: LeaveHook) -> LeaveHook:
        """Register `async def hook(room, participant, reason)`."""
        self.hooks.on_leave.append(hook)
        return hook

    def on_message(self, hook: MessageHook) -> MessageHook:
        """Register `async def hook(room, sender, data, to)` for every delivered message."""
        self.hooks.on_message.append(hook)
        return hook

    # -- server-side calls -----------------------------------------------------------------

    async def send(self, room: str, data: Any, to: str | None = None) -> str:
        """Send `message` from "server" to a room or one participant; returns its id."""
        return await self.rooms.send(room, "server", data, to, skip=None)

    async def kick(self, room: str, identity: str, reason: str = "removed") -> bool:
        """Remove a participant (it receives `kicked`); False if it was not there."""
        return await self.rooms.kick(room, identity, reason)

    async def participants(self, room: str) -> list[Participant]:
        snapshot = await self.backend.snapshot(room)
        if snapshot is None:
            return []
        return snapshot.participants or []

    # -- MediaSignaling: the port the media backend talks back through ----------------------

    async def send_offer(
        self, room: str, identity: str, sdp: str, timeout: float, extra: dict[str, Any] | None = None
    ) -> str:
        member = await self.backend.membership(room, identity)
        if member is None or not is_socket_owner(member.owner):
            raise LookupError(f"{identity!r} is not connected to room {room!r}")
        try:
            answer = await self.sio.call(
                "sfu.offer", {**(extra or {}), "sdp": sdp}, to=member.owner, timeout=timeout
            )
        except socketio.exceptions.TimeoutError:
            raise TimeoutError(f"{identity!r} did not answer the offer within {timeout} s") from None
        self.metrics.events_out.labels("sfu.offer").inc()
        if isinstance(answer, dict) and answer.get("ok") is False:
            error = answer.get("error") if isinstance(answer.get("error"), dict) else {}
            raise ProtocolError("bad_request", f"the client refused the offer: {error.get('message')}")
        if not isinstance(answer, dict) or not isinstance(answer.get("sdp"), str):
            raise bad_request("the answer to sfu.offer must be {sdp: string}")
        return answer["sdp"]

    async def set_tracks(self, room: str, identity: str, tracks: list[dict[str, Any]]) -> None:
        await self.rooms.update(room, identity, None, {"tracks": tracks}, kind="track")
