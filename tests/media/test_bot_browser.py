"""Bots with a real Chromium page: an echo bot returns its camera, a pattern bot shows up in its
room, and the chat bot example answers its chat."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO
from tests.web import conftest as web
from tests.web.conftest import MakeWebServer, join, pixel_stddev, wait_remote_video

# the browser fixtures of tests/web, for this module
browser, make_web_server, new_page, artifacts = web.browser, web.make_web_server, web.new_page, web.artifacts

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.timeout(120)]

ROOMWIRE = str(REPO / ".venv" / "bin" / "roomwire")

# The mean colour of a <video>'s current frame, scaled down on a canvas.
MEAN_COLOUR = """video => {
  const canvas = document.createElement('canvas');
  canvas.width = 64; canvas.height = 48;
  const ctx = canvas.getContext('2d');
  ctx.drawImage(video, 0, 0, 64, 48);
  const data = ctx.getImageData(0, 0, 64, 48).data;
  const sum = [0, 0, 0];
  for (let i = 0; i < data.length; i += 4) { sum[0] += data[i]; sum[1] += data[i + 1]; sum[2] += data[i + 2]; }
  return sum.map(s => s / (data.length / 4));
}"""


async def test_echo_bot_returns_the_browsers_camera(
    make_web_server: MakeWebServer,
    new_page: Any,
    artifacts: Path,
) -> None:
    running = await make_web_server()
    bot = await asyncio.create_subprocess_exec(
        ROOMWIRE,
        "bot",
        "--url",
        running.base,
        "--room",
        "mirror",
        "--dev",
        "--name",
        "echo",
        "--echo",
        "--duration",
        "90",
        "--stats",
        "1",
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        for _ in range(300):
            if await running.server.participants("mirror"):
                break
            await asyncio.sleep(0.1)
        ada = await new_page()
        await join(ada, f"{running.base}/r/mirror", "Ada")
        stats = await wait_remote_video(ada, "echo", timeout=40_000)
        assert stats["framesDecoded"] > 0 and stats["source"] == "camera"

        echoed = ada.locator("[data-testid=remote-video][data-identity^=echo]")
        local = ada.locator("video:not([data-testid=remote-video])").first
        width, height = await echoed.evaluate("v => [v.videoWidth, v.videoHeight]")
        camera_width, camera_height = await local.evaluate("v => [v.videoWidth, v.videoHeight]")
        # the browser may send a scaled-down copy (bandwidth estimation); the shape stays
        assert width > 0 and abs(width / height - camera_width / camera_height) < 0.02
        # the echo shows what the fake camera shows: the same picture, so about the same colours
        await asyncio.sleep(1)
        mine, back = await local.evaluate(MEAN_COLOUR), await echoed.evaluate(MEAN_COLOUR)
        assert max(abs(a - b) for a, b in zip(mine, back, strict=True)) < 40, (mine, back)
        shot = artifacts / "echo-bot.png"
        await ada.screenshot(path=str(shot))
        assert pixel_stddev(shot) > 10
    finally:
        bot.terminate()
        out, err = await asyncio.wait_for(bot.communicate(), 20)
    text = out.decode()
    assert re.search(r"track ada-\w+/video \(camera", text), text + err.decode()
    assert "publishing" not in text  # an echo publishes only what it receives


async def test_a_browser_sees_a_pattern_bot_and_talks_with_the_chat_bot(
    make_web_server: MakeWebServer,
    new_page: Any,
) -> None:
    running = await make_web_server()
    pattern = await asyncio.create_subprocess_exec(
        ROOMWIRE,
        *("bot", "--url", running.base, "--room", "lobby", "--dev", "--name", "pattern", "--pattern"),
        *("--size", "320x240", "--fps", "15", "--duration", "90", "--stats", "0"),
        cwd=REPO,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    chat_bot = await asyncio.create_subprocess_exec(
        str(REPO / ".venv" / "bin" / "python"),
        *(str(REPO / "examples" / "chat_bot.py"), running.base, "lobby", "90"),
        cwd=REPO,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        for _ in range(300):
            if len(await running.server.participants("lobby")) == 2:
                break
            await asyncio.sleep(0.1)
        grace = await new_page()
        await join(grace, f"{running.base}/r/lobby", "Grace")
        stats = await wait_remote_video(grace, "pattern", timeout=40_000)
        assert stats["framesDecoded"] > 0

        await grace.get_by_test_id("chat-input").fill("hello bots")
        await grace.get_by_test_id("chat-send").click()
        await grace.wait_for_function(
            "t => [...document.querySelectorAll('[data-testid=chat-log] > *')].some(m => m.textContent.includes(t))",
            arg="Grace said: hello bots",
            timeout=15_000,
        )
    finally:
        for process in (pattern, chat_bot):
            process.terminate()
            await asyncio.wait_for(process.wait(), 20)
