"""`RedisLink`: one node's line to Redis, and what the node knows of Redis right now.

Two clients, configured explicitly rather than left to redis-py's defaults (redis-py 8 gives
every command a 5 s socket timeout, as long as a 5 s blocking read):
- `redis`: ordinary commands. A command that takes longer than COMMAND_TIMEOUT counts as Redis
  being unreachable, so a stalled Redis is noticed within seconds, not minutes.
- `blocking`: XREAD BLOCK only, with a socket timeout above the block.
No client retries by itself: the Lua scripts append to logs and must not run twice. Whoever
can retry safely (the heartbeat, the readers) does so, with backoff.

`registered` is set while Redis knows every participant this node holds. A failed command
clears it; the heartbeat (redis_liveness.py) tells Redis again what the node holds, then sets
it. Operations wait for it briefly, then answer `unavailable`: nothing is acted on against a
Redis that has just come back empty.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from redis import asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from .protocol import ProtocolError

log = logging.getLogger("roomwire.redis")

COMMAND_TIMEOUT = 2.0
BLOCK_MS = 5000
BLOCK_TIMEOUT = BLOCK_MS / 1000 + 5.0
READY_WAIT = 3.0
# A reader that fails waits this long before it tries again, doubling up to the cap.
BACKOFF_FIRST, BACKOFF_CAP = 0.1, 2.0


def unavailable() -> ProtocolError:
    return ProtocolError("unavailable", "the shared state (Redis) cannot be reached right now; retry")


class RedisLink:
    def __init__(self, url: str, prefix: str) -> None:
        options = {
            "decode_responses": True,
            "socket_connect_timeout": COMMAND_TIMEOUT,
            "health_check_interval": 10,
            "retry": Retry(NoBackoff(), 0),
        }
        self.redis = aioredis.Redis.from_url(url, socket_timeout=COMMAND_TIMEOUT, **options)
        self.blocking = aioredis.Redis.from_url(url, socket_timeout=BLOCK_TIMEOUT, **options)
        self.prefix = prefix
        self.registered = asyncio.Event()
        self.registered.set()  # nothing held yet: nothing Redis could have lost
        self._in_outage = False

    def key(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    async def ready(self) -> None:
        if self.registered.is_set():
            return
        try:
            async with asyncio.timeout(READY_WAIT):
                await self.registered.wait()
        except TimeoutError:
            raise unavailable() from None

    @asynccontextmanager
    async def command(self) -> AsyncIterator[None]:
        """`async with link.command(): ...` runs Redis commands for an operation: it waits for
        this node to be registered, and turns a Redis failure into `unavailable`."""
        await self.ready()
        try:
            yield
        except RedisError as exc:
            self.lost(exc)
            raise unavailable() from None

    def lost(self, exc: BaseException) -> None:
        """A command failed: until the node is registered again, operations wait."""
        self.registered.clear()
        if not self._in_outage:  # once per outage, not once per failed command
            self._in_outage = True
            log.warning("Redis cannot be reached (%s: %s); retrying", type(exc).__name__, exc)

    def back(self) -> None:
        self.registered.set()
        if self._in_outage:
            self._in_outage = False
            log.info("Redis is reachable again; this node's participants are registered")

    async def backoff(self, delay: float) -> float:
        """Sleep `delay`; the next delay to use."""
        await asyncio.sleep(delay)
        return min(delay * 2, BACKOFF_CAP)

    async def read_stream(
        self,
        key: str,
        last_id: str,
        take: Callable[[str, dict[str, Any]], Awaitable[None]],
        wanted: Callable[[], bool] = lambda: True,
    ) -> None:
        """Hand every entry of a stream after `last_id` to `take`, in order, while `wanted()`;
        through Redis outages (with backoff). After a Redis restart a stream starts again with
        later ids (they are times), so reading on from `last_id` misses nothing of the new one.
        An entry that `take` fails on (not one this release writes) is logged and skipped: one bad
        entry must not end the reading for good."""
        delay = BACKOFF_FIRST
        while wanted():
            try:
                reply = await self.blocking.xread({key: last_id}, block=BLOCK_MS, count=256)
            except RedisError as exc:
                self.lost(exc)
                delay = await self.backoff(delay)
                continue
            delay = BACKOFF_FIRST
            for _, entries in reply or []:
                for entry_id, fields in entries:
                    last_id = entry_id
                    try:
                        await take(entry_id, fields)
                    except Exception:
                        log.exception("entry %s of stream %s could not be handled; skipped", entry_id, key)

    async def close(self) -> None:
        await self.redis.aclose()
        await self.blocking.aclose()
