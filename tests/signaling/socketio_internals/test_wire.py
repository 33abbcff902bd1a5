"""signaling/socketio_internals/wire.py: the send queue counts what it holds; a wired socket's
frames are WebSocket frames built once per packet, written at the end of the event loop's pass
in the order they were put, and read back intact by a real client whatever their size."""

from __future__ import annotations

import asyncio
import socket
import struct

import engineio
from roomwire.signaling.courier import sio_room
from roomwire.signaling.socketio_internals import Message, SendQueue, Wire, websocket_frame
from roomwire.signaling.socketio_internals.wire import Outbox

from tests.sio_client import joined_client


def message(text: str) -> engineio.packet.Packet:
    return engineio.packet.Packet(engineio.packet.MESSAGE, text)


def test_the_send_queue_counts_what_it_holds() -> None:
    queue = SendQueue()
    queue.put_nowait(message("x" * 100))
    queue.put_nowait(None)  # the writer's stop signal
    assert queue.backlog() == (2, 100)
    queue.get_nowait()
    assert queue.bytes == 0


def read_frame(frame: bytes) -> tuple[int, bytes]:
    """(first byte, payload) of one unmasked WebSocket frame, checking its length field."""
    size = frame[1]
    assert not size & 0x80  # a server never masks
    offset = 2
    if size == 126:
        (size,), offset = struct.unpack("!H", frame[2:4]), 4
    elif size == 127:
        (size,), offset = struct.unpack("!Q", frame[2:10]), 10
    assert len(frame) == offset + size
    return frame[0], frame[offset:]


def test_frames_carry_every_size_and_are_built_once_per_packet() -> None:
    for size in (0, 125, 126, 65535, 65536, 200_000):
        text = "é" * (size // 2) + "x" * (size % 2)
        for packet in (message(text), Message(text)):  # python-engineio's packet, and roomwire's
            first, payload = read_frame(websocket_frame(packet))
            assert first == 0x81 and payload.decode() == "4" + text  # final text frame
            assert websocket_frame(packet) is websocket_frame(packet)
    first, payload = read_frame(websocket_frame(engineio.packet.Packet(engineio.packet.MESSAGE, b"\x00\x01")))
    assert (first, payload) == (0x82, b"\x00\x01")  # binary


async def test_what_is_put_during_one_pass_leaves_at_its_end_in_order() -> None:
    loop = asyncio.get_running_loop()
    ours, theirs = socket.socketpair()
    theirs.setblocking(False)
    transport, _ = await loop.create_connection(asyncio.Protocol, sock=ours)
    wire = Wire(transport, Outbox())
    packets = [message(f"n{n}") for n in range(50)]
    for packet in packets:
        wire.put_nowait(packet)
    assert wire.backlog() == (0, sum(len(websocket_frame(p)) for p in packets))
    assert wire.empty() and wire.qsize() == 0  # the queue python-engineio sees: never waited on
    await asyncio.sleep(0)  # the end of this pass
    received = b""
    async with asyncio.timeout(5):
        while len(received) < sum(len(websocket_frame(p)) for p in packets):
            received += await loop.sock_recv(theirs, 65536)
    assert received == b"".join(websocket_frame(p) for p in packets)
    assert wire.backlog() == (0, 0)
    transport.close()
    wire.put_nowait(message("after the close"))  # dropped: nothing waits, nothing fails
    assert wire.backlog() == (0, 0)
    theirs.close()


async def test_a_client_reads_every_size_and_a_burst_in_order(running):
    client, _ = await joined_client(running.url, running.token("r1", "reader"))
    emit = running.server.sio.emit
    sizes = [1, 100, 1_000, 70_000, 300_000]
    for n, size in enumerate(sizes):
        await emit("message", {"n": n, "text": "x" * size}, room=sio_room("r1"))
    # a burst in one pass of the event loop, which leaves in one write
    await asyncio.gather(*(emit("message", {"n": n}, room=sio_room("r1")) for n in range(len(sizes), 2000)))
    await client.wait_for("message", lambda m: m["n"] == 1999)
    arrived = client.events["message"]
    assert [len(m["text"]) for m in arrived[: len(sizes)]] == sizes
    assert [m["n"] for m in arrived] == list(range(2000))
    await client.close()
