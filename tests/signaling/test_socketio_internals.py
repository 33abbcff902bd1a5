"""signaling/socketio_internals.py: the pinned releases, the library internals it relies on
(fails loudly when a release moves them), and DirectEmitManager through a real server and real
clients: broadcasts keep their order, and a recipient that closes mid-broadcast costs the
others nothing. (The rules it enforces at the door are tested in test_hardening.py.)"""

from __future__ import annotations

import asyncio
import inspect

import engineio
import pytest
import socketio
from engineio.async_socket import AsyncSocket
from roomwire.signaling import socketio_internals
from roomwire.signaling.courier import sio_room
from roomwire.signaling.socketio_internals import (
    DirectEmitManager,
    IncompatibleSocketIO,
    RefusedPayload,
    SendQueue,
    WirePacket,
)

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


def test_the_installed_releases_are_the_pinned_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    socketio_internals.verify()
    monkeypatch.setitem(socketio_internals.PINNED, "python-socketio", "0.0.1")
    with pytest.raises(IncompatibleSocketIO, match=r"0\.0\.1"):
        socketio_internals.verify()


@pytest.mark.parametrize(
    ("owner", "method", "parameters"),
    [
        (socketio.AsyncServer, "_handle_eio_message", ["eio_sid", "data"]),
        (socketio.AsyncServer, "_handle_event", ["eio_sid", "namespace", "id", "data"]),
        (socketio.AsyncServer, "_handle_connect", ["eio_sid", "namespace", "data"]),
        (socketio.AsyncServer, "_handle_eio_connect", ["eio_sid", "environ"]),
        (socketio.AsyncServer, "_handle_eio_disconnect", ["eio_sid", "reason"]),
        (socketio.AsyncServer, "_send_packet", ["eio_sid", "pkt"]),
        (socketio.AsyncServer, "_engineio_server_class", []),
        (engineio.AsyncServer, "send_packet", ["sid", "pkt"]),
        (engineio.AsyncServer, "create_queue", ["args", "kwargs"]),
        (AsyncSocket, "_websocket_handler", ["ws"]),
        (AsyncSocket, "close", ["wait", "abort", "reason"]),
        (socketio.packet.Packet, "decode", ["encoded_packet"]),
    ],
)
def test_the_internals_we_override_are_where_they_were(owner: type, method: str, parameters: list[str]) -> None:
    found = list(inspect.signature(getattr(owner, method)).parameters)[1:]
    assert found == parameters


async def test_the_engineio_server_keeps_its_sockets_and_websocket_driver(running) -> None:
    eio = running.server.sio.eio
    assert isinstance(eio.sockets, dict) and "websocket" in eio._async
    assert isinstance(eio.create_queue(), SendQueue)
    client, _ = await joined_client(running.url, running.token("r1", "a"))
    (socket,) = eio.sockets.values()
    assert isinstance(socket, AsyncSocket) and socket.transport is not None
    await client.close()


def test_a_packet_whose_json_is_refused_keeps_its_type_and_ack_id() -> None:
    packet = WirePacket(encoded_packet='27["update",{"name":"a\\ud800"}]')
    assert packet.packet_type == socketio.packet.EVENT and packet.id == 7
    assert isinstance(packet.data, RefusedPayload)
    deep = WirePacket(encoded_packet="212" + "[" * 2000 + "]" * 2000)
    assert deep.id == 12 and isinstance(deep.data, RefusedPayload)
    assert WirePacket(encoded_packet='2["join",{}]').data == ["join", {}]


def test_the_send_queue_counts_what_it_holds() -> None:
    queue = SendQueue()
    queue.put_nowait(engineio.packet.Packet(engineio.packet.MESSAGE, "x" * 100))
    queue.put_nowait(None)  # the writer's stop signal
    assert (queue.qsize(), queue.bytes) == (2, 100)
    queue.get_nowait()
    assert queue.bytes == 0
