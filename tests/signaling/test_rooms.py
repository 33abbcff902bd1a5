"""RoomService over the in-memory backend, without a network: the order of the log, owners,
replacement, hooks and listeners."""

from __future__ import annotations

from typing import Any

import pytest
from roomwire.signaling.courier import Courier
from roomwire.signaling.memory_backend import MemoryBackend
from roomwire.signaling.metrics import Metrics
from roomwire.signaling.protocol import Grants, ProtocolError
from roomwire.signaling.rooms import Hooks, RoomService, new_participant
from roomwire.signaling.socketio_internals import SocketLimits, SocketServer
from roomwire.signaling.tokens import Claims


@pytest.fixture
def rooms() -> RoomService:
    sio = SocketServer(limits=SocketLimits(), async_mode="aiohttp")
    backend = MemoryBackend()
    return RoomService(backend, sio, Courier(sio, backend), Metrics(), Hooks(), media=None)


def participant(identity: str) -> dict[str, Any]:
    return new_participant(Claims(identity=identity, room="r1", grants=Grants()), "bot")


async def test_join_update_leave_are_logged_in_order(rooms: RoomService) -> None:
    first = await rooms.join("r1", participant("ann"), "sid-ann")
    assert first.event["type"] == "join" and first.event["offset"] == 1 and first.replaced_owner is None
    second = await rooms.join("r1", participant("bo"), "sid-bo")
    assert [p["identity"] for p in second.snapshot.participants or []] == ["ann", "bo"]
    updated = await rooms.update("r1", "ann", "sid-ann", {"name": "Ann"})
    assert updated is not None and updated["type"] == "update" and updated["offset"] == 3
    assert await rooms.leave("r1", "bo", "sid-bo", "left")
    recovery = await rooms.backend.recover("r1", first.event["epoch"], 0)
    assert [(e["type"], e["participant"]["identity"]) for e in recovery.events or []] == [
        ("join", "ann"), ("join", "bo"), ("update", "ann"), ("leave", "bo"),
    ]  # fmt: skip


async def test_a_change_by_a_connection_that_no_longer_holds_the_identity_changes_nothing(rooms: RoomService) -> None:
    await rooms.join("r1", participant("ann"), "old")
    replaced = await rooms.join("r1", participant("ann"), "new")
    assert replaced.event["type"] == "update" and replaced.replaced_owner == "old"
    assert not await rooms.leave("r1", "ann", "old", "disconnected")
    assert await rooms.update("r1", "ann", "old", {"name": "x"}) is None
    assert (await rooms.backend.membership("r1", "ann")).owner == "new"


async def test_hooks_may_refuse_and_listeners_hear_every_leave(rooms: RoomService) -> None:
    heard: list[tuple[str, str, str]] = []

    async def refuse_eve(room: str, who: dict[str, Any]) -> str | None:
        return "no eves" if who["identity"] == "eve" else None

    async def listener(room: str, who: dict[str, Any], reason: str) -> None:
        heard.append((room, who["identity"], reason))

    async def broken(room: str, who: dict[str, Any], reason: str) -> None:
        raise RuntimeError("an app's bug")

    rooms.hooks.on_join.append(refuse_eve)
    rooms.hooks.on_leave.append(broken)
    rooms.on_left(listener)
    with pytest.raises(ProtocolError, match="no eves"):
        await rooms.admit("r1", participant("eve"))
    await rooms.admit("r1", participant("ann"))
    await rooms.join("r1", participant("ann"), "sid")
    assert await rooms.kick("r1", "ann", "removed")
    assert heard == [("r1", "ann", "removed")]
    assert not await rooms.kick("r1", "ann")


async def test_a_message_to_somebody_absent_is_not_found(rooms: RoomService) -> None:
    await rooms.join("r1", participant("ann"), "sid")
    with pytest.raises(ProtocolError) as missing:
        await rooms.send("r1", "ann", "hi", to="nobody", skip=None)
    assert missing.value.code == "not_found"
    await rooms.join("r1", participant("watcher"), "watch:sse:1")
    with pytest.raises(ProtocolError, match="watches presence only"):
        await rooms.send("r1", "ann", "hi", to="watcher", skip=None)
