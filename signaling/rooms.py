"""Room membership: every presence change goes through here, in order, to every transport."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
import uuid
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import socketio

from .backend import JoinResult, Membership, StateBackend
from .courier import Courier, sio_room
from .media_backend import MediaBackend
from .metrics import Metrics
from .protocol import Message, Participant, PresenceEvent, ProtocolError
from .socketio_internals import has_local_members
from .tokens import Claims

log = logging.getLogger("roomwire.rooms")

JoinHook = Callable[[str, Participant], Awaitable[str | None]]
LeaveHook = Callable[[str, Participant, str], Awaitable[None]]
MessageHook = Callable[[str, str, Any, str | None], Awaitable[None]]


def new_participant(claims: Claims, transport: str) -> Participant:
    """The protocol's Participant for a token that joins now over `transport`."""
    return {
        "identity": claims.identity,
        "name": claims.name or claims.identity,
        "metadata": claims.metadata,
        "joinedAt": int(time.time() * 1000),
        "transport": transport,
        "tracks": [],
    }


@dataclass
class Hooks:
    on_join: list[JoinHook] = field(default_factory=list)
    on_leave: list[LeaveHook] = field(default_factory=list)
    on_message: list[MessageHook] = field(default_factory=list)


class RoomService:
    def __init__(
        self,
        backend: StateBackend,
        sio: socketio.AsyncServer,
        courier: Courier,
        metrics: Metrics,
        hooks: Hooks,
        media: MediaBackend | None,
    ) -> None:
        self.backend = backend
        self.sio = sio
        self.courier = courier
        self.metrics = metrics
        self.hooks = hooks
        self.media = media
        # One lock per room keeps "change the log, then tell everyone" in log order. Weak values:
        # a lock lives only while somebody holds or waits for it.
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        self._left_listeners: list[LeaveHook] = []

    def on_left(self, listener: LeaveHook) -> None:
        """Have `listener` told of every leave (roomwire's own parts; apps use Hooks.on_leave)."""
        self._left_listeners.append(listener)

    async def taken_over(self, room: str, identity: str, owner: str) -> None:
        """Another connection holds the identity now: this node's connection learns it."""
        if is_socket_owner(owner):
            await self.courier.kick(Membership({}, owner, self.backend.node_id), "replaced")

    async def leave_lost(self, room: str, identity: str, owner: str) -> None:
        """A participant held by a node that died leaves like one whose connection dropped."""
        await self.leave(room, identity, owner, "disconnected")

    def _lock(self, room: str) -> asyncio.Lock:
        lock = self._locks.get(room)
        if lock is None:
            lock = self._locks[room] = asyncio.Lock()
        return lock

    async def broadcast(self, room: str, event: PresenceEvent) -> None:
        if self.backend.shared:
            return  # every node delivers it to its own sockets from the log: see `_deliver`
        self.metrics.events_out.labels("presence").inc()
        await self.sio.emit("presence", event, room=sio_room(room))

    async def _deliver(self, room: str, event: PresenceEvent) -> None:
        # This node's sockets: the other nodes deliver the same event from the log.
        self.metrics.events_out.labels("presence").inc()
        await self.sio.emit("presence", event, room=sio_room(room))

    def _has_local_sockets(self, room: str) -> bool:
        return has_local_members(self.sio, sio_room(room))

    async def _follow(self, room: str) -> None:
        """With a shared backend, deliver the room's log to this node's sockets while it has any.

        Called after the socket entered the Socket.IO room and before its join is appended, so
        the delivery starts no later than the join event and the member misses nothing after it.
        """
        await self.backend.follow(
            room, functools.partial(self._deliver, room), functools.partial(self._has_local_sockets, room)
        )

    async def admit(self, room: str, participant: Participant) -> None:
        """Ask the embedding app's `on_join` hooks; a returned reason refuses the join."""
        for hook in self.hooks.on_join:
            reason = await hook(room, dict(participant))
            if reason:
                raise ProtocolError("forbidden", str(reason))

    async def join(self, room: str, participant: Participant, owner: str) -> JoinResult:
        if self.backend.shared and is_socket_owner(owner):
            await self._follow(room)
        async with self._lock(room):
            result = await self.backend.join(room, participant, owner)
            if result.replaced_owner is None:
                self.metrics.participants.inc()
            await self.broadcast(room, result.event)
        if result.replaced is not None and result.replaced.owner != owner:
            await self._drop_replaced(room, participant["identity"], result.replaced)
        return result

    async def _drop_replaced(self, room: str, identity: str, old: Membership) -> None:
        if self.media is not None:
            await self.media.participant_left(room, identity)
        if is_socket_owner(old.owner):
            await self.courier.kick(old, "replaced")

    async def leave(self, room: str, identity: str, owner: str | None, reason: str) -> bool:
        async with self._lock(room):
            try:
                event = await self.backend.leave(room, identity, owner)
            except ProtocolError:
                # the shared state cannot record it now (the backend retries later); this
                # node's media of the participant goes at once
                if self.media is not None:
                    await self.media.participant_left(room, identity)
                raise
            if event is None:
                return False
            self.metrics.participants.dec()
            await self.broadcast(room, event)
        if self.media is not None:
            await self.media.participant_left(room, identity)
        for hook in [*self._left_listeners, *self.hooks.on_leave]:
            await run_hook(hook, room, event["participant"], reason)
        return True

    async def update(
        self, room: str, identity: str, owner: str | None, changes: dict[str, Any], kind: str = "update"
    ) -> PresenceEvent | None:
        async with self._lock(room):
            event = await self.backend.update(room, identity, owner, changes, kind)
            if event is not None:
                await self.broadcast(room, event)
        return event

    async def kick(self, room: str, identity: str, reason: str = "removed") -> bool:
        member = await self.backend.membership(room, identity)
        if member is None:
            return False
        await self.leave(room, identity, member.owner, reason)
        if is_socket_owner(member.owner):
            await self.courier.kick(member, reason)
        return True

    async def send(self, room: str, sender: str, data: Any, to: str | None, skip: str | None) -> str:
        """Deliver a `message` to a room (or one member); returns the message id."""
        message: Message = {"id": uuid.uuid4().hex, "from": sender, "data": data, "ts": int(time.time() * 1000)}
        if to is not None:
            member = await self.backend.membership(room, to)
            if member is None:
                raise ProtocolError("not_found", f"{to!r} is not in this room")
            if not is_socket_owner(member.owner):
                raise ProtocolError("not_found", f"{to!r} watches presence only and cannot receive messages")
            await self.courier.emit(member, "message", message)
        else:
            await self.courier.broadcast(room, "message", message, skip)
        self.metrics.events_out.labels("message").inc()
        for hook in self.hooks.on_message:
            await run_hook(hook, room, sender, data, to)
        return message["id"]


def is_socket_owner(owner: str) -> bool:
    """Owners are Socket.IO sids, or `watch:<id>` for presence-only SSE/long-poll watchers."""
    return not owner.startswith("watch:")


async def run_hook(hook: Callable[..., Awaitable[None]], *args: Any) -> None:
    # An embedding app's bug must not break the room for everyone else.
    try:
        await hook(*args)
    except Exception:
        log.exception("hook %s failed", getattr(hook, "__name__", hook))
