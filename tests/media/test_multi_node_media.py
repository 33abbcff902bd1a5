"""One room, many nodes: real `roomwire serve` processes on a real redis-server. A room's media
lives on one node, placed by load, and is reached from every node; when that node is killed the
room's participants publish and subscribe again on another node."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis
from roomwire.media.bot import Bot, RemoteTrack
from roomwire.media.sources import PatternVideoTrack, ToneAudioTrack
from roomwire.signaling.tokens import TokenIssuer

from tests.conftest import SECRET
from tests.media.frames import pattern_counters
from tests.media.sfu_peer import wait_until
from tests.node_process import NodeProcess
from tests.signaling.redis_server import RedisProcess
from tests.sio_client import joined_client

pytestmark = pytest.mark.timeout(120)

issuer = TokenIssuer(SECRET)
StartNodes = Callable[[int], Awaitable[list[NodeProcess]]]


def token(room: str, identity: str) -> str:
    return issuer.mint(identity=identity, room=room)


@pytest.fixture
async def start_nodes(redis_process: RedisProcess) -> AsyncIterator[StartNodes]:
    started: list[NodeProcess] = []

    async def start(count: int) -> list[NodeProcess]:
        nodes = await asyncio.gather(*(NodeProcess(redis_process.url).start() for _ in range(count)))
        started.extend(nodes)
        return list(nodes)

    yield start
    for node in started:
        await node.stop()


async def media_node(redis_url: str, room: str) -> str | None:
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        return await client.get(f"roomwire:media:{room}")
    finally:
        await client.aclose()


async def node_ids(redis_url: str) -> set[str]:
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        return set(await client.smembers("roomwire:nodes"))
    finally:
        await client.aclose()


async def next_video(bot: Bot, timeout: float, besides: RemoteTrack | None = None) -> RemoteTrack:
    """A video track the bot receives (a new one, `besides` the one it had)."""
    async with asyncio.timeout(timeout):
        async for track in bot.tracks():
            if track.kind == "video" and track is not besides:
                return track
    raise AssertionError("no video track")


async def test_a_pattern_bot_and_a_viewer_on_two_nodes(start_nodes: StartNodes, redis_process: RedisProcess) -> None:
    one, two = await start_nodes(2)
    async with (
        Bot.connect(one.url, token("m", "pattern")) as publisher,
        Bot.connect(two.url, token("m", "viewer")) as viewer,
    ):
        await publisher.publish(PatternVideoTrack(320, 240, 30), ToneAudioTrack())
        video = await next_video(viewer, 20)
        assert video.identity == "pattern"
        frames = await pattern_counters(video, 30, timeout=15)
        assert frames == sorted(frames) and frames[-1] > frames[0]
        assert await media_node(redis_process.url, "m") in await node_ids(redis_process.url)


async def test_the_media_node_is_killed_and_media_comes_back(
    start_nodes: StartNodes, redis_process: RedisProcess
) -> None:
    nodes = await start_nodes(3)
    async with Bot.connect(nodes[0].url, token("f", "placer")) as placer:
        assert placer.media_available  # its subscribe placed the room on the least loaded node
        holder_id = await media_node(redis_process.url, "f")
        holder = next(node for node in nodes if node.node_id == holder_id)
        survivors = [node for node in nodes if node is not holder]
        async with (
            Bot.connect(survivors[0].url, token("f", "pattern")) as publisher,
            Bot.connect(survivors[1].url, token("f", "viewer")) as viewer,
        ):
            await publisher.publish(PatternVideoTrack(320, 240, 30))
            before = await next_video(viewer, 20)
            await pattern_counters(before, 10, timeout=15)
            assert await media_node(redis_process.url, "f") == holder_id  # both reach it from elsewhere
            loop = asyncio.get_running_loop()
            holder.kill()
            killed = loop.time()
            video = await next_video(viewer, 15, besides=before)
            await pattern_counters(video, 1, timeout=15)
            back_after = loop.time() - killed
            print(f"media back {back_after:.2f} s after the media node was killed")
            assert back_after < 5.0
            assert viewer.media_restarts >= 1 and publisher.media_restarts >= 1
            assert await media_node(redis_process.url, "f") in {node.node_id for node in survivors}
            frames = await pattern_counters(video, 20, timeout=15)
            assert frames == sorted(frames)


async def test_ten_rooms_spread_over_three_nodes(start_nodes: StartNodes, redis_process: RedisProcess) -> None:
    nodes = await start_nodes(3)
    clients = []
    for n in range(10):
        node = nodes[n % 3]
        client, _ = await joined_client(node.url, token(f"spread{n}", "p"))
        assert (await client.call("sfu.subscribe"))["ok"]
        clients.append(client)
    holders = Counter([await media_node(redis_process.url, f"spread{n}") for n in range(10)])
    print(f"rooms per node: {sorted(holders.values())}")
    assert None not in holders and len(holders) == 3
    assert max(holders.values()) - min(holders.values()) <= 2
    for client in clients:
        with contextlib.suppress(Exception):
            await client.close()


async def test_a_bot_given_every_node_moves_to_a_live_one_when_its_node_is_killed(
    start_nodes: StartNodes, redis_process: RedisProcess
) -> None:
    one, two = await start_nodes(2)
    heard: list[Any] = []
    async with (
        Bot.connect([one.url, two.url], token("mv", "mover"), subscribe=False) as mover,
        Bot.connect(two.url, token("mv", "watcher"), subscribe=False) as watcher,
    ):
        watcher.on_message(lambda message: heard.append((message.sender, message.data)))
        assert mover.url == one.url
        one.kill()
        await wait_until(lambda: mover.reconnects >= 1, timeout=15)
        assert mover.url == two.url

        # it joined again on the live node, so the reaper of the dead one leaves it in the room
        async def reaped() -> bool:
            return one.node_id not in await node_ids(redis_process.url)

        await wait_until(reaped, timeout=20)
        assert "mover" in watcher.participants and "watcher" in mover.participants
        await mover.send("still here", to="watcher")
        await wait_until(lambda: ("mover", "still here") in heard, timeout=5)
