"""Headless Chromium's own EventSource follows presence, survives a dropped stream and resumes
with no gap: the browser reconnects by itself and sends `Last-Event-ID`, the server replays."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aiohttp import web
from roomwire.signaling import SignalingServer
from roomwire.signaling.server import SERVER_KEY

from tests.conftest import SECRET, start_app
from tests.sio_client import joined_client

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.timeout(60)]

# Same origin as the stream: the page is served by the roomwire app itself.
PAGE = """<!doctype html><meta charset="utf-8"><title>presence</title>
<script>
window.seen = []; window.opens = 0;
const source = new EventSource(%s);
source.onopen = () => { window.opens += 1; };
for (const kind of ["snapshot", "presence"]) {
  source.addEventListener(kind, (e) => {
    const data = JSON.parse(e.data);
    window.seen.push({kind, id: e.lastEventId, offset: data.offset, type: data.type || null,
                      who: data.participant ? data.participant.identity : null,
                      participants: data.participants ? data.participants.map((p) => p.identity) : null});
  });
}
</script>"""


async def seen_until(page: Any, offset: int) -> list[dict[str, Any]]:
    await page.wait_for_function(
        "n => window.seen.length > 0 && window.seen[window.seen.length - 1].offset >= n", arg=offset, timeout=10_000
    )
    return await page.evaluate("window.seen")


async def test_eventsource_gets_snapshot_and_live_events_and_resumes_after_a_drop(new_page: Any) -> None:
    server = SignalingServer(secret=SECRET)
    app = web.Application()
    server.attach(app)
    token = server.issuer.mint(identity="dashboard", room="hall")

    async def page_route(request: web.Request) -> web.Response:
        stream_url = f"/rooms/hall/presence/sse?token={token}"
        return web.Response(text=PAGE % json.dumps(stream_url), content_type="text/html")

    app.router.add_get("/test/eventsource", page_route)
    runner, url = await start_app(app)
    clients = []
    try:
        alice, ack = await joined_client(url, server.issuer.mint(identity="alice", room="hall"))  # offset 1
        clients.append(alice)
        epoch = ack["epoch"]
        page = await new_page()
        await page.goto(f"{url}/test/eventsource")
        seen = await seen_until(page, 1)
        assert seen == [
            {"kind": "snapshot", "id": f"{epoch}:1", "offset": 1, "type": None, "who": None, "participants": ["alice"]}
        ]

        bob, _ = await joined_client(url, server.issuer.mint(identity="bob", room="hall"))  # 2
        clients.append(bob)
        await bob.call("update", {"name": "Bob"})  # 3
        await seen_until(page, 3)

        # The server drops the stream; events happen while the browser is away (it waits the
        # 1 s `retry:` the server sent before reconnecting).
        assert app[SERVER_KEY].sse.close_streams("hall") == 1
        await bob.call("leave")  # 4
        carol, _ = await joined_client(url, server.issuer.mint(identity="carol", room="hall"))  # 5
        clients.append(carol)
        seen = await seen_until(page, 5)
        await page.wait_for_function("window.opens >= 2", timeout=10_000)
        await carol.call("update", {"name": "Carol"})  # 6, live on the new stream
        seen = await seen_until(page, 6)

        assert [(s["kind"], s["offset"]) for s in seen] == [("snapshot", 1)] + [("presence", n) for n in range(2, 7)]
        assert [s["id"] for s in seen] == [f"{epoch}:{n}" for n in range(1, 7)]
        assert [(s["type"], s["who"]) for s in seen[1:]] == [
            ("join", "bob"),
            ("update", "bob"),
            ("leave", "bob"),
            ("join", "carol"),
            ("update", "carol"),
        ]
        assert await page.evaluate("window.opens") == 2
    finally:
        for client in clients:
            await client.close()
        await runner.cleanup()
