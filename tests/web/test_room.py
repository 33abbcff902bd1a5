"""Two real Chromium pages in one room, through the real server and SFU (or peer to peer)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tests.sio_client import SioClient
from tests.web.conftest import (
    BLOCK_WEBSOCKET,
    MakeWebServer,
    join,
    people,
    pixel_stddev,
    wait_remote_video,
    wait_status,
)

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.timeout(90)]


async def chat(sender: Any, receiver: Any, text: str) -> None:
    await sender.get_by_test_id("chat-input").fill(text)
    await sender.get_by_test_id("chat-send").click()
    await receiver.wait_for_function(
        "t => [...document.querySelectorAll('[data-testid=chat-log] > *')].some(m => m.textContent.includes(t))",
        arg=text,
        timeout=10_000,
    )


async def test_two_people_see_each_other_chat_and_leave(
    make_web_server: MakeWebServer, new_page: Any, artifacts: Path
) -> None:
    running = await make_web_server()
    ada = await new_page()
    # Grace's browser cannot open WebSockets: she is on Socket.IO's polling transport.
    grace = await new_page(init_script=BLOCK_WEBSOCKET)
    await join(ada, f"{running.base}/r/standup", "Ada")
    await join(grace, f"{running.base}/r/standup", "Grace")
    assert await grace.evaluate("window.roomwire.signaling.transport") == "polling"

    seen_by_ada = await wait_remote_video(ada, "grace")
    seen_by_grace = await wait_remote_video(grace, "ada")
    assert seen_by_ada["source"] == seen_by_grace["source"] == "camera"
    for page in (ada, grace):
        names = await people(page)
        assert len(names) == 2
        assert any("Ada" in n for n in names) and any("Grace" in n for n in names)

    # Lin has no media (a plain Socket.IO client): chat reaches her through `message`.
    lin = SioClient()
    await lin.connect(running.url, running.token("standup", "lin", name="Lin"))
    try:
        assert (await lin.call("join"))["ok"] is True
        await ada.wait_for_selector("[data-testid=participant-list] > [data-identity=lin]")
        await chat(ada, grace, "hello from Ada over the data channel")
        got = await lin.wait_for("message", lambda m: m["from"].startswith("ada"))
        assert got["data"]["type"] == "chat" and got["data"]["text"] == "hello from Ada over the data channel"
        await chat(grace, ada, "hi Ada, Grace here")
        await lin.wait_for("message", lambda m: m["from"].startswith("grace"))
        assert (await lin.call("message", {"data": "Lin says hi"}))["ok"] is True
        for page in (ada, grace):
            await page.wait_for_function(
                "() => [...document.querySelectorAll('[data-testid=chat-log] > *')]"
                ".some(m => m.textContent.includes('Lin says hi'))"
            )
    finally:
        await lin.close()
    assert await ada.locator("[data-testid=chat-log] > *").count() == 3
    assert len(lin.events["message"]) == 2

    # Ada mutes and shares her screen: Grace's list shows it, and a second video arrives
    # (a re-sent publish offer, then a new sfu.offer to Grace).
    await ada.locator("#mic-button").click()
    await ada.locator("#screen-button").click()
    await grace.locator("[data-testid=participant-list] > [data-identity^=ada] .state-muted").wait_for()
    await grace.wait_for_function(
        "() => [...document.querySelectorAll('[data-testid=remote-video][data-source=screen]')]"
        ".some(v => v.dataset.identity.startsWith('ada') && v.videoWidth > 0)",
        timeout=15_000,
    )
    assert await grace.locator("[data-testid=remote-video]").count() == 2

    shot = artifacts / "two-person-room.png"
    await ada.screenshot(path=str(shot))
    assert pixel_stddev(shot) > 10, "the screenshot of the room is blank"

    # Grace, on polling, closes her page (no WebSocket closes with it).
    closed_at = time.monotonic()
    await grace.close()
    await ada.wait_for_function(
        "() => document.querySelectorAll('[data-testid=participant-list] > [data-identity]').length === 1",
        timeout=2_000,
    )
    assert time.monotonic() - closed_at < 2.5


async def test_mesh_mode_connects_browsers_directly(make_web_server: MakeWebServer, new_page: Any) -> None:
    running = await make_web_server()
    ada, grace = await new_page(), await new_page()
    # Ada comes through the join page and picks the direct mode there.
    await ada.goto(f"{running.base}/")
    await ada.get_by_test_id("room-input").fill("direct")
    await ada.get_by_test_id("name-input").fill("Ada")
    await ada.get_by_label("Direct").check()
    await ada.get_by_test_id("join-button").click()
    await wait_status(ada, "connected")
    assert ada.url.startswith(f"{running.base}/r/direct?") and "mode=mesh" in ada.url
    await join(grace, f"{running.base}/r/direct?mode=mesh", "Grace")
    await wait_remote_video(ada, "grace")
    await wait_remote_video(grace, "ada")
    sfu = running.server.media
    assert sfu is not None
    assert sfu.peer_connections == 0, "mesh media must not go through the SFU"
    await chat(ada, grace, "straight to you")


async def test_a_dropped_connection_rejoins_and_renegotiates_media(
    make_web_server: MakeWebServer, new_page: Any
) -> None:
    running = await make_web_server()
    ada, grace = await new_page(), await new_page()
    await join(ada, f"{running.base}/r/flaky", "Ada")
    await join(grace, f"{running.base}/r/flaky", "Grace")
    await wait_remote_video(ada, "grace")
    await wait_remote_video(grace, "ada")
    for page in (ada, grace):
        await page.evaluate("document.querySelectorAll('[data-testid=remote-video]').forEach(v => v.dataset.old = '1')")
    await grace.evaluate(
        "window.states = []; window.roomwire.signaling.addEventListener('status', e => states.push(e.detail.state))"
    )

    # The server drops Grace's Socket.IO connection (as a restart or a network cut would).
    sockets = running.server.sockets.connections
    (sid,) = [sid for sid, conn in sockets.items() if conn.claims.identity.startswith("grace")]
    await running.server.sio.disconnect(sid)

    await grace.wait_for_function("window.states.includes('reconnecting')", timeout=10_000)
    await wait_status(grace, "connected")
    assert (await grace.evaluate("window.states"))[0] == "reconnecting"
    fresh_video = """who => [...document.querySelectorAll('[data-testid=remote-video]')]
        .some(v => !v.dataset.old && v.dataset.identity.startsWith(who) && v.videoWidth > 0)"""
    await grace.wait_for_function(fresh_video, arg="ada", timeout=20_000)
    await ada.wait_for_function(fresh_video, arg="grace", timeout=20_000)
    for page in (ada, grace):
        assert len(await people(page)) == 2
