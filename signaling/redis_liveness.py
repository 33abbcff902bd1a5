"""`NodeLiveness`: this node's heartbeat, and its watch over the other nodes.

Heartbeat: `<prefix>:node:<id>:alive` (TTL HEARTBEAT_TTL) is refreshed every HEARTBEAT_INTERVAL
with SET XX. When the key is gone (it expired while Redis stalled or this node was cut off, or
Redis restarted without its data), or after any failed command, the node first tells Redis
again which participants it holds (`reregister`, idempotent), then sets the key: a node's
connected participants are its truth, and nothing is served against a Redis that forgot them.

Reaping a node whose key expired follows two rules, so that a Redis that stalls (SIGSTOP, a long
fork) makes no node reap another, however long the stall:
- a node judges others only after it has itself been connected without a slow round trip for
  REAP_GRACE: after any stall every live node has refreshed its key by then;
- another node is dead once its key has been seen missing for REAP_GRACE, by checks that all
  came back quickly (a slow check says more about Redis than about the node).
A node killed for real is noticed HEARTBEAT_TTL + up to HEARTBEAT_INTERVAL + REAP_GRACE after
its last beat: about 6 s. docs/operations.md has the failure table.

A Redis that lost its data (`<prefix>:generation` is gone) knows no node's participants until
each node registers again. A node that finds it so waits, after registering, for the nodes it
last saw alive to do the same (at most PEERS_RETURN): until then a message to a room would
miss their members, and would be acked `ok` all the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable

from redis.exceptions import RedisError

from .redis_link import RedisLink

log = logging.getLogger("roomwire.redis.liveness")

HEARTBEAT_INTERVAL = 1.0
HEARTBEAT_TTL_MS = 3000
REAP_GRACE = 2.0
# A round trip slower than this means Redis (or the way to it) stalled.
SLOW_ROUND_TRIP = 0.5
# After Redis lost its data, a node waits for the others to register again: at least one
# heartbeat interval and a half (every live node beats in that time), at most PEERS_RETURN for
# the nodes it knew of.
PEERS_SETTLE = 1.5 * HEARTBEAT_INTERVAL
PEERS_RETURN = 4.0


class NodeLiveness:
    def __init__(
        self,
        link: RedisLink,
        node_id: str,
        reregister: Callable[[], Awaitable[None]],
        reap: Callable[[str], Awaitable[None]],
    ) -> None:
        self.link = link
        self.node_id = node_id
        self._reregister = reregister
        self._reap = reap
        self.connected_since: float | None = None
        self._beating = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []
        self._missing: dict[str, float] = {}  # node -> when its key was first seen missing
        self._peers: set[str] = set()  # the other nodes registered at the last heartbeat
        self._generation: str | None = None  # of the Redis data this node registered with

    @property
    def alive_key(self) -> str:
        return self.link.key("node", self.node_id, "alive")

    @property
    def nodes_key(self) -> str:
        return self.link.key("nodes")

    async def start(self) -> None:
        # The first beat registers whatever its key says: a previous process under this node id
        # may have left participants that are not this one's (`reregister` lets them go).
        self.link.registered.clear()
        await self.beat()
        self._tasks = [
            asyncio.create_task(self._every_interval(self.beat), name="roomwire-redis-heartbeat"),
            asyncio.create_task(self._every_interval(self._watch), name="roomwire-redis-reaper"),
        ]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    async def beat(self) -> None:
        """Refresh the heartbeat; after an outage or a lost key, register again first."""
        async with self._beating:
            loop = asyncio.get_running_loop()
            started = loop.time()
            try:
                async with self.link.redis.pipeline(transaction=False) as pipe:
                    pipe.set(self.alive_key, "1", px=HEARTBEAT_TTL_MS, xx=True).smembers(self.nodes_key)
                    refreshed, nodes = await pipe.execute()
                if refreshed:
                    self._peers = set(nodes) - {self.node_id}
                if not refreshed or not self.link.registered.is_set():
                    emptied = await self._data_was_lost()
                    await self._reregister()
                    await self.link.redis.set(self.alive_key, "1", px=HEARTBEAT_TTL_MS)
                    await self.link.redis.sadd(self.nodes_key, self.node_id)
                    if emptied:
                        await self._peers_registered()
                    self.link.back()
            except RedisError as exc:
                self.link.lost(exc)
                self.connected_since = None
                return
            if self.connected_since is None or loop.time() - started > SLOW_ROUND_TRIP:
                self.connected_since = loop.time()

    async def _data_was_lost(self) -> bool:
        """Whether Redis is another generation than the one this node registered with."""
        key = self.link.key("generation")
        await self.link.redis.set(key, uuid.uuid4().hex, nx=True)
        generation = await self.link.redis.get(key)
        lost = self._generation is not None and generation != self._generation
        self._generation = generation
        return lost

    async def _peers_registered(self) -> None:
        """Wait until the other nodes registered before have registered again (or PEERS_RETURN
        passed: a node that does not come back is dead, and its participants went with Redis)."""
        loop = asyncio.get_running_loop()
        keys = [self.link.key("node", peer, "alive") for peer in self._peers]
        settled, deadline = loop.time() + PEERS_SETTLE, loop.time() + PEERS_RETURN
        while loop.time() < deadline:
            if loop.time() >= settled and (not keys or all(await self.link.redis.mget(keys))):
                return
            await asyncio.sleep(0.1)
        log.info("Redis lost its data; not every node registered again within %.0f s", PEERS_RETURN)

    async def confirm_registered(self) -> None:
        """Make sure Redis still knows this node (it may have restarted since the last beat)."""
        if not await self.link.redis.exists(self.alive_key):
            await self.beat()

    async def _every_interval(self, step: Callable[[], Awaitable[None]]) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_INTERVAL)
            try:
                await step()
            except Exception:  # a bug must not stop the heartbeat or the watch for good
                log.exception("%s failed", getattr(step, "__name__", step))

    async def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        if self.connected_since is None or loop.time() - self.connected_since < REAP_GRACE:
            self._missing.clear()
            return
        started = loop.time()
        try:
            nodes = [n for n in await self.link.redis.smembers(self.nodes_key) if n != self.node_id]
            alive = await self.link.redis.mget([self.link.key("node", n, "alive") for n in nodes]) if nodes else []
        except RedisError:
            self._missing.clear()
            return
        now = loop.time()
        if now - started > SLOW_ROUND_TRIP:
            self._missing.clear()
            return
        for node, flag in zip(nodes, alive, strict=True):
            if flag is not None:
                self._missing.pop(node, None)
            elif now - self._missing.setdefault(node, now) >= REAP_GRACE:
                del self._missing[node]
                await self._reap(node)
        for node in set(self._missing) - set(nodes):
            del self._missing[node]
