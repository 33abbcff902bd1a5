"""signaling/socketio_internals/heartbeats.py through a real server (pings every second here):
a client that answers is pinged every interval and stays; one that stops answering is cut and
leaves while the others stay; a long-polling socket that closed is removed from the server; a
pinged socket has no attribute it was not created with (one added later can cost 0.7 KiB)."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest
from roomwire.signaling.socketio_internals import HEARTBEAT_TICK, EngineSocket

from tests.sio_client import joined_client

INTERVAL = TIMEOUT = 1.0


class PingRecorder:
    """A bare Engine.IO WebSocket in the room that records when pings come, answering them
    only while `answering`."""

    def __init__(self, session: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.session, self.ws = session, ws
        self.answering = True
        self.pings: list[float] = []
        self.closed = asyncio.Event()
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def join(cls, running, identity: str) -> PingRecorder:
        session = aiohttp.ClientSession()
        ws = await session.ws_connect(running.url.replace("http", "ws", 1) + "/socket.io/?EIO=4&transport=websocket")
        assert (await ws.receive_str()).startswith("0{")
        await ws.send_str("40" + json.dumps({"token": running.token("r1", identity)}))
        assert (await ws.receive_str()).startswith("40")
        await ws.send_str('421["join",{}]')
        return cls(session, ws)

    async def _read(self) -> None:
        loop = asyncio.get_running_loop()
        async for message in self.ws:
            if message.data == "2":
                self.pings.append(loop.time())
                if self.answering:
                    await self.ws.send_str("3")
        self.closed.set()

    async def close(self) -> None:
        self._reader.cancel()
        await self.ws.close()
        await self.session.close()


@pytest.fixture
async def quick(make_server):
    return await make_server(ping_interval=INTERVAL, ping_timeout=TIMEOUT)


async def test_a_client_that_answers_is_pinged_every_interval_and_stays(quick):
    recorder = await PingRecorder.join(quick, "answers")
    await asyncio.sleep(5 * INTERVAL)
    gaps = [later - earlier for earlier, later in zip(recorder.pings, recorder.pings[1:], strict=False)]
    assert len(recorder.pings) >= 3
    # a ping an interval after the last pong, sent at the next tick of the one heartbeat timer
    assert all(INTERVAL <= gap <= INTERVAL + HEARTBEAT_TICK + 0.25 for gap in gaps), gaps
    assert not recorder.closed.is_set()
    assert [p["identity"] for p in await quick.server.participants("r1")] == ["answers"]
    await recorder.close()


async def test_a_socket_that_was_joined_and_pinged_has_only_the_attributes_it_was_created_with(quick):
    recorder = await PingRecorder.join(quick, "answers")
    async with asyncio.timeout(5 * INTERVAL):
        while len(recorder.pings) < 2:  # noqa: ASYNC110 - watching the recorder
            await asyncio.sleep(0.05)
    engine = quick.server.sio.eio
    (socket,) = engine.sockets.values()
    assert socket.pinged_tick >= 0 and socket.transport is not None
    # an attribute first set after creation turns the socket's compact attribute storage into a
    # dict of its own, for every connection (engine.py, EngineSocket.__init__)
    assert set(vars(socket)) == set(vars(EngineSocket(engine, "fresh")))
    await recorder.close()


async def test_a_client_that_stops_answering_is_cut_and_leaves_while_others_stay(quick):
    watcher, _ = await joined_client(quick.url, quick.token("r1", "watcher"))
    recorder = await PingRecorder.join(quick, "silent")
    await watcher.wait_for("presence", lambda e: e["participant"]["identity"] == "silent")
    recorder.answering = False
    loop = asyncio.get_running_loop()
    stopped = loop.time()
    # unanswered for the timeout, noticed at a tick, then its connection cut (not just closed)
    async with asyncio.timeout(INTERVAL + TIMEOUT + 2 * HEARTBEAT_TICK + 2):
        await recorder.closed.wait()
    assert loop.time() - stopped >= TIMEOUT
    left = await watcher.wait_for("presence", lambda e: e["type"] == "leave")
    assert left["participant"]["identity"] == "silent"
    await asyncio.sleep(INTERVAL + TIMEOUT)  # the watcher answers its pings: it stays
    assert [p["identity"] for p in await quick.server.participants("r1")] == ["watcher"]
    assert (await watcher.call("message", {"data": "still here"}))["ok"]
    await recorder.close()
    await watcher.close()


async def test_a_long_polling_socket_that_closed_is_removed_from_the_server(quick):
    url = f"{quick.url}/socket.io/?EIO=4&transport=polling"
    sockets = quick.server.sio.eio.sockets
    async with aiohttp.ClientSession() as http:
        async with http.get(url) as opened:
            sid = json.loads((await opened.text())[1:])["sid"]
        url += f"&sid={sid}"
        await http.post(url, data="40" + json.dumps({"token": quick.token("r1", "poller")}))
        async with http.get(url) as connected:
            assert (await connected.text()).startswith("40")
        await http.post(url, data="1")  # Engine.IO's close, and no poll left to notice it
    assert sockets[sid].closed
    async with asyncio.timeout(INTERVAL + 2 * HEARTBEAT_TICK + 1):
        while sid in sockets:  # noqa: ASYNC110 - watching the server's table
            await asyncio.sleep(0.05)
