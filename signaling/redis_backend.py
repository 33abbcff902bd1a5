"""The many-node backend: presence logs, participants and node liveness in one Redis.

Per room: `meta` (HASH epoch, offset, created), `log` (a STREAM of events), `members` (HASH
identity -> participant JSON) and `owners` (HASH identity -> "<node> <owner>"). Every change is
one Lua script (signaling/redis_scripts.py), so offsets stay contiguous across nodes.

Liveness: each node refreshes `node:<id>:alive` (TTL 3 s) every second and lists the
participants it holds in `node:<id>:held`. A node that finds another node's key expired takes
`node:<id>:reaping` (SET NX) and makes that node's participants leave, each with its owner, so
a participant that reconnected elsewhere meanwhile is left alone and no leave is emitted twice.

`recover(wait=...)`: the waiters of one room on this node share one XREAD BLOCK.
`follow`: while a node has sockets in a room, one more XREAD BLOCK hands that room's events to
them in stream order (python-socketio's Redis pub/sub could reorder emits of two nodes).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from redis import asyncio as aioredis

from . import redis_scripts
from .backend import (
    Deliver,
    JoinResult,
    LostHandler,
    Membership,
    Participant,
    PresenceEvent,
    Recovery,
    Retention,
    RoomInfo,
    StateBackend,
)
from .presence_log import new_epoch

log = logging.getLogger("roomwire.redis")

HEARTBEAT_INTERVAL = 1.0
HEARTBEAT_TTL_MS = 3000
REAP_LOCK_MS = 30_000
FOLLOW_BLOCK_MS = 5000

# Called for each participant of a dead node: (room, identity, owner). The composition root
# points it at RoomService.leave so that the leave is broadcast like any other.


def encode(participant: Participant) -> str:
    return json.dumps(participant, separators=(",", ":"), ensure_ascii=False)


def stream_id(raw: str) -> tuple[int, int]:
    ms, _, seq = raw.partition("-")
    return int(ms), int(seq or 0)


@dataclass
class RoomFollower:
    """One XREAD BLOCK per room with local waiters; each new entry wakes them all."""

    last_id: tuple[int, int]
    waiters: int = 0
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None

    def wake(self, last_id: tuple[int, int] | None = None) -> None:
        if last_id is not None and last_id > self.last_id:
            self.last_id = last_id
        changed, self.changed = self.changed, asyncio.Event()
        changed.set()


class RedisBackend(StateBackend):
    shared = True

    def __init__(
        self,
        url: str,
        retention: Retention | None = None,
        node_id: str | None = None,
        prefix: str = "roomwire",
    ) -> None:
        self.retention = retention or Retention()
        self.node_id = node_id or uuid.uuid4().hex[:12]
        self.prefix = prefix
        self.redis = aioredis.Redis.from_url(url, decode_responses=True)
        self._join = self.redis.register_script(redis_scripts.JOIN)
        self._leave = self.redis.register_script(redis_scripts.LEAVE)
        self._update = self.redis.register_script(redis_scripts.UPDATE)
        self._recover = self.redis.register_script(redis_scripts.RECOVER)
        self._keep = self.redis.register_script(redis_scripts.KEEP)
        self._followers: dict[str, RoomFollower] = {}
        self._deliveries: dict[str, asyncio.Task[None]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self.on_lost: LostHandler = self._leave_lost

    def on_node_lost(self, handler: LostHandler) -> None:
        """Route the leaves of a dead node's participants through `handler` (default: leave here)."""
        self.on_lost = handler

    # -- keys and scripts ------------------------------------------------------------------

    def _keys(self, room: str) -> list[str]:
        base = f"{self.prefix}:room:{room}"
        return [f"{base}:meta", f"{base}:log", f"{base}:members", f"{base}:owners"]

    def _node_key(self, node: str, what: str) -> str:
        return f"{self.prefix}:node:{node}:{what}"

    def _args(self, room: str, *extra: Any) -> list[Any]:
        age_ms = max(1, int(self.retention.max_age * 1000))
        return [room, new_epoch(), self.retention.max_events, age_ms, self.prefix, *extra]

    def _appended(self, room: str) -> None:
        follower = self._followers.get(room)
        if follower is not None:
            follower.wake()

    # -- StateBackend ----------------------------------------------------------------------

    async def join(self, room: str, participant: Participant, owner: str) -> JoinResult:
        args = self._args(room, participant["identity"], encode(participant), owner, self.node_id)
        reply = await self._join(keys=self._keys(room), args=args)
        self._appended(room)
        event, replaced, epoch, offset, *members = reply
        snapshot = Recovery(epoch, int(offset), participants=_participants(members))
        return JoinResult(event=json.loads(event), snapshot=snapshot, replaced_owner=replaced or None)

    async def leave(self, room: str, identity: str, owner: str | None = None) -> PresenceEvent | None:
        event = await self._leave(keys=self._keys(room), args=self._args(room, identity, owner or ""))
        if event is None:
            return None
        self._appended(room)
        return json.loads(event)

    async def update(
        self, room: str, identity: str, owner: str | None, changes: dict[str, Any], kind: str = "update"
    ) -> PresenceEvent | None:
        members = self._keys(room)[2]
        while True:  # compare-and-set: retried only when another change landed in between
            current = await self.redis.hget(members, identity)
            if current is None:
                return None
            merged = encode({**json.loads(current), **changes})
            args = self._args(room, identity, owner or "", current, merged, kind)
            reply = await self._update(keys=self._keys(room), args=args)
            if reply[0] == 0:
                return None
            if reply[0] == 2:
                self._appended(room)
                return json.loads(reply[1])

    async def membership(self, room: str, identity: str) -> Membership | None:
        _, _, members, owners = self._keys(room)
        async with self.redis.pipeline(transaction=True) as pipe:
            participant, held = await pipe.hget(members, identity).hget(owners, identity).execute()
        if participant is None or held is None:
            return None
        return Membership(participant=json.loads(participant), owner=held.partition(" ")[2])

    async def snapshot(self, room: str) -> Recovery | None:
        meta, _, members, _ = self._keys(room)
        async with self.redis.pipeline(transaction=True) as pipe:
            head, values = await pipe.hmget(meta, "epoch", "offset").hvals(members).execute()
        if head[0] is None:
            return None
        return Recovery(head[0], int(head[1]), participants=_participants(values))

    async def recover(self, room: str, epoch: str | None, offset: int | None, wait: float = 0.0) -> Recovery:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while True:
            result, last_id = await self._read(room, epoch, offset)
            remaining = deadline - loop.time()
            if result.is_snapshot or result.events or remaining <= 0:
                return result
            await self._wait_after(room, last_id, remaining)

    async def rooms(self) -> list[RoomInfo]:
        names = sorted(await self.redis.smembers(f"{self.prefix}:rooms"))
        async with self.redis.pipeline(transaction=False) as pipe:
            for name in names:
                meta, _, members, _ = self._keys(name)
                pipe.hlen(members).hget(meta, "created")
            counts = await pipe.execute()
        rooms = []
        for i, name in enumerate(names):
            count, created = counts[2 * i], counts[2 * i + 1]
            if count:
                rooms.append(RoomInfo(name=name, participants=int(count), created_at=int(created or 0)))
        return rooms

    # -- recovery and waiting --------------------------------------------------------------

    async def _read(self, room: str, epoch: str | None, offset: int | None) -> tuple[Recovery, tuple[int, int]]:
        args = self._args(room, epoch or "", -1 if offset is None else offset)
        kind, current, last_offset, last_id, *rest = await self._recover(keys=self._keys(room), args=args)
        if kind == "s":
            result = Recovery(current, int(last_offset), participants=_participants(rest))
        else:
            result = Recovery(current, int(last_offset), events=[json.loads(e) for e in rest])
        return result, stream_id(last_id)

    async def _wait_after(self, room: str, last_id: tuple[int, int], timeout: float) -> None:
        follower = self._followers.get(room)
        if follower is None:
            follower = self._followers[room] = RoomFollower(last_id)
        if follower.last_id > last_id:
            return  # an entry newer than what the caller read has already arrived
        follower.waiters += 1
        if follower.task is None or follower.task.done():
            follower.task = asyncio.create_task(self._follow(room, follower), name=f"roomwire-follow-{room}")
        changed = follower.changed
        try:
            # Not asyncio.wait_for: on 3.11 it can swallow a cancellation that races the event.
            async with asyncio.timeout(timeout):
                await changed.wait()
        except TimeoutError:
            pass
        finally:
            follower.waiters -= 1

    async def _follow(self, room: str, follower: RoomFollower) -> None:
        keys = self._keys(room)
        # Block no longer than half the retention age: an empty room is kept while watched.
        block = max(1, min(FOLLOW_BLOCK_MS, int(self.retention.max_age * 500)))
        try:
            while follower.waiters > 0:
                last = "{}-{}".format(*follower.last_id)
                try:
                    await self._keep(keys=keys, args=self._args(room))
                    reply = await self.redis.xread({keys[1]: last}, block=block)
                except aioredis.RedisError:
                    log.exception("following room %s failed; retrying", room)
                    await asyncio.sleep(1.0)
                    continue
                for _, entries in reply or []:
                    if entries:
                        follower.wake(stream_id(entries[-1][0]))
        finally:
            if self._followers.get(room) is follower and follower.waiters == 0:
                del self._followers[room]

    # -- delivery to this node's sockets -----------------------------------------------------

    async def follow(self, room: str, deliver: Deliver, wanted: Callable[[], bool]) -> None:
        if self._delivering(room):
            return
        log_key = self._keys(room)[1]
        newest = await self.redis.xrevrange(log_key, count=1)
        if self._delivering(room):  # another join started it meanwhile, from no later an entry
            return
        start = stream_id(newest[0][0]) if newest else (0, 0)
        self._deliveries[room] = asyncio.create_task(
            self._deliver(room, start, deliver, wanted), name=f"roomwire-deliver-{room}"
        )

    def _delivering(self, room: str) -> bool:
        task = self._deliveries.get(room)
        return task is not None and not task.done()

    async def _deliver(self, room: str, last_id: tuple[int, int], deliver: Deliver, wanted: Callable[[], bool]) -> None:
        log_key = self._keys(room)[1]
        try:
            # `wanted()` is checked and the task ends in one step, so a join that finds this task
            # still running is sure to be delivered to.
            while wanted():
                try:
                    reply = await self.redis.xread({log_key: "{}-{}".format(*last_id)}, block=FOLLOW_BLOCK_MS)
                except aioredis.RedisError:
                    log.exception("delivering room %s failed; retrying", room)
                    await asyncio.sleep(1.0)
                    continue
                for _, entries in reply or []:
                    for raw_id, fields in entries:
                        last_id = stream_id(raw_id)
                        try:
                            await deliver(json.loads(fields["e"]))
                        except Exception:
                            log.exception("delivering an event of room %s failed", room)
        finally:
            if self._deliveries.get(room) is asyncio.current_task():
                del self._deliveries[room]

    # -- node liveness ---------------------------------------------------------------------

    async def start(self) -> None:
        if self._tasks:
            return
        await self.redis.set(self._node_key(self.node_id, "alive"), "1", px=HEARTBEAT_TTL_MS)
        await self.redis.sadd(f"{self.prefix}:nodes", self.node_id)
        self._tasks = [
            asyncio.create_task(self._heartbeat_forever(), name="roomwire-redis-heartbeat"),
            asyncio.create_task(self._reap_forever(), name="roomwire-redis-reaper"),
        ]

    async def close(self) -> None:
        tasks = self._tasks + [f.task for f in self._followers.values() if f.task is not None]
        tasks += self._deliveries.values()
        self._tasks = []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._followers.clear()
        self._deliveries.clear()
        with contextlib.suppress(aioredis.RedisError):
            await self.redis.delete(self._node_key(self.node_id, "alive"))
            # Participants still held are left to the surviving nodes' reapers.
            if await self.redis.scard(self._node_key(self.node_id, "held")) == 0:
                await self.redis.srem(f"{self.prefix}:nodes", self.node_id)
        await self.redis.aclose()

    async def _heartbeat_forever(self) -> None:
        key = self._node_key(self.node_id, "alive")
        while True:
            try:
                if not await self.redis.set(key, "1", px=HEARTBEAT_TTL_MS, xx=True):
                    # Our key had expired: other nodes may have reaped our participants.
                    log.error("node %s missed its heartbeat; its participants may have been removed", self.node_id)
                    await self.redis.set(key, "1", px=HEARTBEAT_TTL_MS)
                    await self.redis.sadd(f"{self.prefix}:nodes", self.node_id)
            except aioredis.RedisError:
                log.exception("heartbeat of node %s failed", self.node_id)
            await asyncio.sleep(HEARTBEAT_INTERVAL)

    async def _reap_forever(self) -> None:
        while True:
            try:
                await self.reap_dead_nodes()
            except aioredis.RedisError:
                log.exception("reaping dead nodes failed")
            await asyncio.sleep(HEARTBEAT_INTERVAL)

    async def reap_dead_nodes(self) -> None:
        """Make the participants of every node whose heartbeat expired leave (once, cluster-wide)."""
        nodes = [n for n in await self.redis.smembers(f"{self.prefix}:nodes") if n != self.node_id]
        if not nodes:
            return
        alive = await self.redis.mget([self._node_key(n, "alive") for n in nodes])
        for node, flag in zip(nodes, alive, strict=True):
            if flag is None:
                await self._reap(node)

    async def _reap(self, node: str) -> None:
        lock = self._node_key(node, "reaping")
        if not await self.redis.set(lock, self.node_id, nx=True, px=REAP_LOCK_MS):
            return  # another survivor is on it
        try:
            held = await self.redis.smembers(self._node_key(node, "held"))
            for entry in held:
                room, identity, owner = json.loads(entry)
                try:
                    await self.on_lost(room, identity, owner)
                except Exception:
                    log.exception("removing %s of dead node %s from room %s failed", identity, node, room)
            log.info("node %s is gone: %d participant(s) removed", node, len(held))
            if await self.redis.scard(self._node_key(node, "held")) == 0:
                await self.redis.srem(f"{self.prefix}:nodes", node)
        finally:
            await self.redis.delete(lock)

    async def _leave_lost(self, room: str, identity: str, owner: str) -> None:
        await self.leave(room, identity, owner)


def _participants(values: list[str]) -> list[Participant]:
    participants = [json.loads(v) for v in values]
    # Redis hashes have no order; join order is what the in-memory backend shows.
    participants.sort(key=lambda p: (p.get("joinedAt", 0), p.get("identity", "")))
    return participants
