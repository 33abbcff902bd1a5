"""The embedded default backend: every room's state in this process, nothing to install."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from .backend import (
    Command,
    CommandHandler,
    JoinResult,
    Membership,
    Participant,
    PresenceEvent,
    Recovery,
    Retention,
    RoomInfo,
    StateBackend,
)
from .presence_log import PresenceLog
from .protocol import ProtocolError

SWEEP_INTERVAL = 30.0


class MemoryBackend(StateBackend):
    answers_at_once = True

    def __init__(self, retention: Retention | None = None) -> None:
        self.retention = retention or Retention()
        self._logs: dict[str, PresenceLog] = {}
        self._sweeper: asyncio.Task[None] | None = None
        self._handler: CommandHandler | None = None

    async def start(self) -> None:
        if self._sweeper is None:
            self._sweeper = asyncio.create_task(self._sweep_forever(), name="roomwire-memory-sweeper")

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None

    def _log(self, room: str) -> PresenceLog:
        log = self._logs.get(room)
        if log is None:
            log = self._logs[room] = PresenceLog(self.retention)
        return log

    async def join(self, room: str, participant: Participant, owner: str) -> JoinResult:
        log = self._log(room)
        identity = participant["identity"]
        replaced = log.owners.get(identity)
        previous = log.participants.get(identity)
        log.participants[identity] = dict(participant)
        log.owners[identity] = owner
        event = log.append("update" if replaced is not None else "join", dict(participant))
        held = Membership(previous or {}, replaced, self.node_id) if replaced is not None else None
        return JoinResult(event=event, snapshot=log.snapshot(), replaced=held)

    async def leave(self, room: str, identity: str, owner: str | None = None) -> PresenceEvent | None:
        log = self._logs.get(room)
        if log is None or identity not in log.participants:
            return None
        if owner is not None and log.owners.get(identity) != owner:
            return None
        participant = log.participants.pop(identity)
        log.owners.pop(identity, None)
        return log.append("leave", participant)

    async def update(
        self, room: str, identity: str, owner: str | None, changes: dict[str, Any], kind: str = "update"
    ) -> PresenceEvent | None:
        log = self._logs.get(room)
        if log is None or identity not in log.participants:
            return None
        if owner is not None and log.owners.get(identity) != owner:
            return None
        participant = {**log.participants[identity], **changes}
        log.participants[identity] = participant
        return log.append(kind, dict(participant))

    async def membership(self, room: str, identity: str) -> Membership | None:
        log = self._logs.get(room)
        if log is None or identity not in log.participants:
            return None
        return Membership(participant=dict(log.participants[identity]), owner=log.owners[identity], node=self.node_id)

    async def snapshot(self, room: str) -> Recovery | None:
        log = self._logs.get(room)
        return log.snapshot() if log is not None else None

    async def recover(self, room: str, epoch: str | None, offset: int | None, wait: float = 0.0) -> Recovery:
        log = self._log(room)
        result = log.since(epoch, offset)
        if wait > 0 and not result.is_snapshot and not result.events:
            await log.wait_for_change(wait)
            if self._logs.get(room) is not log:  # swept meanwhile: the position is gone
                return self._log(room).snapshot()
            result = log.since(epoch, offset)
        return result

    async def rooms(self) -> list[RoomInfo]:
        return [
            RoomInfo(name=name, participants=len(log.participants), created_at=log.created_at)
            for name, log in self._logs.items()
            if log.participants
        ]

    async def nodes(self, room: str) -> set[str]:
        log = self._logs.get(room)
        return {self.node_id} if log is not None and log.participants else set()

    # -- between nodes: there is only this one ----------------------------------------------

    def serve(self, handler: CommandHandler) -> None:
        self._handler = handler

    async def send(self, node: str, command: Command) -> None:
        await self.request(node, command, timeout=0)

    async def request(self, node: str, command: Command, timeout: float) -> object:
        if node != self.node_id or self._handler is None:
            raise ProtocolError("unavailable", f"no node {node!r} in this process")
        return await self._handler(command)

    def sweep(self) -> None:
        """Forget rooms that have been empty and unwatched for longer than the retention age."""
        for name in [n for n, log in self._logs.items() if log.idle_for() > self.retention.max_age]:
            del self._logs[name]

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_INTERVAL)
            self.sweep()
