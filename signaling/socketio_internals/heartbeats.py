"""Engine.IO's ping/pong for every socket of a server, from one timer."""

from __future__ import annotations

import asyncio
import math
import time
from typing import TYPE_CHECKING

import engineio

if TYPE_CHECKING:
    from .engine import EngineServer, EngineSocket

# Pings due within one tick leave together: one wakeup of the server pings many sockets, and
# their pongs come back together (a wakeup costs more than the ping it sends: docs/benchmarks.md).
HEARTBEAT_TICK = 0.5

PING = engineio.packet.Packet(engineio.packet.PING)  # one packet, one frame, for every socket


class Heartbeats:
    """Engine.IO's ping/pong for every socket of a server, from one timer.

    python-engineio starts a task per socket per ping and a monitor task that wakes once per
    socket per `ping_timeout`. Here each tick pings the sockets that are due, cuts those that
    left their last ping unanswered for `ping_timeout`, and removes closed ones from the
    server's sockets (closed long-polling sockets that nothing else removes, as the monitor
    did). Sockets are held by sid: a closed one is not kept alive here.
    """

    def __init__(self, server: EngineServer) -> None:
        self.server = server
        # tick -> sids to ping then; tick -> sids whose ping must be answered by then
        self._pings: dict[int, list[str]] = {}
        self._deadlines: dict[int, list[str]] = {}
        self._next = 0  # the first tick not handled yet
        self._answer_ticks = math.ceil(server.ping_timeout / HEARTBEAT_TICK)  # a pong is late after these
        self._timer: asyncio.TimerHandle | None = None

    def ping_later(self, socket: EngineSocket) -> None:
        """Ping the socket `ping_interval` from now (its pong, or its connection, just came)."""
        loop = asyncio.get_running_loop()
        if self._timer is None:
            self._next = int(loop.time() / HEARTBEAT_TICK) + 1
            self._timer = loop.call_at(self._next * HEARTBEAT_TICK, self._tick)
        tick = max(self._next, math.ceil((loop.time() + self.server.ping_interval) / HEARTBEAT_TICK))
        self._pings.setdefault(tick, []).append(socket.sid)

    def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        now = int(loop.time() / HEARTBEAT_TICK)
        while self._next <= now:
            pinged = self._next - self._answer_ticks
            for sid in self._deadlines.pop(self._next, ()):
                socket = self._open(sid)
                if socket is not None and socket.last_ping and socket.pinged_tick == pinged:
                    self._cut(socket)  # that ping is still unanswered
            for sid in self._pings.pop(self._next, ()):
                socket = self._open(sid)
                if socket is not None:
                    self._ping(socket)
            self._next += 1
        self._timer = None
        if self._pings or self._deadlines:
            self._timer = loop.call_at(self._next * HEARTBEAT_TICK, self._tick)

    def _open(self, sid: str) -> EngineSocket | None:
        """The socket if it is open. A closed one is removed from the server's sockets; a closing
        one (its disconnect handler runs) is looked at again later."""
        socket = self.server.sockets.get(sid)
        if socket is None:
            return None
        if socket.closed:
            del self.server.sockets[sid]
            return None
        if socket.closing:
            self.ping_later(socket)
            return None
        return socket

    def _ping(self, socket: EngineSocket) -> None:
        socket.last_ping = time.time()
        socket.pinged_tick = self._next
        socket.queue.put_nowait(PING)
        self._deadlines.setdefault(self._next + self._answer_ticks, []).append(socket.sid)

    def _cut(self, socket: EngineSocket) -> None:
        self.server.in_background(self.server.cut(socket.sid, at_once=False, reason=self.server.reason.PING_TIMEOUT))
