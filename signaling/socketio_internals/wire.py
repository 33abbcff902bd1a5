"""What an Engine.IO socket sends goes to a queue (long polling, a WebSocket being set up) or,
once its WebSocket is its transport, straight to the connection as WebSocket frames."""

from __future__ import annotations

import asyncio
import logging
import struct
from typing import Any

import engineio

log = logging.getLogger("roomwire.socketio")


class SendQueue(asyncio.Queue):  # type: ignore[type-arg]
    """An Engine.IO socket's outgoing queue (long polling, and a WebSocket until it is wired)
    that knows how many bytes it holds."""

    def _init(self, maxsize: int) -> None:
        super()._init(maxsize)  # type: ignore[misc]
        self.bytes = 0

    def _put(self, item: Any) -> None:
        super()._put(item)  # type: ignore[misc]
        self.bytes += packet_bytes(item)

    def _get(self) -> Any:
        item = super()._get()  # type: ignore[misc]
        self.bytes -= packet_bytes(item)
        return item

    def backlog(self) -> tuple[int, int]:
        """Packets and bytes waiting."""
        return self.qsize(), self.bytes


TEXT = (str, bytes)  # what a frame carries; a tuple: `str | bytes` builds a new union at every call


def packet_bytes(item: Any) -> int:
    data = getattr(item, "data", None)
    return len(data) if isinstance(data, TEXT) else 0


class Message(engineio.packet.Packet):
    """An Engine.IO MESSAGE carrying an encoded Socket.IO packet: every event, ack and broadcast.
    Built without python-engineio's checks for binary data (roomwire sends text), and with its
    WebSocket frame's place set here: an attribute first set later turns each packet's compact
    attribute storage into a dict."""

    def __init__(self, text: str) -> None:
        self.packet_type = engineio.packet.MESSAGE
        self.data = text
        self.encode_cache = None
        self.binary = False
        self.roomwire_frame: bytes | None = None


_TYPE_DIGITS = tuple(str(kind).encode() for kind in range(len(engineio.packet.packet_names)))


def websocket_frame(pkt: engineio.packet.Packet) -> bytes:
    """The packet as one WebSocket frame from the server (unmasked, uncompressed), built once
    per packet however many sockets it goes to."""
    frame: bytes | None = getattr(pkt, "roomwire_frame", None)
    if frame is None:
        first = 0x81  # a text frame
        if type(pkt.data) is str:  # its type's digit, then its text: not joined as text first
            kind, payload = _TYPE_DIGITS[pkt.packet_type], pkt.data.encode()
        else:
            kind, encoded = b"", pkt.encode()
            if isinstance(encoded, str):
                payload = encoded.encode()
            else:
                payload, first = encoded, 0x82  # a binary frame
        size = len(kind) + len(payload)
        if size < 126:
            header = bytes((first, size))
        elif size < 65536:
            header = struct.pack("!BBH", first, 126, size)
        else:
            header = struct.pack("!BBQ", first, 127, size)
        frame = pkt.roomwire_frame = b"".join((header, kind, payload))
    return frame


class Wire:
    """A socket's WebSocket connection, written to without aiohttp's writer. Once the WebSocket
    is the socket's transport the wire takes the place of its queue: what is put is written,
    and the frames a socket gets during one pass of the event loop leave together, in one
    writev, at the end of it."""

    __slots__ = ("frames", "loop", "outbox", "size", "transport")

    def __init__(self, transport: asyncio.Transport, outbox: Outbox) -> None:
        self.transport = transport
        self.outbox = outbox
        # its connection's loop, looked up once: on Python 3.11 every get_running_loop() is a
        # getpid() system call
        self.loop = asyncio.get_running_loop()
        self.frames: list[bytes] = []
        self.size = 0

    def put_nowait(self, pkt: engineio.packet.Packet) -> None:
        if self.transport.is_closing():
            return
        frame = websocket_frame(pkt)
        if not self.frames:
            self.outbox.waiting(self)
        self.frames.append(frame)
        self.size += len(frame)

    def backlog(self) -> tuple[int, int]:
        """Packets and bytes written and not taken by the kernel yet (the bytes are what counts)."""
        return 0, self.transport.get_write_buffer_size() + self.size

    # the rest of the queue's interface, for python-engineio's code: nothing ever waits here
    def qsize(self) -> int:
        return 0

    def empty(self) -> bool:
        return True

    async def join(self) -> None:
        pass

    def flush(self) -> None:
        frames, self.frames, self.size = self.frames, [], 0
        if not frames or self.transport.is_closing():
            return
        if len(frames) == 1:
            self.transport.write(frames[0])
        else:
            self.transport.writelines(frames)


class Outbox:
    """The wires with frames waiting, flushed by one callback at the end of the loop's pass."""

    def __init__(self) -> None:
        self._waiting: list[Wire] = []

    def waiting(self, wire: Wire) -> None:
        if not self._waiting:
            wire.loop.call_soon(self.flush)
        self._waiting.append(wire)

    def flush(self) -> None:
        waiting, self._waiting = self._waiting, []
        for wire in waiting:
            try:
                wire.flush()
            except Exception:  # one broken connection must not hold up the frames of the others
                log.exception("writing to a WebSocket failed")
