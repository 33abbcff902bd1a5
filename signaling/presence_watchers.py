"""Watchers that are present without a socket: SSE streams and long polls with `presence=1`.

A watcher holds a lease on its (room, identity). The first request joins the room with an owner
string `watch:<transport>:<id>` (so the room never mistakes it for a Socket.IO sid); the lease
then lasts while an SSE stream is open (plus a short grace, so that an EventSource reconnect
does not flap leave/join), or `timeout + 10` seconds after each long poll arrives. When it
lapses the watcher leaves, with its owner, so a leave never removes a connection that has
replaced it meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .backend import StateBackend
from .protocol import Participant, ProtocolError, bad_request
from .rooms import RoomService, new_participant
from .tokens import Claims

log = logging.getLogger("roomwire.watchers")

# EventSource reconnects after the `retry:` we send (1 s); a stream that is back within this
# keeps its presence. Stream close is noticed at once (or within presence_sse.LIVENESS_SLICE),
# so the watcher leaves well within the protocol's 5 s.
SSE_GRACE_SECONDS = 2.0
# docs/protocol.md: a long-poll watcher leaves when no poll arrives within `timeout + 10` seconds.
POLL_LEASE_MARGIN = 10.0

LostListener = Callable[[str], None]


def presence_flag(query: Any) -> bool:
    """`presence=1` makes the watcher present; absent or `0` does not; anything else is a 400."""
    raw = query.get("presence")
    if raw in (None, "", "0", "false"):
        return False
    if raw in ("1", "true"):
        return True
    raise bad_request("presence must be 1 or 0")


@dataclass(eq=False)
class Lease:
    room: str
    identity: str
    transport: str
    owner: str
    joined: asyncio.Future[None] | None = None
    streams: int = 0
    expiry: asyncio.TimerHandle | None = None
    # Open SSE streams of this lease: told when the watcher is removed from the room by others.
    on_lost: set[LostListener] = field(default_factory=set)

    def cancel_expiry(self) -> None:
        if self.expiry is not None:
            self.expiry.cancel()
            self.expiry = None


class WatcherPresence:
    """The leases of every present watcher of one node. `removed` must hear every leave."""

    def __init__(self, rooms: RoomService, backend: StateBackend) -> None:
        self.rooms = rooms
        self.backend = backend
        self._leases: dict[tuple[str, str], Lease] = {}
        self._leaving: set[asyncio.Task[None]] = set()

    async def hold(self, room: str, claims: Claims, transport: str) -> Lease:
        """An SSE stream opens: present until it closes (and the grace passes)."""
        lease = self._lease(room, claims, transport)
        lease.streams += 1
        lease.cancel_expiry()
        try:
            await self._joined(lease)
        except BaseException:  # refused, or the client left while joining: it may lapse now
            self.release(lease)
            raise
        return lease

    def release(self, lease: Lease) -> None:
        """An SSE stream of this lease closed."""
        lease.streams -= 1
        if lease.streams <= 0 and self._leases.get((lease.room, lease.identity)) is lease:
            self._expire_in(lease, SSE_GRACE_SECONDS)

    async def renew(self, room: str, claims: Claims, transport: str, timeout: float) -> Lease:
        """A long poll arrives: present for `timeout + 10` seconds more."""
        lease = self._lease(room, claims, transport)
        self._expire_in(lease, timeout + POLL_LEASE_MARGIN)  # first: a cancelled poll still lapses
        await self._joined(lease)
        return lease

    async def close(self) -> None:
        """Shutdown: every watcher leaves now."""
        leases, self._leases = list(self._leases.values()), {}
        for lease in leases:
            lease.cancel_expiry()
            await self._leave(lease, "shutdown")
        if self._leaving:
            await asyncio.gather(*self._leaving, return_exceptions=True)

    # -- internals -------------------------------------------------------------------------

    def _lease(self, room: str, claims: Claims, transport: str) -> Lease:
        """The lease of (room, identity), started now if there is none (no await: concurrent
        first requests share one join)."""
        if claims.room != room:
            raise ProtocolError("forbidden", "presence=1 needs a token of this room (an identity in it)")
        key = (room, claims.identity)
        lease = self._leases.get(key)
        if lease is None or lease.transport != transport:
            if lease is not None:  # the same identity moves to another transport: a join replaces it
                lease.cancel_expiry()
            lease = Lease(room, claims.identity, transport, owner=f"watch:{transport}:{uuid.uuid4().hex}")
            self._leases[key] = lease
            lease.joined = asyncio.ensure_future(self._join(lease, claims))
        return lease

    async def _joined(self, lease: Lease) -> None:
        assert lease.joined is not None
        try:
            await asyncio.shield(lease.joined)
        except Exception:
            key = (lease.room, lease.identity)
            if self._leases.get(key) is lease:
                del self._leases[key]
            lease.cancel_expiry()
            raise

    async def _join(self, lease: Lease, claims: Claims) -> None:
        participant = new_participant(claims, lease.transport)
        await self.rooms.admit(lease.room, participant)
        await self.rooms.join(lease.room, participant, lease.owner)

    def _expire_in(self, lease: Lease, delay: float) -> None:
        lease.cancel_expiry()
        lease.expiry = asyncio.get_running_loop().call_later(delay, self._expire, lease)

    def _expire(self, lease: Lease) -> None:
        lease.expiry = None
        key = (lease.room, lease.identity)
        if self._leases.get(key) is not lease or lease.streams > 0:
            return
        del self._leases[key]
        task = asyncio.create_task(self._leave(lease, "disconnected"), name=f"roomwire-watcher-leave-{key}")
        self._leaving.add(task)
        task.add_done_callback(self._leaving.discard)

    async def _leave(self, lease: Lease, reason: str) -> None:
        try:
            if lease.joined is not None:
                with contextlib.suppress(Exception):
                    await lease.joined  # a slow join (an on_join hook) first, else it would outlive us
            await self.rooms.leave(lease.room, lease.identity, lease.owner, reason)
        except Exception:
            log.exception("watcher %s of room %s failed to leave", lease.identity, lease.room)

    async def removed(self, room: str, participant: Participant, reason: str) -> None:
        """A participant left: if somebody else removed a watcher of ours (a kick), drop its
        lease and end its streams."""
        lease = self._leases.get((room, participant.get("identity", "")))
        if lease is None or lease.joined is None or not lease.joined.done():
            return  # our own expiry (already unregistered), or a lease still joining
        member = await self.backend.membership(room, lease.identity)
        if member is not None and member.owner == lease.owner:
            return
        if self._leases.get((room, lease.identity)) is lease:
            del self._leases[(room, lease.identity)]
        lease.cancel_expiry()
        for listener in list(lease.on_lost):
            with contextlib.suppress(Exception):
                listener(reason)
