"""signaling/socketio_internals/socket_server.py through a real server and real clients:
DirectEmitManager's broadcasts keep their order and go on past a recipient that closed or timed
out; an event without an ack id is handled and not answered; a disconnect leaves every room of
its socket and no other. (The rules at the door are tested in test_hardening.py.)"""

from __future__ import annotations

import asyncio

from roomwire.signaling.courier import sio_room
from roomwire.signaling.socketio_internals import DirectEmitManager, EngineSocket, Wire

from tests.raw_socket import RawSocket
from tests.sio_client import SioClient, joined_client


async def room_of_three(running) -> list[SioClient]:
    clients = [(await joined_client(running.url, running.token("r1", name)))[0] for name in ("a", "b", "c")]
    # every join is announced to the earlier members; wait until all are in the socket.io room
    await clients[0].wait_for("presence", lambda e: e["type"] == "join" and e["participant"]["identity"] == "c")
    return clients


def engine_socket(running, client: SioClient) -> EngineSocket:
    sio = running.server.sio
    return sio.eio.sockets[sio.manager.eio_sid_from_sid(client.sio.get_sid("/"), "/")]


async def numbers(client: SioClient, last: int) -> list[int]:
    """Every message's `n`, once the one numbered `last` has arrived."""
    await client.wait_for("message", lambda m: m["n"] == last)
    return [m["n"] for m in client.events["message"]]


async def test_the_server_broadcasts_through_direct_emit_in_order(running):
    assert isinstance(running.server.sio.manager, DirectEmitManager)
    clients = await room_of_three(running)
    assert all(isinstance(engine_socket(running, client).queue, Wire) for client in clients)
    # emits started concurrently still reach every recipient in the order they were issued
    await asyncio.gather(*(running.server.sio.emit("message", {"n": n}, room=sio_room("r1")) for n in range(50)))
    for client in clients:
        assert await numbers(client, 49) == list(range(50))
    for client in clients:
        await client.close()


async def test_a_recipient_closed_mid_broadcast_does_not_stop_the_others(running):
    a, b, c = await room_of_three(running)
    # b's engine.io socket is closed but b is still in the socket.io room (the window before
    # its disconnect handler runs): the sends to b are skipped, the broadcast goes on
    engine_socket(running, b).closed = True
    await running.server.sio.emit("message", {"n": 1}, room=sio_room("r1"))
    await running.server.sio.emit("message", {"n": 2}, room=sio_room("r1"))
    assert await numbers(a, 2) == [1, 2]
    assert await numbers(c, 2) == [1, 2]
    assert b.events["message"] == []
    for client in (a, b, c):
        await client.close()


async def test_a_recipient_that_timed_out_is_closed_and_the_broadcast_goes_on(running):
    a, b, c = await room_of_three(running)
    # b stopped answering pings: the broadcast's send finds it timed out, skips it and closes
    # it in the background, which removes b from the room
    engine_socket(running, b).last_ping = 1.0
    await running.server.sio.emit("message", {"n": 1}, room=sio_room("r1"))
    assert await numbers(a, 1) == [1]
    assert await numbers(c, 1) == [1]
    await a.wait_for("presence", lambda e: e["type"] == "leave" and e["participant"]["identity"] == "b")
    assert b.events["message"] == []
    for client in (a, b, c):
        await client.close()


async def test_an_event_without_an_ack_id_is_handled_and_not_answered(running):
    watcher, _ = await joined_client(running.url, running.token("r1", "watcher"))
    raw = await RawSocket.open(running.url, running.token("r1", "raw"))
    await raw.connected()
    assert (await raw.call("join", {}))["ok"]
    await raw.send('42["update",{"name":"unacknowledged"}]')
    update = await watcher.wait_for("presence", lambda e: e["type"] == "update")
    assert update["participant"]["name"] == "unacknowledged"
    assert (await raw.call("update", {"name": "acknowledged"}))["self"]["name"] == "acknowledged"
    assert [f for f in raw.frames if f.startswith("43")] == []  # nothing answered the first
    await raw.close()
    await watcher.close()


async def test_a_disconnect_leaves_every_room_of_its_socket_and_no_other(running):
    a, b, c = await room_of_three(running)
    manager = running.server.sio.manager
    b_sid = b.sio.get_sid("/")
    await running.server.sio.enter_room(b_sid, "extra")
    await running.server.sio.enter_room(c.sio.get_sid("/"), "extra")
    assert set(manager.get_rooms(b_sid, "/")) == {b_sid, sio_room("r1"), "extra"}
    await b.close()
    await a.wait_for("presence", lambda e: e["type"] == "leave" and e["participant"]["identity"] == "b")
    rooms = manager.rooms["/"]
    assert b_sid not in rooms and b_sid not in rooms[None]
    assert set(rooms[sio_room("r1")]) == {a.sio.get_sid("/"), c.sio.get_sid("/")}
    assert set(rooms["extra"]) == {c.sio.get_sid("/")}
    assert manager.get_rooms(b_sid, "/") == []
    await c.close()
    await a.wait_for("presence", lambda e: e["type"] == "leave" and e["participant"]["identity"] == "c")
    assert "extra" not in manager.rooms["/"]  # an empty room goes, as python-socketio's do
    await a.close()
