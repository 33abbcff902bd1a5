"""Socket.IO event handlers: connect auth, join/leave/update/signal/message and `sfu.*`.

Every client event is answered in its ack with `{ok: true, ...}` or the protocol's error; a
handler never raises into python-socketio and never changes state on bad input.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import socketio

from .backend import StateBackend
from .courier import Courier, sio_room
from .media_backend import MediaBackend, MediaSession
from .metrics import Metrics
from .protocol import (
    MAX_SIGNAL_BYTES,
    REJOIN,
    SIGNAL_TYPES,
    ProtocolError,
    bad_request,
    check_data,
    check_depth,
    check_metadata,
    check_name,
    parse_message,
    valid_identity,
)
from .rate_limit import RateLimit, TokenBucket
from .rooms import RoomService, is_socket_owner, new_participant
from .socketio_internals import SocketServer
from .tokens import Claims, TokenIssuer
from .turn import TurnCredentials

log = logging.getLogger("roomwire.socket")

# Browsers connect over HTTP long-polling and upgrade to WebSocket a moment later, often after
# they have joined: look again a few times and correct their presence entry.
UPGRADE_CHECKS = (0.5, 1.5, 3.0)

Handler = Callable[["Connection", dict[str, Any]], Awaitable[dict[str, Any]]]


@dataclass(slots=True)
class Connection:
    sid: str
    claims: Claims
    agent: str
    bucket: TokenBucket
    joined: bool = False
    upgrade_watch: asyncio.Task[None] | None = None

    @property
    def room(self) -> str:
        assert self.claims.room is not None
        return self.claims.room

    @property
    def identity(self) -> str:
        return self.claims.identity


def require_object(args: tuple[Any, ...]) -> dict[str, Any]:
    """The event's one payload object, checked against the protocol's JSON rules. The frame was
    decoded by orjson, whose output always encodes again (valid UTF-8, numbers it can write)
    once it nests no deeper than the protocol allows: only the depth is left to check."""
    if len(args) == 0 or args[0] is None:
        return {}
    if len(args) > 1 or not isinstance(args[0], dict):
        raise bad_request("the payload must be one JSON object")
    check_depth(args[0])
    return args[0]


class SocketAPI:
    """Binds the protocol's events to the Socket.IO server."""

    def __init__(
        self,
        sio: SocketServer,
        rooms: RoomService,
        courier: Courier,
        issuer: TokenIssuer,
        backend: StateBackend,
        media: MediaBackend | None,
        metrics: Metrics,
        rate_limit: RateLimit,
        ice_servers: list[dict[str, Any]],
        turn: TurnCredentials | None = None,
    ) -> None:
        self.sio = sio
        self.rooms = rooms
        self.courier = courier
        self.issuer = issuer
        self.backend = backend
        self.media = media
        self.metrics = metrics
        self.rate_limit = rate_limit
        self.ice_servers = ice_servers
        self.turn = turn  # per-participant TURN credentials in each join ack, beside ice_servers
        self.connections: dict[str, Connection] = {}
        self._leaving: set[asyncio.Future[Any]] = set()
        sio.on_refused(self.refuse)
        sio.on("connect", self.on_connect)
        sio.on("disconnect", self.on_disconnect)
        events: dict[str, Handler] = {
            "join": self.join,
            "leave": self.leave,
            "update": self.update,
            "signal": self.signal,
            "message": self.message,
        }
        for name, handler in events.items():
            sio.on(name, functools.partial(self._dispatch, name, handler))
        sio.on("*", self.on_other)
        if backend.answers_at_once:
            # A signal's handler then relays it without waiting for anything, so it runs in the
            # pass of the event loop that read its frame, without a task (eager.py).
            sio.eager_events.add("signal")

    # -- connection lifecycle ------------------------------------------------------------

    async def on_connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        self.metrics.events_in.labels("connect").inc()
        token = auth.get("token") if isinstance(auth, dict) else None
        try:
            claims = self.issuer.verify(token)
            if claims.room is None:
                raise ProtocolError("forbidden", "an admin token without a room cannot join a room")
        except ProtocolError as exc:
            self.metrics.errors.labels(exc.code).inc()
            raise socketio.exceptions.ConnectionRefusedError(
                exc.message, {"code": exc.code, "message": exc.message}
            ) from None
        agent = "bot" if isinstance(auth, dict) and auth.get("agent") == "bot" else "browser"
        self.connections[sid] = Connection(sid, claims, agent, TokenBucket(self.rate_limit))
        self.metrics.connections.inc()

    async def on_disconnect(self, sid: str, reason: Any = None) -> None:
        conn = self.connections.pop(sid, None)
        if conn is None:
            return
        self.metrics.connections.dec()
        self._stop_upgrade_watch(conn)
        if conn.joined:
            # Not awaited here: engine.io runs this handler inside a send that finds the client
            # timed out, and that send may be part of a broadcast holding this room's lock.
            self._spawn(self.rooms.leave(conn.room, conn.identity, sid, "disconnected"))

    def _spawn(self, work: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(work)
        self._leaving.add(task)
        task.add_done_callback(self._left)

    def _left(self, task: asyncio.Future[Any]) -> None:
        self._leaving.discard(task)
        error = None if task.cancelled() else task.exception()
        if isinstance(error, ProtocolError):  # the shared state is unavailable: the backend retries
            log.info("the leave after a disconnect waits for the shared state: %s", error.message)
        elif error is not None:
            log.error("a leave or disconnect failed", exc_info=error)

    async def drain(self) -> None:
        """Wait for the leaves of connections that are gone (at shutdown)."""
        if self._leaving:
            await asyncio.gather(*self._leaving, return_exceptions=True)

    # -- the guard every event goes through ------------------------------------------------

    async def _dispatch(self, name: str, handler: Handler, sid: str, *args: Any) -> dict[str, Any]:
        metrics = self.metrics
        metrics.events_in.labels(name if name in self._known else "other").inc()
        conn = self.connections.get(sid)
        try:
            if conn is None:
                raise ProtocolError("unauthorized", "not connected")
            if not conn.bucket.allow():
                raise ProtocolError("rate_limited", "too many events; slow down")
            return {"ok": True, **await handler(conn, require_object(args))}
        except ProtocolError as exc:
            metrics.errors.labels(exc.code).inc()
            return exc.ack()
        except Exception:
            log.exception("event %s failed", name)
            metrics.errors.labels("internal").inc()
            return ProtocolError("internal", "the server failed to handle this event").ack()

    _known = frozenset({"join", "leave", "update", "signal", "message", "sfu"})

    async def on_other(self, event: str, sid: str, *args: Any) -> dict[str, Any]:
        if event.startswith("sfu."):
            op = event[4:]
            return await self._dispatch("sfu", lambda conn, data: self.sfu(conn, op, data), sid, *args)
        return await self._dispatch(event, self.unknown, sid, *args)

    async def unknown(self, conn: Connection, data: dict[str, Any]) -> dict[str, Any]:
        raise bad_request("unknown event")

    async def refuse(self, sid: str, why: str) -> dict[str, Any]:
        """The ack of an event frame the Socket.IO server refused before dispatch."""

        async def refused(conn: Connection, data: dict[str, Any]) -> dict[str, Any]:
            raise bad_request(why)

        return await self._dispatch("other", refused, sid)

    # -- events ----------------------------------------------------------------------------

    def _require_joined(self, conn: Connection) -> None:
        if not conn.joined:
            raise ProtocolError("conflict", "join the room first")

    async def _require_listed(self, conn: Connection) -> None:
        """A joined connection whose participant the room no longer lists (removed while its
        node could not reach the shared state) may not act: it is told to join again."""
        self._require_joined(conn)
        member = await self.backend.membership(conn.room, conn.identity)
        if member is not None and member.owner == conn.sid:
            return
        conn.joined = False
        await self.sio.leave_room(conn.sid, sio_room(conn.room))
        self.sio.send_event(conn.sid, "kicked", {"reason": REJOIN})
        # after this event's ack has gone out
        self._spawn(self.sio.disconnect(conn.sid))
        raise ProtocolError("conflict", "you are no longer in the room; connect and join again")

    async def join(self, conn: Connection, data: dict[str, Any]) -> dict[str, Any]:
        if conn.joined:
            raise ProtocolError("conflict", "already joined")
        if "room" in data and data["room"] != conn.room:  # the room is the token's; naming another is wrong
            raise ProtocolError("forbidden", "this token is for another room")
        transport = "bot" if conn.agent == "bot" else self.sio.transport(conn.sid)
        participant = new_participant(conn.claims, transport)
        rooms = self.rooms
        await rooms.admit(conn.room, participant)
        if conn.sid not in self.connections:  # it went away while the hook ran
            raise ProtocolError("conflict", "the connection closed")
        await self.sio.enter_room(conn.sid, sio_room(conn.room))
        conn.joined = True
        try:
            result = await rooms.join(conn.room, participant, conn.sid)
        except ProtocolError:  # the shared state is unavailable: not joined, may try again
            conn.joined = False
            await self.sio.leave_room(conn.sid, sio_room(conn.room))
            raise
        if transport == "polling":
            conn.upgrade_watch = asyncio.create_task(self._follow_upgrade(conn))
        snapshot = result.snapshot
        ice_servers = self.ice_servers
        if self.turn is not None:  # minted at every join: a client back after expiry gets fresh ones
            ice_servers = [*ice_servers, self.turn.ice_server(conn.identity)]
        return {
            "room": conn.room,
            "self": participant,
            "participants": snapshot.participants,
            "epoch": snapshot.epoch,
            "offset": snapshot.offset,
            "iceServers": ice_servers,
        }

    async def _follow_upgrade(self, conn: Connection) -> None:
        for delay in UPGRADE_CHECKS:
            await asyncio.sleep(delay)
            if self.sio.transport(conn.sid) == "websocket":
                await self.rooms.update(conn.room, conn.identity, conn.sid, {"transport": "websocket"})
                return

    @staticmethod
    def _stop_upgrade_watch(conn: Connection) -> None:
        if conn.upgrade_watch is not None:
            conn.upgrade_watch.cancel()
            conn.upgrade_watch = None

    async def leave(self, conn: Connection, data: dict[str, Any]) -> dict[str, Any]:
        self._require_joined(conn)
        conn.joined = False
        self._stop_upgrade_watch(conn)
        await self.sio.leave_room(conn.sid, sio_room(conn.room))
        await self.rooms.leave(conn.room, conn.identity, conn.sid, "left")
        return {}

    async def update(self, conn: Connection, data: dict[str, Any]) -> dict[str, Any]:
        await self._require_listed(conn)
        changes: dict[str, Any] = {}
        if "name" in data:
            changes["name"] = check_name(data["name"])
        if "metadata" in data:
            changes["metadata"] = check_metadata(data["metadata"])
        if not changes:
            raise bad_request("nothing to update: send name and/or metadata")
        event = await self.rooms.update(conn.room, conn.identity, conn.sid, changes)
        if event is None:
            raise ProtocolError("conflict", "no longer in the room")
        return {"self": event["participant"]}

    async def signal(self, conn: Connection, data: dict[str, Any]) -> dict[str, Any]:
        await self._require_listed(conn)
        to, kind = data.get("to"), data.get("type")
        if not valid_identity(to):
            raise bad_request("`to` must be a participant's identity")
        if kind not in SIGNAL_TYPES:
            raise bad_request(f"`type` must be one of {', '.join(SIGNAL_TYPES)}")
        if "data" not in data:
            raise bad_request("`data` is required")
        check_data(data["data"], MAX_SIGNAL_BYTES, "signal data")
        if to == conn.identity:
            raise bad_request("cannot signal yourself")
        member = await self.backend.membership(conn.room, to)
        if member is None or not is_socket_owner(member.owner):
            raise ProtocolError("not_found", f"{to!r} is not a connected participant of this room")
        await self.courier.emit(member, "signal", {"from": conn.identity, "type": kind, "data": data["data"]})
        self.metrics.events_out.labels("signal").inc()
        return {}

    async def message(self, conn: Connection, data: dict[str, Any]) -> dict[str, Any]:
        await self._require_listed(conn)
        if not conn.claims.grants.data:
            raise ProtocolError("forbidden", "this token lacks the `data` grant")
        payload, to = parse_message(data)
        message_id = await self.rooms.send(conn.room, conn.identity, payload, to, skip=conn.sid)
        return {"id": message_id}

    async def sfu(self, conn: Connection, op: str, data: dict[str, Any]) -> dict[str, Any]:
        await self._require_listed(conn)
        if self.media is None:
            raise ProtocolError("not_found", "this server relays no media (no SFU configured)")
        session = MediaSession(conn.room, conn.identity, conn.claims.grants)
        return await self.media.handle(session, op, data)
