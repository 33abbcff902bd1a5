"""A python-socketio test client that records what the server sends, for assertions."""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import socketio

RECORDED = ("presence", "signal", "message", "kicked", "sfu.offer", "connect_error")


class SioClient:
    def __init__(self, **client_options: Any) -> None:
        self.sio = socketio.AsyncClient(reconnection=False, **client_options)
        self.events: dict[str, list[Any]] = defaultdict(list)
        self._arrived = asyncio.Event()
        self.disconnected = asyncio.Event()
        for name in RECORDED:
            self.sio.on(name, self._recorder(name))
        self.sio.on("disconnect", self._on_disconnect)

    def _recorder(self, name: str) -> Callable[[Any], Any]:
        async def record(data: Any = None) -> None:
            self.events[name].append(data)
            self._arrived.set()

        return record

    async def _on_disconnect(self, *args: Any) -> None:
        self.disconnected.set()

    async def connect(self, url: str, token: str | None, *, path: str = "socket.io", **options: Any) -> None:
        auth = {"token": token} if token is not None else {}
        auth.update(options.pop("auth", {}))
        options.setdefault("transports", ["websocket"])
        await self.sio.connect(url, auth=auth, socketio_path=path, wait_timeout=5, **options)

    async def call(self, event: str, data: Any = None, timeout: float = 5) -> Any:
        if data is None:
            data = {}
        return await self.sio.call(event, data, timeout=timeout)

    async def wait_for(self, name: str, predicate: Callable[[Any], bool] = lambda _: True, timeout: float = 5) -> Any:
        """The first recorded `name` event that satisfies `predicate` (waiting for it)."""
        async with asyncio.timeout(timeout):
            while True:
                for item in self.events[name]:
                    if predicate(item):
                        return item
                self._arrived.clear()
                await self._arrived.wait()

    async def close(self) -> None:
        await self.sio.disconnect()


async def joined_client(url: str, token: str, **options: Any) -> tuple[SioClient, dict[str, Any]]:
    client = SioClient()
    await client.connect(url, token, **options)
    ack = await client.call("join")
    assert ack["ok"], ack
    return client, ack


async def nothing_else_arrives(running: Any, room: str, identity: str, client: SioClient) -> None:
    """Every event sent to `client` before now has arrived: a server message sent now, which
    reaches the same socket after all of them, has arrived (instead of sleeping and hoping)."""
    marker = {"marker": uuid.uuid4().hex}
    await running.server.send(room, marker, to=identity)
    await client.wait_for("message", lambda m: m["data"] == marker)
    client.events["message"] = [m for m in client.events["message"] if m["data"] != marker]
