"""signaling/socketio_internals/engine.py through a real server and real clients: a socket that
starts on long polling and upgrades keeps every packet in order across the upgrade; a client sent
Engine.IO's close that does not hang up is hung up on; the environ python-socketio keeps is read
from the request and says what python-engineio's copy said; a compressed WebSocket, which keeps
python-engineio's own loops, gets its heartbeats too."""

from __future__ import annotations

import asyncio

import aiohttp
from engineio.async_drivers.aiohttp import translate_request
from roomwire.signaling.courier import sio_room
from roomwire.signaling.socketio_internals import RequestEnviron
from roomwire.signaling.socketio_internals.engine import GOODBYE_SECONDS

from tests.raw_socket import RawSocket
from tests.sio_client import SioClient, joined_client


def engine_socket(running, client: SioClient):
    sio = running.server.sio
    return sio.eio.sockets[sio.manager.eio_sid_from_sid(client.sio.get_sid("/"), "/")]


async def test_a_socket_that_upgrades_from_polling_keeps_every_packet_in_order(running):
    client = SioClient()
    await client.connect(running.url, running.token("r1", "upgrader"), transports=["polling", "websocket"])
    socket = engine_socket(running, client)
    assert (await client.call("join"))["ok"]
    emit = running.server.sio.emit
    for n in range(300):  # before, during and after the upgrade
        await emit("message", {"n": n}, room=sio_room("r1"))
        await asyncio.sleep(0.002)
    await client.wait_for("message", lambda m: m["n"] == 299)
    async with asyncio.timeout(5):
        while not socket.upgraded:  # noqa: ASYNC110 - watching the server's socket
            await asyncio.sleep(0.05)
    await emit("message", {"n": 300}, room=sio_room("r1"))
    await client.wait_for("message", lambda m: m["n"] == 300)
    assert [m["n"] for m in client.events["message"]] == list(range(301))
    assert client.sio.transport() == "websocket"
    assert (await client.call("update", {"name": "upgraded"}))["self"]["name"] == "upgraded"
    await client.close()


async def test_a_long_polling_client_sends_and_receives(running):
    watcher, _ = await joined_client(running.url, running.token("r1", "watcher"))
    poller, ack = await joined_client(running.url, running.token("r1", "poller"), transports=["polling"])
    assert ack["self"]["transport"] == "polling"
    assert (await poller.call("message", {"data": "over polling"}))["ok"]
    await watcher.wait_for("message", lambda m: m["data"] == "over polling")
    assert (await watcher.call("signal", {"to": "poller", "type": "offer", "data": {"sdp": "x"}}))["ok"]
    await poller.wait_for("signal", lambda s: s["from"] == "watcher")
    await poller.close()
    await watcher.close()


async def test_a_client_sent_the_close_that_does_not_hang_up_is_hung_up_on(running):
    raw = await RawSocket.open(running.url, running.token("r1", "stays"))
    await raw.connected()
    (eio_sid,) = running.server.sio.eio.sockets
    loop = asyncio.get_running_loop()
    started = loop.time()
    await running.server.sio.eio.disconnect(eio_sid)
    assert await raw.next_frame() == "1"  # Engine.IO's close, which this client ignores
    async with asyncio.timeout(GOODBYE_SECONDS + 2):
        message = await raw.ws.receive()
    assert message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR)
    assert loop.time() - started >= GOODBYE_SECONDS * 0.9
    await raw.close()


async def test_the_environ_is_read_from_the_request_as_python_engineio_would_copy_it(running):
    client, _ = await joined_client(running.url, running.token("r1", "a"), headers={"X-Custom": "1"})
    environ = running.server.sio.get_environ(client.sio.get_sid("/"))
    assert isinstance(environ, RequestEnviron)
    assert dict(environ) == translate_request(environ["aiohttp.request"])
    assert environ["HTTP_X_CUSTOM"] == "1" and environ["REQUEST_METHOD"] == "GET"
    assert "HTTP_NOT_SENT" not in environ and environ.get("HTTP_NOT_SENT") is None
    await client.close()


async def test_a_compressed_websocket_gets_its_heartbeats(make_server):
    running = await make_server(websocket_compression=True, ping_interval=1, ping_timeout=1)
    async with aiohttp.ClientSession() as http:
        url = running.url.replace("http", "ws", 1) + "/socket.io/?EIO=4&transport=websocket"
        async with http.ws_connect(url, compress=15) as ws:
            assert ws.compress and (await ws.receive_str()).startswith("0{")
            pings = 0
            async with asyncio.timeout(5):
                while pings < 3:  # three intervals: longer than one ping's deadline
                    if await ws.receive_str() == "2":
                        pings += 1
                        await ws.send_str("3")
            assert not ws.closed
