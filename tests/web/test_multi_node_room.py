"""Two browsers on two `roomwire serve` nodes of one Redis, the room's media on a third: each page
plays the other's video; when the media node is killed, both pages get their media back from
another node by themselves (`sfu.restart`, no reload)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from roomwire.signaling.tokens import TokenIssuer

from tests.conftest import SECRET
from tests.node_process import NodeProcess
from tests.signaling.redis_server import RedisProcess
from tests.sio_client import joined_client
from tests.web.conftest import join, wait_remote_video

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.timeout(120)]


@pytest.fixture
async def three_nodes(redis_process: RedisProcess) -> AsyncIterator[list[NodeProcess]]:
    nodes = list(await asyncio.gather(*(NodeProcess(redis_process.url, dev=True).start() for _ in range(3))))
    yield nodes
    for node in nodes:
        await node.stop()


async def decoded(page: Any, who: str) -> int:
    stats = await page.evaluate("window.roomwire.videoStats()")
    return sum(s["framesDecoded"] for s in stats if s["identity"].startswith(who))


async def video_restarted(page: Any, who: str, before: int) -> None:
    """A new receiver (its count starts again below `before`) that decodes frames."""
    reset = False
    while True:
        now = await decoded(page, who)
        reset = reset or now < before
        if reset and now > 0:
            return
        await asyncio.sleep(0.1)


async def test_two_pages_on_two_nodes_see_each_other_and_survive_the_media_node(
    three_nodes: list[NodeProcess], redis_process: RedisProcess, new_page: Any
) -> None:
    # a participant placed the room's media first; the pages join through the other two nodes
    placer, _ = await joined_client(three_nodes[0].url, TokenIssuer(SECRET).mint(identity="placer", room="across"))
    assert (await placer.call("sfu.subscribe"))["ok"]
    redis = aioredis.Redis.from_url(redis_process.url, decode_responses=True)
    holder_id = await redis.get("roomwire:media:across")
    await redis.aclose()
    holder = next(node for node in three_nodes if node.node_id == holder_id)
    first, second = [node for node in three_nodes if node is not holder]

    ann, bob = await new_page(), await new_page()
    await join(ann, f"{first.url}/r/across", "Ann")
    await join(bob, f"{second.url}/r/across", "Bob")
    await wait_remote_video(ann, "bob")
    await wait_remote_video(bob, "ann")

    before = {ann: await decoded(ann, "bob"), bob: await decoded(bob, "ann")}
    loop = asyncio.get_running_loop()
    holder.kill()
    killed = loop.time()
    async with asyncio.timeout(15):
        await asyncio.gather(video_restarted(ann, "bob", before[ann]), video_restarted(bob, "ann", before[bob]))
    print(f"both pages play video again {loop.time() - killed:.2f} s after the media node was killed")
    for page in (ann, bob):
        assert await page.get_by_test_id("connection-status").text_content() == "connected"
    if holder is not three_nodes[0]:
        await placer.close()
