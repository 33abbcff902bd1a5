"""Browser end-to-end fixtures: ONE headless Chromium per test session, a fresh roomwire
server (dev mode, SFU, web client) per test, both on the session's event loop.

Tests here are marked `asyncio(loop_scope="session")` so the session browser and the
per-test server share one loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from roomwire.media.sfu import SFU

from tests.conftest import REPO, RunningServer, Servers, require_chromium, require_node_modules

ARTIFACTS = REPO / "test-artifacts"
CHROMIUM_FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--allow-loopback-in-peer-connection",
    "--autoplay-policy=no-user-gesture-required",
]
# A page that cannot open a WebSocket: Socket.IO must stay on HTTP long polling.
BLOCK_WEBSOCKET = "Object.defineProperty(window, 'WebSocket', {value: undefined});"
BLOCK_EVENTSOURCE = "Object.defineProperty(window, 'EventSource', {value: undefined});"


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def browser() -> AsyncIterator[Any]:
    executable = require_chromium()
    require_node_modules("web")
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
        yield chromium
        await chromium.close()


MakeWebServer = Callable[..., Awaitable[RunningServer]]


@pytest_asyncio.fixture(loop_scope="session")
async def make_web_server() -> AsyncIterator[MakeWebServer]:
    """`await make_web_server(prefix="", **options)`: roomwire as `roomwire serve --dev` builds it."""
    servers = Servers()

    async def make(prefix: str = "", **options: Any) -> RunningServer:
        """`options`: more SignalingServer options (`turn=...`)."""
        return await servers.start(
            prefix=prefix, web_client=True, dev=True, media=SFU(ice_servers=[], offer_timeout=5), **options
        )

    yield make
    await servers.close()


@pytest_asyncio.fixture(loop_scope="session")
async def new_page(browser: Any) -> AsyncIterator[Callable[..., Awaitable[Any]]]:
    """`await new_page(init_script=None)`: a page in its own context (own camera, own storage)."""
    contexts: list[Any] = []

    async def make(init_script: str | None = None) -> Any:
        # Granted permissions also make Chromium offer real host candidates, not mDNS names.
        context = await browser.new_context(
            permissions=["camera", "microphone"], viewport={"width": 1280, "height": 760}
        )
        contexts.append(context)
        if init_script:
            await context.add_init_script(init_script)
        page = await context.new_page()
        # Printed output is captured: pytest shows it for a failed test.
        label = f"page{len(contexts)}"
        page.on("console", lambda msg: print(f"[{label}] {msg.type}: {msg.text}"))
        page.on("pageerror", lambda err: print(f"[{label}] page error: {err}"))
        return page

    yield make
    for context in contexts:
        await context.close()


async def join(page: Any, url: str, name: str) -> None:
    """Open a room page, give a name in the lobby and wait until it is connected."""
    await page.goto(url)
    await page.get_by_test_id("name-input").fill(name)
    await page.get_by_test_id("join-button").click()
    await wait_status(page, "connected")


async def wait_status(page: Any, state: str, timeout: float = 15_000) -> None:
    # An expression, not a function: playwright evaluates it with eval, which the pages'
    # Content-Security-Policy must allow for tests like this one.
    await page.wait_for_function(
        f"document.querySelector('[data-testid=connection-status]')?.textContent === {state!r}",
        timeout=timeout,
    )


async def people(page: Any) -> list[str]:
    return await page.eval_on_selector_all(
        "[data-testid=participant-list] > [data-identity]", "els => els.map(e => e.textContent)"
    )


async def wait_remote_video(page: Any, identity_part: str, timeout: float = 20_000) -> dict[str, Any]:
    """Wait until a remote <video> of the participant plays frames that getStats reports decoded."""
    await page.wait_for_function(
        """who => [...document.querySelectorAll('[data-testid=remote-video]')]
                  .some(v => v.dataset.identity.startsWith(who) && v.videoWidth > 0)""",
        arg=identity_part,
        timeout=timeout,
    )
    async with asyncio.timeout(timeout / 1000):
        while True:
            stats = await page.evaluate("window.roomwire.videoStats()")
            mine = [s for s in stats if s["identity"].startswith(identity_part)]
            if mine and mine[0]["framesDecoded"] > 0:
                return mine[0]
            await asyncio.sleep(0.2)


def pixel_stddev(png: Path) -> float:
    """The grey-level standard deviation of an image: ~0 for a blank screenshot."""
    import av

    with av.open(str(png)) as container:
        frame = next(container.decode(video=0)).reformat(format="gray")
    data = bytes(frame.planes[0])
    mean = sum(data) / len(data)
    return (sum((b - mean) ** 2 for b in data[::7]) / len(data[::7])) ** 0.5


@pytest.fixture
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
