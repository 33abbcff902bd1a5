"""A bare WebSocket that speaks Engine.IO v4 / Socket.IO v5 frames by hand: for the frames no
real client library sends (non-string event names, broken JSON, unsolicited pongs, a client
that never reads)."""

from __future__ import annotations

import asyncio
import itertools
import json
from typing import Any

import aiohttp


class RawSocket:
    def __init__(self, session: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.session = session
        self.ws = ws
        self.ids = itertools.count(1)
        self.frames: list[str] = []  # what arrived and was not consumed yet

    @classmethod
    async def open(cls, url: str, token: str | None = None, *, connect: bool = True) -> RawSocket:
        """Open the Engine.IO WebSocket and, with `connect`, the Socket.IO namespace `/`."""
        session = aiohttp.ClientSession()
        ws = await session.ws_connect(url.replace("http", "ws", 1) + "/socket.io/?EIO=4&transport=websocket")
        raw = cls(session, ws)
        opening = await raw.next_frame()
        assert opening.startswith("0{"), opening
        if connect:
            await raw.send("40" + json.dumps({"token": token}))
        return raw

    async def send(self, frame: str) -> None:
        await self.ws.send_str(frame)

    async def next_frame(self, timeout: float = 5) -> str:
        """The next frame that is not a ping (pings are answered, as a client must)."""
        async with asyncio.timeout(timeout):
            while True:
                message = await self.ws.receive()
                if message.type != aiohttp.WSMsgType.TEXT:
                    raise ConnectionError(f"the socket closed: {message.type.name}")
                if message.data == "2":
                    await self.send("3")
                    continue
                return message.data

    async def connected(self) -> dict[str, Any]:
        """The namespace CONNECT answer: `{sid}`, or raise with the refusal's data."""
        frame = await self.next_frame()
        if frame.startswith("44"):
            raise PermissionError(json.loads(frame[2:])["data"])
        assert frame.startswith("40"), frame
        return json.loads(frame[2:])

    async def call_raw(self, body: str, timeout: float = 5) -> Any:
        """Send `42<id><body>` and return the ack's first argument; `body` is sent as given."""
        ack_id = next(self.ids)
        await self.send(f"42{ack_id}{body}")
        prefix = f"43{ack_id}["
        async with asyncio.timeout(timeout):
            while True:
                for frame in self.frames:
                    if frame.startswith(prefix):
                        self.frames.remove(frame)
                        return json.loads(frame[len(prefix) - 1 :])[0]
                self.frames.append(await self.next_frame(timeout))

    async def call(self, event: Any, *args: Any) -> Any:
        return await self.call_raw(json.dumps([event, *args]))

    async def close(self) -> None:
        await self.ws.close()
        await self.session.close()
