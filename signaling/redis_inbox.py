"""`NodeInbox`: commands between nodes, through one Redis stream per node.

Any node XADDs a command to `<prefix>:node:<id>:inbox`; that node alone reads the stream, in
order, from where it last read (XREAD BLOCK), so nothing is lost while it is up, even across a
Redis outage (a stream outlives its reader's reconnects, unlike pub/sub). Every command carries
an id; a command seen again (a sender retried an XADD whose reply was lost) is dropped.

A request carries `reply_to` and `rid`: the target carries it out in a task of its own and
XADDs the answer to the requester's inbox. The requester waits with a timeout, so a node that
dies between request and reply costs the caller an `unavailable`, never a hang.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import deque
from typing import Any

import orjson

from .backend import Command, CommandHandler
from .protocol import ProtocolError
from .redis_link import RedisLink

log = logging.getLogger("roomwire.redis.inbox")

INBOX_MAXLEN = 10_000
SEEN_IDS = 10_000


class NodeInbox:
    def __init__(self, link: RedisLink, node_id: str) -> None:
        self.link = link
        self.node_id = node_id
        self._handler: CommandHandler | None = None
        self._replies: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._seen: deque[str] = deque(maxlen=SEEN_IDS)
        self._seen_set: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._reader: asyncio.Task[None] | None = None

    def key(self, node: str) -> str:
        return self.link.key("node", node, "inbox")

    def serve(self, handler: CommandHandler) -> None:
        self._handler = handler

    async def start(self) -> None:
        newest = await self.link.redis.xrevrange(self.key(self.node_id), count=1)
        start = newest[0][0] if newest else "0-0"
        self._reader = asyncio.create_task(self._read_forever(start), name=f"roomwire-inbox-{self.node_id}")

    async def close(self) -> None:
        tasks = [*self._tasks, *([self._reader] if self._reader else [])]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for future in self._replies.values():
            future.cancel()

    async def send(self, node: str, command: Command) -> None:
        entry = {"c": orjson.dumps({**command, "id": uuid.uuid4().hex})}
        async with self.link.command():
            await self.link.redis.xadd(self.key(node), entry, maxlen=INBOX_MAXLEN, approximate=True)

    async def request(self, node: str, command: Command, timeout: float) -> Any:
        rid = uuid.uuid4().hex
        answer: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._replies[rid] = answer
        try:
            await self.send(node, {**command, "reply_to": self.node_id, "rid": rid})
            async with asyncio.timeout(timeout):
                reply = await answer
        except TimeoutError:
            raise ProtocolError("unavailable", f"node {node} did not answer within {timeout:g} s") from None
        finally:
            self._replies.pop(rid, None)
        error = reply.get("error")
        if isinstance(error, dict):
            raise ProtocolError(str(error.get("code")), str(error.get("message")))
        return reply.get("result")

    # -- reading -------------------------------------------------------------------------------

    async def _read_forever(self, last_id: str) -> None:
        async def take(_: str, fields: dict[str, Any]) -> None:
            command = orjson.loads(fields["c"])
            if not isinstance(command, dict):
                raise ValueError(f"not a command: {fields['c'][:200]!r}")
            await self._take(command)

        await self.link.read_stream(self.key(self.node_id), last_id, take)

    async def _take(self, command: Command) -> None:
        if command.get("op") == "reply":
            waiting = self._replies.get(command.get("rid", ""))
            if waiting is not None and not waiting.done():
                waiting.set_result(command)
            return
        command_id = command.get("id", "")
        if command_id in self._seen_set:
            return
        if len(self._seen) == self._seen.maxlen:
            self._seen_set.discard(self._seen[0])
        self._seen.append(command_id)
        self._seen_set.add(command_id)
        if "rid" in command:  # a request may take long (a client's ack): never hold the inbox
            if not isinstance(command.get("reply_to"), str):
                raise ValueError(f"request {command_id!r} names no node to reply to")
            task = asyncio.create_task(self._answer(command))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            return
        try:  # in order: two events for one connection arrive as they were sent
            await self._carry_out(command)
        except ProtocolError as exc:
            log.debug("command %s refused: %s", command.get("op"), exc.message)
        except Exception:
            log.exception("command %s from another node failed", command.get("op"))

    async def _carry_out(self, command: Command) -> Any:
        if self._handler is None:
            raise ProtocolError("unavailable", "this node serves no commands")
        return await self._handler(command)

    async def _answer(self, command: Command) -> None:
        reply: dict[str, Any] = {"op": "reply", "rid": command["rid"]}
        try:
            reply["result"] = await self._carry_out(command)
        except ProtocolError as exc:
            reply["error"] = {"code": exc.code, "message": exc.message}
        except Exception:
            log.exception("request %s from node %s failed", command.get("op"), command.get("reply_to"))
            reply["error"] = {"code": "internal", "message": "the node failed to carry out the request"}
        try:
            await self.send(command["reply_to"], reply)
        except ProtocolError:
            log.debug("the answer to node %s was lost: Redis is unreachable", command["reply_to"])
