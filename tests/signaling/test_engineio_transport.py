"""Engine.IO transport settings: WebSocket compression is off unless configured."""

from __future__ import annotations

import aiohttp
import pytest

from tests.sio_client import joined_client


async def negotiated_compression(url: str) -> int:
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(f"{url}/socket.io/?EIO=4&transport=websocket", compress=15) as ws:
            opened = await ws.receive_str(timeout=5)
            assert opened.startswith("0{")  # Engine.IO "open" packet: the handshake went through
            return ws.compress


@pytest.mark.parametrize("enabled", [False, True])
async def test_permessage_deflate_only_when_enabled(make_server, enabled):
    running = await make_server(websocket_compression=enabled)
    compress = await negotiated_compression(running.url)
    assert (compress > 0) is enabled
    # either way, clients work
    client, ack = await joined_client(running.url, running.token("r", "a"))
    assert ack["ok"]
    await client.close()
