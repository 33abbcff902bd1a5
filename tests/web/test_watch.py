"""`?watch=1`: a presence-only page, over SSE or (when EventSource fails) long polling,
served under an embedding prefix; a real python-socketio participant comes and goes."""

from __future__ import annotations

from typing import Any

import pytest

from tests.sio_client import SioClient
from tests.web.conftest import BLOCK_EVENTSOURCE, MakeWebServer, wait_status

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.timeout(60)]

LISTED = "id => !!document.querySelector(`[data-testid=participant-list] > [data-identity='${id}']`)"
UNLISTED = "id => !document.querySelector(`[data-testid=participant-list] > [data-identity='${id}']`)"


@pytest.mark.parametrize(
    ("transport", "init_script"), [("sse", None), ("longpoll", BLOCK_EVENTSOURCE)], ids=["sse", "longpoll"]
)
async def test_watch_page_sees_joins_and_leaves(
    make_web_server: MakeWebServer, new_page: Any, transport: str, init_script: str | None
) -> None:
    running = await make_web_server(prefix="/embed")
    page = await new_page(init_script=init_script)
    if transport == "sse":
        await page.goto(f"{running.base}/r/hall?watch=1")  # dev mode: the page gets its own token
    else:
        token = running.token("hall", "watcher-1")
        await page.goto(f"{running.base}/r/hall?watch=1#token={token}")
        assert await page.evaluate("window.roomwire.watcher.token") == token
    await wait_status(page, "connected")
    assert await page.evaluate("document.body.dataset.transport") == transport
    assert await page.locator("[data-testid=participant-list] > *").count() == 0

    client = SioClient()
    await client.connect(running.url, running.token("hall", "lin", name="Lin"), path="embed/socket.io")
    try:
        assert (await client.call("join"))["ok"] is True
        await page.wait_for_function(LISTED, arg="lin", timeout=10_000)
        assert "Lin" in await page.locator("[data-testid=participant-list] > [data-identity=lin]").inner_text()
        assert (await client.call("leave"))["ok"] is True
        await page.wait_for_function(UNLISTED, arg="lin", timeout=10_000)
    finally:
        await client.close()
