"""signaling/socketio_internals/frames.py through a real server and a client that writes its
WebSocket frames by hand: event frames are taken as aiohttp parses them, yet whatever arrives in
one read is handled in the order it was sent (a connect and the event after it; frames sent
with the WebSocket's own opening request)."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import struct
from urllib.parse import urlsplit

import pytest


class HandWrittenSocket:
    """A TCP connection speaking WebSocket by hand: several frames can go out in one write."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, url: str, *, with_request: bytes = b"") -> HandWrittenSocket:
        """The opening request, with `with_request` (frames) in the same write."""
        address = urlsplit(url)
        reader, writer = await asyncio.open_connection(address.hostname, address.port)
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\n"
            f"Host: {address.netloc}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        writer.write(request.encode() + with_request)
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head
        return cls(reader, writer)

    @staticmethod
    def frame(text: str) -> bytes:
        """A masked text frame, as a client must send it."""
        payload, mask = text.encode(), os.urandom(4)
        size = len(payload)
        header = bytes((0x81, 0x80 | size)) if size < 126 else struct.pack("!BBH", 0x81, 0xFE, size)
        return header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))

    def send(self, *texts: str) -> None:
        self.writer.write(b"".join(self.frame(text) for text in texts))

    async def next_text(self) -> str:
        """The next text from the server that is not a ping (those are answered)."""
        async with asyncio.timeout(5):
            while True:
                first, second = await self.reader.readexactly(2)
                size = second & 0x7F
                if size == 126:
                    (size,) = struct.unpack("!H", await self.reader.readexactly(2))
                elif size == 127:
                    (size,) = struct.unpack("!Q", await self.reader.readexactly(8))
                text = (await self.reader.readexactly(size)).decode()
                assert first == 0x81, (first, text)
                if text == "2":
                    self.send("3")
                    continue
                return text

    async def ack(self, ack_id: int) -> dict:
        """The ack of event `ack_id`'s first argument (events the server sends meanwhile are skipped)."""
        prefix = f"43{ack_id}["
        while not (text := await self.next_text()).startswith(prefix):
            pass
        return json.loads(text[len(prefix) - 1 :])[0]

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


def connect_and_join(token: str) -> list[str]:
    return ["40" + json.dumps({"token": token}), '421["join"]']


@pytest.mark.parametrize("together_with", ["the opening request", "each other"])
async def test_a_connect_and_an_event_in_one_read_are_handled_in_order(running, together_with):
    frames = connect_and_join(running.token("r1", "hasty"))
    if together_with == "the opening request":
        socket = await HandWrittenSocket.open(running.url, with_request=b"".join(map(HandWrittenSocket.frame, frames)))
    else:
        socket = await HandWrittenSocket.open(running.url)
        socket.send(*frames)
    assert (await socket.next_text()).startswith("0{")
    assert (await socket.next_text()).startswith("40{")  # the namespace connect's answer
    join = await socket.ack(1)
    assert join["ok"], join  # not refused as sent before the connect
    assert [p["identity"] for p in join["participants"]] == ["hasty"]
    socket.send('422["update",{"name":"quick"}]', '423["signal",{"to":"nobody","type":"offer","data":1}]')
    assert (await socket.ack(2))["self"]["name"] == "quick"
    assert (await socket.ack(3))["error"]["code"] == "not_found"
    await socket.close()
