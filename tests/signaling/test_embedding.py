"""roomwire embedded in an app with its own routes and middleware (examples/embedded_app.py)."""

from __future__ import annotations

import asyncio
import importlib.util

import aiohttp
import pytest
from roomwire.signaling import MemoryBackend, Retention, SignalingServer

from tests.conftest import REPO, SECRET, RunningServer, start_app
from tests.sio_client import SioClient


def load_example():
    spec = importlib.util.spec_from_file_location("embedded_app", REPO / "examples" / "embedded_app.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def test_embedded_app_keeps_its_routes_and_gains_rooms():
    example = load_example()
    app = example.create_app(SECRET)
    runner, url = await start_app(app)
    server = app[example.RTC]
    rtc = RunningServer(url=url, server=server, app=app, prefix="/rtc")
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{url}/") as resp:
                assert resp.headers["X-Powered-By"] == "my-app" and (await resp.json())["app"] == "my-app"
            async with http.get(f"{url}/rtc/healthz") as resp:
                assert resp.status == 200 and resp.headers["X-Powered-By"] == "my-app"
            async with http.get(f"{url}/healthz") as resp:
                assert resp.status == 404  # nothing of roomwire outside its prefix

        alice = SioClient()
        await alice.connect(url, rtc.token("lobby", "alice"), path="rtc/socket.io")
        assert (await alice.call("join"))["ok"]
        mallory = SioClient()
        await mallory.connect(url, rtc.token("lobby", "mallory"), path="rtc/socket.io")
        refused = await mallory.call("join")
        assert refused["error"] == {"code": "forbidden", "message": "you are banned from this app"}
        assert [p["identity"] for p in await server.participants("lobby")] == ["alice"]

        bob = SioClient()
        await bob.connect(url, rtc.token("lobby", "bob"), path="rtc/socket.io")
        assert (await bob.call("join"))["ok"]
        assert (await bob.call("message", {"data": "hello"}))["ok"]
        await alice.wait_for("message", lambda m: m["data"] == "hello")

        async with aiohttp.ClientSession() as http:
            async with http.post(f"{url}/announce/lobby", data="dinner is ready") as resp:
                body = await resp.json()
        assert body["participants"] == 2
        got = await bob.wait_for("message", lambda m: m["from"] == "server")
        assert got["data"] == {"text": "dinner is ready"} and got["id"] == body["id"]

        assert await server.kick("lobby", "bob")
        assert await bob.wait_for("kicked") == {"reason": "removed"}
        await asyncio.wait_for(bob.disconnected.wait(), 5)
        assert not await server.kick("lobby", "bob")
        await alice.close()
        await mallory.close()
        for _ in range(50):
            if ("leave", "lobby", "alice", "disconnected") in app[example.EVENTS]:
                break
            await asyncio.sleep(0.05)
        assert app[example.EVENTS] == [
            ("join", "lobby", "alice"),
            ("join", "lobby", "bob"),
            ("message", "lobby", "bob", "hello"),
            ("message", "lobby", "server", {"text": "dinner is ready"}),
            ("leave", "lobby", "bob", "removed"),
            ("leave", "lobby", "alice", "disconnected"),
        ]
    finally:
        await runner.cleanup()


async def test_a_retention_beside_a_backend_of_ones_own_is_refused_not_ignored():
    with pytest.raises(ValueError, match="MemoryBackend\\(retention\\)"):
        SignalingServer(secret=SECRET, backend=MemoryBackend(), retention=Retention(max_events=5))
    backend = MemoryBackend(Retention(max_events=5))
    assert SignalingServer(secret=SECRET, backend=backend).backend is backend
