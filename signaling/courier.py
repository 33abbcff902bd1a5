"""`Courier`: gets Socket.IO events to connections wherever they are held.

A connection of this node gets them at once; a connection of another node through a command
that the backend routes to that node (a Redis stream per node, docs/architecture.md), where
this same class carries it out. With one process every connection is local.
"""

from __future__ import annotations

from typing import Any

import socketio

from .backend import Command, CommandHandler, Membership, StateBackend
from .protocol import ProtocolError, bad_request
from .socketio_internals import SocketServer

# A call to a connection of another node may take this much longer than the call itself.
REQUEST_MARGIN = 2.0


def sio_room(room: str) -> str:
    # Socket.IO also puts every sid in a room named after itself: prefix ours so that a room
    # name can never address somebody's private channel.
    return f"room:{room}"


class Courier:
    def __init__(self, sio: SocketServer, backend: StateBackend) -> None:
        self.sio = sio
        self.backend = backend
        self._ops: dict[str, CommandHandler] = {
            "emit": self._emit,
            "kick": self._kick,
            "call": self._call,
            "broadcast": self._broadcast,
        }
        backend.serve(self.handle)

    def route(self, op: str, handler: CommandHandler) -> None:
        """Carry out commands with this `op` (sent by any node's `request`) with `handler`."""
        self._ops[op] = handler

    async def handle(self, command: Command) -> Any:
        handler = self._ops.get(command.get("op", ""))
        if handler is None:
            raise bad_request(f"no command {command.get('op')!r} between nodes")
        return await handler(command)

    # -- to one connection -----------------------------------------------------------------

    async def emit(self, member: Membership, event: str, data: Any) -> None:
        if member.node == self.backend.node_id:  # as `_emit` would, without building the command
            self.sio.send_event(member.owner, event, data)
        else:
            await self.backend.send(member.node, {"op": "emit", "sid": member.owner, "event": event, "data": data})

    async def kick(self, member: Membership, reason: str) -> None:
        """The connection gets `kicked {reason}` and is disconnected."""
        await self._deliver(member, {"op": "kick", "sid": member.owner, "reason": reason})

    async def call(self, member: Membership, event: str, data: Any, timeout: float) -> Any:
        """Emit with an ack and return the ack's data. ProtocolError `not_found` if the
        connection is gone, `unavailable` if it does not answer within `timeout`."""
        command = {"op": "call", "sid": member.owner, "event": event, "data": data, "timeout": timeout}
        if member.node == self.backend.node_id:
            return await self._call(command)
        return await self.backend.request(member.node, command, timeout + REQUEST_MARGIN)

    async def _deliver(self, member: Membership, command: Command) -> None:
        if member.node == self.backend.node_id:
            await self.handle(command)
        else:
            await self.backend.send(member.node, command)

    # -- to a room -------------------------------------------------------------------------

    async def broadcast(self, room: str, event: str, data: Any, skip_sid: str | None) -> None:
        """Every connection in the room, on every node, but `skip_sid`."""
        command = {"op": "broadcast", "room": room, "event": event, "data": data, "skip": skip_sid}
        for node in await self.backend.nodes(room):
            if node == self.backend.node_id:
                await self._broadcast(command)
            else:
                await self.backend.send(node, command)

    # -- carried out on the node that holds the connection ---------------------------------------

    async def _emit(self, command: Command) -> None:
        self.sio.send_event(command["sid"], command["event"], command["data"])

    async def _kick(self, command: Command) -> None:
        sid = command["sid"]
        self.sio.send_event(sid, "kicked", {"reason": command["reason"]})
        await self.sio.disconnect(sid)

    async def _call(self, command: Command) -> Any:
        sid = command["sid"]
        if not self.sio.manager.is_connected(sid, "/"):
            raise ProtocolError("not_found", "that connection is gone")
        try:
            return await self.sio.call(command["event"], command["data"], to=sid, timeout=command["timeout"])
        except socketio.exceptions.TimeoutError:
            raise ProtocolError(
                "unavailable", f"no answer to {command['event']} within {command['timeout']} s"
            ) from None

    async def _broadcast(self, command: Command) -> None:
        await self.sio.emit(command["event"], command["data"], room=sio_room(command["room"]), skip_sid=command["skip"])
