"""`MediaRouter`: the media backend of a node of many. Each room's media lives on one node.

The first `sfu.*` of a room places its media on the least loaded node (a lease in the shared
state, `StateBackend.media_node`); from then on every node hands that room's `sfu.*` events to
that node and returns its answer in the ack, and a participant's leave reaches it too. The
holder's SFU reaches subscribers on other nodes through the courier (`sfu.offer` and its ack).

Every TEND_INTERVAL each node:
- refreshes its leases and publishes its load (CPU, media participants, packets forwarded);
  a room another node has taken meanwhile (this node was cut off) loses its media here;
- lets go of rooms whose media participants have all left;
- looks at the rooms whose media its own members use: when the node holding one is lost (its
  lease lapsed) or the room moved, those members get `sfu.restart` and publish and subscribe
  again, which places the room on a live node.
A room larger than one node (relaying tracks between nodes, as mediasoup's pipeToRouter does)
fits here: docs/architecture.md sketches it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import asdict
from typing import Any

import socketio

from .backend import Command, StateBackend
from .courier import Courier, sio_room
from .media_backend import MediaBackend, MediaSession, MediaSignaling
from .protocol import Grants, ProtocolError
from .socketio_internals import has_local_members

log = logging.getLogger("roomwire.media_router")

TEND_INTERVAL = 0.5
# An SFU negotiation on another node (it may wait for a connection to come up) may take this long.
SFU_REQUEST_TIMEOUT = 15.0
# The load a node publishes: each media participant and each busy core adds to the score
# (a room it holds adds 1 more, in the placement script). Lower is chosen first.
PARTICIPANTS_PER_POINT = 50.0
# docs/protocol.md: the one server event that tells a participant to publish and subscribe again
RESTART_EVENT = "sfu.restart"
# A node acts on a lapsed lease only when its view of the shared state has been reliable this
# long: after an outage of the shared state, holders refresh their leases within a round.
TRUST_AFTER = 2.5


class MediaRouter:
    def __init__(self, local: MediaBackend, backend: StateBackend, courier: Courier, sio: socketio.AsyncServer) -> None:
        self.local = local
        self.backend = backend
        self.sio = sio
        self._held: dict[str, set[str]] = {}  # rooms whose media this node holds -> participants
        self._used: dict[str, str] = {}  # rooms whose media this node's members use -> its node
        self._task: asyncio.Task[None] | None = None
        self._cpu_mark = (time.monotonic(), time.process_time())
        courier.route("sfu", self._serve)
        courier.route("sfu-left", self._serve_left)

    @property
    def node_id(self) -> str:
        return self.backend.node_id

    # -- MediaBackend ----------------------------------------------------------------------

    async def start(self, signaling: MediaSignaling) -> None:
        await self.local.start(signaling)
        await self.backend.keep_media(set(), self._load())  # a candidate for rooms from now on
        self._task = asyncio.create_task(self._tend_forever(), name="roomwire-media-router")

    async def handle(self, session: MediaSession, op: str, payload: dict[str, Any]) -> dict[str, Any]:
        node = await self.backend.media_node(session.room, place=True)
        if node is None:
            raise ProtocolError("unavailable", "no node can take this room's media right now; retry")
        self._used[session.room] = node
        if node == self.node_id:
            return await self._handle_here(session, op, payload)
        command = {
            "op": "sfu",
            "room": session.room,
            "identity": session.identity,
            "grants": asdict(session.grants),
            "sfu_op": op,
            "payload": payload,
        }
        return await self.backend.request(node, command, SFU_REQUEST_TIMEOUT)

    async def participant_left(self, room: str, identity: str) -> None:
        if identity in self._held.get(room, ()):
            await self._left_here(room, identity)
            return
        try:
            node = self._used.get(room) or await self.backend.media_node(room, place=False)
            if node is not None and node != self.node_id:
                await self.backend.send(node, {"op": "sfu-left", "room": room, "identity": identity})
        except ProtocolError as exc:  # its node drops the connections when they fail
            log.info("could not tell the media node that %s left room %s: %s", identity, room, exc.message)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.local.close()
        for room in list(self._held):
            with contextlib.suppress(ProtocolError):
                await self.backend.release_media(room)
        self._held.clear()

    # -- on the room's media node --------------------------------------------------------------

    async def _handle_here(self, session: MediaSession, op: str, payload: dict[str, Any]) -> dict[str, Any]:
        self._held.setdefault(session.room, set()).add(session.identity)
        return await self.local.handle(session, op, payload)

    async def _serve(self, command: Command) -> dict[str, Any]:
        session = MediaSession(command["room"], command["identity"], Grants(**command["grants"]))
        return await self._handle_here(session, command["sfu_op"], command["payload"])

    async def _serve_left(self, command: Command) -> None:
        if command["identity"] in self._held.get(command["room"], ()):
            await self._left_here(command["room"], command["identity"])

    async def _left_here(self, room: str, identity: str) -> None:
        self._held.get(room, set()).discard(identity)
        await self.local.participant_left(room, identity)

    # -- every TEND_INTERVAL ---------------------------------------------------------------------

    async def _tend_forever(self) -> None:
        while True:
            await asyncio.sleep(TEND_INTERVAL)
            try:
                await self._tend()
            except ProtocolError:
                pass  # the shared state is unreachable: the next round tries again
            except Exception:
                log.exception("tending the rooms' media failed")

    async def _tend(self) -> None:
        for room in [room for room, who in self._held.items() if not who]:
            del self._held[room]
            await self.backend.release_media(room)
        for room in await self.backend.keep_media(set(self._held), self._load()):
            log.warning("room %s's media moved to another node while this one was cut off", room)
            for identity in self._held.pop(room, set()):
                await self.local.participant_left(room, identity)
        await self._watch_used()

    async def _watch_used(self) -> None:
        for room in [room for room in self._used if not has_local_members(self.sio, sio_room(room))]:
            del self._used[room]
        holders = await self.backend.media_nodes(list(self._used))
        for room, holder in holders.items():
            if holder == self._used.get(room) or self.backend.trusted_for() < TRUST_AFTER:
                continue
            lost = self._used.pop(room)
            log.info("room %s: its media node %s is gone; its members here publish again", room, lost)
            restart = {"reason": "the room's media moved to another node"}
            await self.sio.emit(RESTART_EVENT, restart, room=sio_room(room))

    def _load(self) -> float:
        now, cpu = time.monotonic(), time.process_time()
        then, cpu_then = self._cpu_mark
        self._cpu_mark = (now, cpu)
        busy = (cpu - cpu_then) / max(now - then, 1e-3)  # cores this process kept busy
        participants = sum(len(who) for who in self._held.values())
        return busy + participants / PARTICIPANTS_PER_POINT
