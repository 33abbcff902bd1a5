"""The composition root: every part of roomwire is built, wired and started here, and only here.

`SignalingServer` is what an embedding app attaches to its aiohttp application; `build_app`
is what `roomwire serve` runs: the same server, plus the media backend found through the
`roomwire.media` entry point (so that signaling never imports aiortc), the browser client and,
given a Redis URL, the shared backend of a multi-node deployment.

Each part gets the narrow things it uses (docs/architecture.md); the server owns their
lifecycles: `start()` and `close()` (also run by the app's startup and shutdown) start and stop
every one of them.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from aiohttp import web
from roomwire.web import WEB_DIR

from . import socketio_internals
from .backend import Retention, StateBackend
from .courier import Courier
from .http_auth import install_cors
from .media_backend import MediaBackend
from .media_port import MediaPort
from .media_router import MediaRouter
from .memory_backend import MemoryBackend
from .metrics import Metrics
from .presence_poll import PresencePoll
from .presence_sse import PresenceSSE
from .presence_watchers import WatcherPresence
from .protocol import MAX_PACKET_BYTES, SERVER_IDENTITY, Participant
from .rate_limit import RateLimit
from .rest_api import RestAPI
from .rooms import Hooks, JoinHook, LeaveHook, MessageHook, RoomService
from .socket_api import SocketAPI
from .socketio_internals import DirectEmitManager, SocketLimits, SocketServer
from .tokens import TokenIssuer
from .turn import TurnCredentials
from .web_routes import add_web_routes

log = logging.getLogger("roomwire.server")

SERVER_KEY = web.AppKey("roomwire_server", "SignalingServer")

# aiohttp closes a connection that has sent no complete request for this long: its keep-alive
# timer also runs before the first request, so stalled request headers cannot hold sockets.
HTTP_IDLE_TIMEOUT = 5.0
# How an aiohttp runner must run roomwire: handler cancellation ends pending Engine.IO long
# polls at shutdown (else it waits ~45 s for them).
RUNNER_OPTIONS: dict[str, Any] = {
    "handler_cancellation": True,
    "shutdown_timeout": 3.0,
    "keepalive_timeout": HTTP_IDLE_TIMEOUT,
}


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
        turn: TurnCredentials | None = None,
        retention: Retention | None = None,
        rate_limit: RateLimit | None = None,
        ping_interval: float = 3.0,
        ping_timeout: float = 3.0,
        websocket_compression: bool = False,
        socket_limits: SocketLimits | None = None,
    ) -> None:
        socketio_internals.verify()
        if backend is not None and retention is not None:
            raise ValueError(
                "retention is the backend's: pass it to MemoryBackend(retention) or RedisBackend(url, retention)"
            )
        self.issuer = TokenIssuer(secret)
        self.backend = backend or MemoryBackend(retention)
        self.media = media
        self.dev = dev
        self.cors_origins = tuple(cors_origins)
        self.ice_servers = [dict(server) for server in ice_servers]
        self.metrics = Metrics()
        self.hooks = Hooks()
        self.sio = SocketServer(
            limits=socket_limits or SocketLimits(),
            # permessage-deflate costs ~180 KiB per idle connection and a quarter of the CPU
            # (docs/benchmarks.md); like Centrifugo and Node's socket.io, off unless asked for.
            websocket_compression=websocket_compression,
            dropped=self.metrics.connections_dropped.labels("send_queue_full").inc,
            async_mode="aiohttp",
            # None = same origin only; a browser page from another origin needs --cors-origin.
            cors_allowed_origins=list(self.cors_origins) or None,
            ping_interval=ping_interval,
            ping_timeout=ping_timeout,
            max_http_buffer_size=MAX_PACKET_BYTES,
            # events to other nodes' connections go through the backend (courier.py)
            client_manager=DirectEmitManager(),
            logger=False,
            engineio_logger=False,
        )
        self.courier = Courier(self.sio, self.backend)
        if media is not None and self.backend.shared:
            # many nodes: each room's media lives on one of them
            media = self.media = MediaRouter(media, self.backend, self.courier, self.sio)
        self.rooms = RoomService(self.backend, self.sio, self.courier, self.metrics, self.hooks, media)
        self.watchers = WatcherPresence(self.rooms, self.backend)
        self.sockets = SocketAPI(
            self.sio,
            self.rooms,
            self.courier,
            self.issuer,
            self.backend,
            media,
            self.metrics,
            rate_limit or RateLimit(),
            self.ice_servers,
            turn,
        )
        self.rest = RestAPI(self.issuer, self.rooms, self.backend, self.metrics, dev)
        self.sse = PresenceSSE(self.issuer, self.backend, self.watchers)
        self.poll = PresencePoll(self.issuer, self.backend, self.watchers)
        self.media_port = MediaPort(self.courier, self.backend, self.rooms, self.metrics)
        self.backend.on_node_lost(self.rooms.leave_lost)
        self.backend.on_taken_over(self.rooms.taken_over)
        self.rooms.on_left(self.watchers.removed)

    # -- embedding -------------------------------------------------------------------------

    def attach(self, app: web.Application, prefix: str = "") -> None:
        """Mount Socket.IO (`{prefix}/socket.io/`), the REST API and the presence fallbacks.

        Run the app with RUNNER_OPTIONS (`web.run_app(app, **RUNNER_OPTIONS)`).
        """
        prefix = "/" + prefix.strip("/") if prefix.strip("/") else ""
        app[SERVER_KEY] = self
        for method in ("GET", "POST", "OPTIONS"):
            app.router.add_route(method, f"{prefix}/socket.io/", self.sio.handle_request)
        app.add_routes(self.rest.routes(prefix))
        app.add_routes(
            [
                # No HEAD: it would join and leave a `presence=1` watcher for nothing.
                web.get(f"{prefix}/rooms/{{room}}/presence/sse", self.sse.handle, allow_head=False),
                web.get(f"{prefix}/rooms/{{room}}/presence/poll", self.poll.handle, allow_head=False),
            ]
        )
        install_cors(app, prefix, self.cors_origins)
        app.on_startup.append(self._on_startup)
        app.on_shutdown.append(self._on_shutdown)

    async def _on_startup(self, app: web.Application) -> None:
        await self.start()

    async def _on_shutdown(self, app: web.Application) -> None:
        await self.close()

    async def start(self) -> None:
        await self.backend.start()
        if self.media is not None:
            await self.media.start(self.media_port)

    async def close(self) -> None:
        # SSE streams end first (EventSource clients reconnect, perhaps to another node), then
        # present watchers and sockets leave while the backend can still record it.
        self.sse.close_streams()
        await self.watchers.close()
        for sid in list(self.sockets.connections):
            await self.sio.disconnect(sid)
        await self.sockets.drain()
        if self.media is not None:
            await self.media.close()
        await self.backend.close()

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
        return await self.rooms.send(room, SERVER_IDENTITY, data, to, skip=None)

    async def kick(self, room: str, identity: str, reason: str = "removed") -> bool:
        """Remove a participant (it receives `kicked`); False if it was not there."""
        return await self.rooms.kick(room, identity, reason)

    async def participants(self, room: str) -> list[Participant]:
        snapshot = await self.backend.snapshot(room)
        if snapshot is None:
            return []
        return snapshot.participants or []


# -- the standalone server (`roomwire serve`) ---------------------------------------------------


@dataclass
class ServeConfig:
    secret: str
    host: str = "127.0.0.1"
    port: int = 8080
    dev: bool = False
    cors_origins: list[str] = field(default_factory=list)
    frame_ancestors: list[str] = field(default_factory=list)
    ice_servers: list[dict[str, Any]] = field(default_factory=list)
    turn: TurnCredentials | None = None  # for clients only: the SFU's own peers use ice_servers
    media: str | None = "sfu"
    web_dir: Path = WEB_DIR
    redis_url: str | None = None  # many nodes: shared state and routing between nodes through Redis
    node_id: str | None = None  # this node's name among many (random by default)


def load_media(name: str | None, ice_servers: list[dict[str, Any]]) -> MediaBackend | None:
    if name is None or name == "none":
        return None
    found = {ep.name: ep for ep in entry_points(group="roomwire.media")}
    if name not in found:
        known = ", ".join(sorted(found)) or "none installed"
        raise SystemExit(f"roomwire: no media backend {name!r} (available: {known}); try --media none")
    factory = found[name].load()
    return factory(ice_servers=ice_servers)


def redis_backend(url: str, node_id: str | None) -> StateBackend:
    """The backend of a node of a multi-node deployment (needs the `redis` extra)."""
    try:
        from .redis_backend import RedisBackend
    except ImportError as exc:  # redis is an optional extra: `pip install 'roomwire[redis]'`
        raise ValueError(f"--redis-url needs the redis package: pip install 'roomwire[redis]' ({exc})") from None
    return RedisBackend(url, node_id=node_id)


def build_app(config: ServeConfig) -> tuple[web.Application, SignalingServer]:
    app = web.Application(client_max_size=MAX_PACKET_BYTES)
    server = SignalingServer(
        secret=config.secret,
        backend=redis_backend(config.redis_url, config.node_id) if config.redis_url else None,
        dev=config.dev,
        cors_origins=config.cors_origins,
        ice_servers=config.ice_servers,
        turn=config.turn,
        media=load_media(config.media, config.ice_servers),
    )
    server.attach(app)
    add_web_routes(app, prefix="", web_dir=config.web_dir, dev=config.dev, frame_ancestors=config.frame_ancestors)
    return app, server
