"""DirectEmitManager (the server's default client manager) through a real server and real clients:
broadcasts keep their order, and a recipient that closes mid-broadcast costs the others nothing."""

from __future__ import annotations

import asyncio

from roomwire.signaling.rooms import sio_room
from roomwire.signaling.socketio_internals import DirectEmitManager

from tests.sio_client import SioClient, joined_client


async def _room_of_three(running) -> list[SioClient]:
    clients = [(await joined_client(running.url, running.token("r1", name)))[0] for name in ("a", "b", "c")]
    # every join is announced to the earlier members; wait until all are in the socket.io room
    await clients[0].wait_for("presence", lambda e: e["type"] == "join" and e["participant"]["identity"] == "c")
    return clients


def _eio_sid(running, client: SioClient) -> str:
    sio = running.server.sio
    return sio.manager.eio_sid_from_sid(client.sio.get_sid("/"), "/")


async def _messages(client: SioClient, last: int) -> list[int]:
    """Every message's `n`, once the one numbered `last` has arrived."""
    await client.wait_for("message", lambda m: m["n"] == last)
    return [m["n"] for m in client.events["message"]]


async def test_the_server_broadcasts_through_direct_emit_in_order(running):
    assert isinstance(running.server.sio.manager, DirectEmitManager)
    clients = await _room_of_three(running)
    # emits started concurrently still reach every recipient in the order they were issued
    await asyncio.gather(*(running.server.sio.emit("message", {"n": n}, room=sio_room("r1")) for n in range(50)))
    for client in clients:
        assert await _messages(client, 49) == list(range(50))
    for client in clients:
        await client.close()


async def test_a_recipient_closed_mid_broadcast_does_not_stop_the_others(running):
    a, b, c = await _room_of_three(running)
    # b's engine.io socket is closed but b is still in the socket.io room (the window before
    # its disconnect handler runs): the sends to b are skipped, the broadcast goes on
    running.server.sio.eio._get_socket(_eio_sid(running, b)).closed = True
    await running.server.sio.emit("message", {"n": 1}, room=sio_room("r1"))
    await running.server.sio.emit("message", {"n": 2}, room=sio_room("r1"))
    assert await _messages(a, 2) == [1, 2]
    assert await _messages(c, 2) == [1, 2]
    assert b.events["message"] == []
    for client in (a, b, c):
        await client.close()


async def test_a_recipient_that_timed_out_is_closed_and_the_broadcast_goes_on(running):
    a, b, c = await _room_of_three(running)
    # b stopped answering pings: the broadcast's send finds it timed out and closes it, which
    # removes b from the room while the broadcast is iterating it
    running.server.sio.eio._get_socket(_eio_sid(running, b)).last_ping = 1.0
    await running.server.sio.emit("message", {"n": 1}, room=sio_room("r1"))
    assert await _messages(a, 1) == [1]
    assert await _messages(c, 1) == [1]
    await a.wait_for("presence", lambda e: e["type"] == "leave" and e["participant"]["identity"] == "b")
    for client in (a, b, c):
        await client.close()
