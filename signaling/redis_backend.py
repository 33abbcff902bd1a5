"""The many-node backend: presence logs, participants, node liveness and commands between
nodes in one Redis.

Per room: `meta` (HASH epoch, offset, created), `log` (a STREAM of events), `members` (HASH
identity -> participant JSON), `owners` (HASH identity -> "<node> <owner>") and `nodes` (HASH
node -> participants it holds). Every change is one Lua script (redis_scripts.py), so offsets
stay contiguous across nodes.

Each node remembers the participants it holds (`_held`), as it last wrote or saw them, so that
it can tell Redis again after an outage (redis_liveness.py); a leave that Redis could not take
is retried then. Liveness and reaping: redis_liveness.py. Commands between nodes:
redis_inbox.py. Redis clients, timeouts and availability: redis_link.py.

`recover(wait=...)`: the waiters of one room on this node share one XREAD BLOCK.
`follow`: while a node has sockets in a room, one more XREAD BLOCK hands that room's events to
them in stream order.
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

from redis.exceptions import RedisError

from . import redis_scripts
from .backend import (
    Command,
    CommandHandler,
    Deliver,
    JoinResult,
    LostHandler,
    Membership,
    Recovery,
    Retention,
    RoomInfo,
    StateBackend,
)
from .presence_log import new_epoch
from .protocol import Participant, PresenceEvent, ProtocolError
from .redis_inbox import NodeInbox
from .redis_link import BACKOFF_FIRST, BLOCK_MS, RedisLink
from .redis_liveness import NodeLiveness

log = logging.getLogger("roomwire.redis")

REAP_LOCK_MS = 30_000
# A room's media lease (and a node's published load) lasts this long unless refreshed (every
# media_router.TEND_INTERVAL): a dead media node is noticed this fast.
MEDIA_LEASE_MS = 2000


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


@dataclass
class Held:
    """A participant this node holds: its connection and its latest JSON."""

    owner: str
    participant: str


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
        self.link = RedisLink(url, prefix)
        self.redis = self.link.redis
        self.inbox = NodeInbox(self.link, self.node_id)
        self.liveness = NodeLiveness(self.link, self.node_id, self.reregister, self._reap)
        scripts = {name: self.redis.register_script(getattr(redis_scripts, name.upper())) for name in
                   ("join", "leave", "update", "recover", "keep", "reregister",
                    "place_media", "keep_media", "release_media", "forget_node")}  # fmt: skip
        self._scripts = scripts
        self._held: dict[tuple[str, str], Held] = {}
        self._joining: set[tuple[str, str, str]] = set()  # (room, identity, owner) while JOIN runs
        self._followers: dict[str, RoomFollower] = {}
        self._deliveries: dict[str, asyncio.Task[None]] = {}
        self._background: set[asyncio.Task[None]] = set()
        self.on_lost: LostHandler = self._leave_lost
        self.on_taken: LostHandler | None = None

    def on_node_lost(self, handler: LostHandler) -> None:
        """Route the leaves of a dead node's participants (and of the participants Redis says
        this node holds but it does not: `_leave_strays`) through `handler` (default: leave here)."""
        self.on_lost = handler

    def on_taken_over(self, handler: LostHandler) -> None:
        """`handler(room, identity, owner)` for a participant of this node that another
        connection took over while this node could not reach Redis."""
        self.on_taken = handler

    # -- keys and scripts ------------------------------------------------------------------

    def _keys(self, room: str) -> list[str]:
        return [self.link.key("room", room, part) for part in ("meta", "log", "members", "owners", "nodes")]

    def _args(self, room: str, *extra: Any) -> list[Any]:
        age_ms = max(1, int(self.retention.max_age * 1000))
        return [room, new_epoch(), self.retention.max_events, age_ms, self.link.prefix, *extra]

    async def _run(self, script: str, room: str, *extra: Any) -> Any:
        async with self.link.command():
            return await self._scripts[script](keys=self._keys(room), args=self._args(room, *extra))

    def _appended(self, room: str) -> None:
        follower = self._followers.get(room)
        if follower is not None:
            follower.wake()

    # -- StateBackend ----------------------------------------------------------------------

    async def join(self, room: str, participant: Participant, owner: str) -> JoinResult:
        encoded = encode(participant)
        joining = (room, participant["identity"], owner)
        self._joining.add(joining)
        try:
            reply = await self._run("join", room, participant["identity"], encoded, owner, self.node_id)
            self._held[(room, participant["identity"])] = Held(owner, encoded)
        finally:
            self._joining.discard(joining)
        self._appended(room)
        event, previous, epoch, offset, *members = reply
        snapshot = Recovery(epoch, int(offset), participants=_participants(members))
        replaced = None
        if previous:
            node, _, old_owner = previous.partition(" ")
            replaced = Membership(participant={}, owner=old_owner, node=node)
        return JoinResult(event=json.loads(event), snapshot=snapshot, replaced=replaced)

    async def leave(self, room: str, identity: str, owner: str | None = None) -> PresenceEvent | None:
        held = self._held.get((room, identity))
        if held is not None and (owner is None or owner == held.owner):
            del self._held[(room, identity)]
        # If Redis cannot take the leave, it still lists the participant as this node's: the
        # next registration finds it there and leaves it (`_leave_strays`).
        event = await self._run("leave", room, identity, owner or "")
        if event is None:
            return None
        self._appended(room)
        return json.loads(event)

    async def update(
        self, room: str, identity: str, owner: str | None, changes: dict[str, Any], kind: str = "update"
    ) -> PresenceEvent | None:
        members = self._keys(room)[2]
        while True:  # compare-and-set: retried only when another change landed in between
            async with self.link.command():
                current = await self.redis.hget(members, identity)
            if current is None:
                return None
            merged = encode({**json.loads(current), **changes})
            reply = await self._run("update", room, identity, owner or "", current, merged, kind)
            if reply[0] == 0:
                return None
            if reply[0] == 2:
                self._appended(room)
                event = json.loads(reply[1])
                self._saw(room, event)
                return event

    async def membership(self, room: str, identity: str) -> Membership | None:
        member = await self._membership(room, identity)
        if member is None and (room, identity) in self._held:
            # ours, yet not listed: Redis may have restarted since our last heartbeat
            async with self.link.command():
                await self.liveness.confirm_registered()
            member = await self._membership(room, identity)
        return member

    async def _membership(self, room: str, identity: str) -> Membership | None:
        _, _, members, owners, _ = self._keys(room)
        async with self.link.command(), self.redis.pipeline(transaction=True) as pipe:
            participant, held = await pipe.hget(members, identity).hget(owners, identity).execute()
        if participant is None or held is None:
            return None
        node, _, owner = held.partition(" ")
        return Membership(participant=json.loads(participant), owner=owner, node=node)

    async def snapshot(self, room: str) -> Recovery | None:
        meta, _, members, _, _ = self._keys(room)
        async with self.link.command(), self.redis.pipeline(transaction=True) as pipe:
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
        async with self.link.command():
            names = sorted(await self.redis.smembers(self.link.key("rooms")))
            async with self.redis.pipeline(transaction=False) as pipe:
                for name in names:
                    meta, _, members, _, _ = self._keys(name)
                    pipe.hlen(members).hget(meta, "created")
                counts = await pipe.execute()
        rooms = []
        for i, name in enumerate(names):
            count, created = counts[2 * i], counts[2 * i + 1]
            if count:
                rooms.append(RoomInfo(name=name, participants=int(count), created_at=int(created or 0)))
        return rooms

    async def nodes(self, room: str) -> set[str]:
        async with self.link.command():
            return set(await self.redis.hkeys(self._keys(room)[4]))

    # -- between nodes ---------------------------------------------------------------------

    def serve(self, handler: CommandHandler) -> None:
        self.inbox.serve(handler)

    async def send(self, node: str, command: Command) -> None:
        await self.inbox.send(node, command)

    async def request(self, node: str, command: Command, timeout: float) -> Any:
        return await self.inbox.request(node, command, timeout)

    # -- where each room's media lives -----------------------------------------------------------

    async def media_node(self, room: str, place: bool) -> str | None:
        args = [self.link.prefix, room, MEDIA_LEASE_MS, "1" if place else "", self.node_id]
        async with self.link.command():
            return await self._scripts["place_media"](keys=[], args=args) or None

    async def media_nodes(self, rooms: list[str]) -> dict[str, str | None]:
        if not rooms:
            return {}
        async with self.link.command():
            holders = await self.redis.mget([self.link.key("media", room) for room in rooms])
        return dict(zip(rooms, holders, strict=True))

    async def keep_media(self, rooms: set[str], load: float) -> set[str]:
        args = [self.link.prefix, self.node_id, MEDIA_LEASE_MS, f"{load:.3f}", *sorted(rooms)]
        async with self.link.command():
            return set(await self._scripts["keep_media"](keys=[], args=args))

    async def release_media(self, room: str) -> None:
        async with self.link.command():
            await self._scripts["release_media"](keys=[], args=[self.link.prefix, self.node_id, room])

    def trusted_for(self) -> float:
        since = self.liveness.connected_since
        return 0.0 if since is None else asyncio.get_running_loop().time() - since

    # -- after an outage ---------------------------------------------------------------------

    async def reregister(self) -> None:
        """Tell Redis again every participant this node holds, room by room; once Redis serves
        this node again, leave those it lists for this node that it does not hold. Raises
        RedisError (the heartbeat retries)."""
        by_room: dict[str, list[str]] = {}
        for (room, identity), held in list(self._held.items()):
            by_room.setdefault(room, []).extend((identity, held.owner, held.participant))
        for room, triples in by_room.items():
            args = self._args(room, self.node_id, *triples)
            taken = await self._scripts["reregister"](keys=self._keys(room), args=args)
            self._appended(room)
            for identity in taken:
                held = self._held.pop((room, identity), None)
                if held is not None and self.on_taken is not None:
                    await self._quietly(self.on_taken, room, identity, held.owner)
        task = asyncio.create_task(self._leave_strays())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _leave_strays(self) -> None:
        """Leave the participants Redis lists as this node's that this node does not hold: a
        leave Redis could not take, a join Redis carried out after its caller gave up waiting
        (a stall), or a previous process under this node id that was killed and restarted
        before any other node reaped it. Runs once the registration is complete."""
        await self.link.registered.wait()
        try:
            async with self.link.command():
                entries = await self._held_by(self.node_id)
        except ProtocolError:
            return  # Redis went away again: the next registration looks again
        for room, identity, owner in entries:
            held = self._held.get((room, identity))
            if (held is None or held.owner != owner) and (room, identity, owner) not in self._joining:
                await self._quietly(self.on_lost, room, identity, owner)

    async def _held_by(self, node: str) -> list[tuple[str, str, str]]:
        """(room, identity, owner) of every participant Redis lists as `node`'s; an entry that
        is not one (no script of this release writes it) is logged and skipped."""
        held = []
        for entry in await self.redis.smembers(self.link.key("node", node, "held")):
            try:
                room, identity, owner = json.loads(entry)
                held.append((str(room), str(identity), str(owner)))
            except (ValueError, TypeError):
                log.warning("node %s: a held entry that is not (room, identity, owner) skipped: %.200r", node, entry)
        return held

    async def _quietly(self, handler: LostHandler, room: str, identity: str, owner: str) -> None:
        try:
            await handler(room, identity, owner)
        except Exception:
            log.exception("removing %s from room %s failed", identity, room)

    def _saw(self, room: str, event: PresenceEvent) -> None:
        """Keep what this node holds as Redis has it (another node may change our participants:
        the SFU's node announces their tracks)."""
        participant = event.get("participant") or {}
        held = self._held.get((room, participant.get("identity", "")))
        if held is not None and event.get("type") in ("update", "track"):
            held.participant = encode(participant)

    # -- recovery and waiting --------------------------------------------------------------

    async def _read(self, room: str, epoch: str | None, offset: int | None) -> tuple[Recovery, tuple[int, int]]:
        kind, current, last_offset, last_id, *rest = await self._run(
            "recover", room, epoch or "", -1 if offset is None else offset
        )
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
        block = max(1, min(BLOCK_MS, int(self.retention.max_age * 500)))
        delay = BACKOFF_FIRST
        try:
            while follower.waiters > 0:
                last = "{}-{}".format(*follower.last_id)
                try:
                    await self._scripts["keep"](keys=keys, args=self._args(room))
                    reply = await self.link.blocking.xread({keys[1]: last}, block=block)
                except RedisError as exc:
                    self.link.lost(exc)
                    follower.wake()  # waiters read again: they get `unavailable` or the news
                    delay = await self.link.backoff(delay)
                    continue
                delay = BACKOFF_FIRST
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
        async with self.link.command():
            newest = await self.redis.xrevrange(self._keys(room)[1], count=1)
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
        async def take(_: str, fields: dict[str, Any]) -> None:  # read_stream logs what fails
            event = json.loads(fields["e"])
            self._saw(room, event)
            await deliver(event)

        try:
            # `wanted()` is checked and the task ends in one step, so a join that finds this task
            # still running is sure to be delivered to.
            await self.link.read_stream(self._keys(room)[1], "{}-{}".format(*last_id), take, wanted)
        finally:
            if self._deliveries.get(room) is asyncio.current_task():
                del self._deliveries[room]

    # -- lifecycle and reaping -------------------------------------------------------------------

    async def start(self) -> None:
        await self.liveness.start()
        await self.inbox.start()

    async def close(self) -> None:
        tasks = [f.task for f in self._followers.values() if f.task is not None]
        tasks += [*self._deliveries.values(), *self._background]
        await self.liveness.close()
        await self.inbox.close()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._followers.clear()
        self._deliveries.clear()
        with contextlib.suppress(RedisError):
            await self.redis.delete(self.liveness.alive_key)
            # Participants still held are left to the surviving nodes' reapers.
            await self._forget(self.node_id)
        await self.link.close()

    async def reap_dead_nodes(self) -> None:
        """Reap every node whose heartbeat key is gone now (no grace: for tests and tools)."""
        nodes = [n for n in await self.redis.smembers(self.liveness.nodes_key) if n != self.node_id]
        alive = await self.redis.mget([self.link.key("node", n, "alive") for n in nodes]) if nodes else []
        for node, flag in zip(nodes, alive, strict=True):
            if flag is None:
                await self._reap(node)

    async def _reap(self, node: str) -> None:
        """Make a dead node's participants leave (once, cluster-wide), each with its owner, so
        that one that reconnected elsewhere meanwhile is left alone."""
        lock = self.link.key("node", node, "reaping")
        if not await self.redis.set(lock, self.node_id, nx=True, px=REAP_LOCK_MS):
            return  # another survivor is on it
        try:
            held = await self._held_by(node)
            alive = self.link.key("node", node, "alive")
            for room, identity, owner in held:
                if await self.redis.exists(alive):  # it came back meanwhile: its own again
                    log.info("node %s is back: its participants are left to it", node)
                    return
                await self._quietly(self.on_lost, room, identity, owner)
            log.info("node %s is gone: %d participant(s) removed", node, len(held))
            await self._forget(node)
        finally:
            await self.redis.delete(lock)

    async def _forget(self, node: str) -> None:
        """A node that holds nobody and is not alive leaves the cluster's lists (one script)."""
        keys = [self.link.key("node", node, what) for what in ("alive", "held", "media")]
        keys += [self.inbox.key(node), self.liveness.nodes_key]
        await self._scripts["forget_node"](keys=keys, args=[node])

    async def _leave_lost(self, room: str, identity: str, owner: str) -> None:
        await self.leave(room, identity, owner)


def _participants(values: list[str]) -> list[Participant]:
    participants = [json.loads(v) for v in values]
    # Redis hashes have no order; join order is what the in-memory backend shows.
    participants.sort(key=lambda p: (p.get("joinedAt", 0), p.get("identity", "")))
    return participants
