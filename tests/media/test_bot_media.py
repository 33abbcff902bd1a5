"""Bots through the real SFU: publishing a pattern, subscribing, data, republishing after a drop."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from aiortc.mediastreams import MediaStreamError
from roomwire.media.bot import Bot, BotError, Message, RemoteTrack
from roomwire.media.sfu import SFU
from roomwire.media.sources import PatternVideoTrack, ToneAudioTrack

from tests.media.frames import pattern_counters

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
async def sfu_running(make_server):
    return await make_server(media=SFU(ice_servers=[]))


async def test_pattern_bot_publishes_and_another_bot_receives_it(sfu_running):
    token = sfu_running.token
    async with (
        Bot.connect(sfu_running.url, token("m", "pattern")) as publisher,
        Bot.connect(sfu_running.url, token("m", "viewer")) as viewer,
    ):
        assert publisher.media_available and viewer.media_available
        await publisher.publish(PatternVideoTrack(320, 240, 30), ToneAudioTrack())
        got: dict[str, RemoteTrack] = {}
        async with asyncio.timeout(15):
            async for track in viewer.tracks():
                got[track.kind] = track
                if len(got) == 2:
                    break
        video, audio = got["video"], got["audio"]
        assert video.identity == "pattern" and video.source == "camera" and audio.source == "microphone"
        counters = await pattern_counters(video, 20)
        assert counters == sorted(counters) and counters[-1] > counters[0]
        assert (await audio.recv()).sample_rate == 48000
        await viewer.wait_until(lambda b: len(b.participants["pattern"]["tracks"]) == 2, timeout=5)
        assert {t["kind"] for t in viewer.participants["pattern"]["tracks"]} == {"audio", "video"}


async def test_unpublish_withdraws_a_track_from_everyone(sfu_running):
    token = sfu_running.token
    async with (
        Bot.connect(sfu_running.url, token("m", "pattern")) as publisher,
        Bot.connect(sfu_running.url, token("m", "viewer")) as viewer,
    ):
        video, _ = await publisher.publish(PatternVideoTrack(320, 240, 30), ToneAudioTrack())
        await viewer.wait_until(lambda b: len(b.participants.get("pattern", {}).get("tracks", [])) == 2, timeout=10)
        await publisher.unpublish(video)
        await viewer.wait_until(
            lambda b: [t["kind"] for t in b.participants["pattern"]["tracks"]] == ["audio"], timeout=10
        )
        assert [t.kind for t in sfu_running.server.media.tracks("m")] == ["audio"]


async def test_data_channel_between_bots(sfu_running):
    token = sfu_running.token
    async with (
        Bot.connect(sfu_running.url, token("m", "a")) as a,
        Bot.connect(sfu_running.url, token("m", "b")) as b,
    ):
        received: list[Message] = []
        b.on_message(received.append)
        await a.send_data({"n": 1})
        await b.wait_until(lambda _: bool(received), timeout=10)
        assert received == [Message(sender="a", data={"n": 1}, via="data")]


async def test_remote_track_ends_when_its_publisher_leaves(sfu_running):
    token = sfu_running.token
    async with Bot.connect(sfu_running.url, token("m", "viewer")) as viewer:
        publisher = Bot.connect(sfu_running.url, token("m", "pattern"))
        await publisher.start()
        await publisher.publish(PatternVideoTrack(160, 120, 15))
        async with asyncio.timeout(15):
            track = await anext(viewer.tracks())
        await pattern_counters(track, 3)
        await publisher.close()
        with pytest.raises(MediaStreamError):
            async with asyncio.timeout(10):
                while True:
                    await track.recv()
        assert track.ended


async def test_cut_bot_reconnects_and_publishes_again(sfu_running):
    token = sfu_running.token
    source = PatternVideoTrack(160, 120, 15)
    async with (
        Bot.connect(sfu_running.url, token("m", "pattern"), backoff=(0.1, 1.0)) as publisher,
        Bot.connect(sfu_running.url, token("m", "viewer")) as viewer,
    ):
        await publisher.publish(source)
        dropped: list[int] = []
        publisher.on_disconnect(lambda bot: dropped.append(bot.reconnects))
        tracks = viewer.tracks()
        async with asyncio.timeout(15):
            first = await anext(tracks)
        before = await pattern_counters(first, 3)

        sid = next(s for s, c in sfu_running.server.sockets.connections.items() if c.identity == "pattern")
        await sfu_running.server.sio.disconnect(sid)
        async with asyncio.timeout(20):
            second = await anext(tracks)
        assert second.identity == "pattern" and second.sid != first.sid
        after = await pattern_counters(second, 3)
        # the same source, continued: its counter kept running across the reconnect
        assert after[0] > before[-1]
        assert publisher.reconnects == 1 and first.ended
        assert dropped == [0], "told once, before it reconnected"
        with contextlib.suppress(StopAsyncIteration):
            await tracks.aclose()


async def test_a_publish_only_token_still_publishes(sfu_running):
    grants = {"subscribe": False, "data": False}
    async with (
        Bot.connect(sfu_running.url, sfu_running.token("m", "camera", grants=grants)) as camera,
        Bot.connect(sfu_running.url, sfu_running.token("m", "viewer")) as viewer,
    ):
        assert camera.media_available
        await camera.publish(PatternVideoTrack(160, 120, 15))
        async with asyncio.timeout(15):
            track = await anext(viewer.tracks())
        assert track.identity == "camera"
        await pattern_counters(track, 3)


async def test_a_subscriber_connection_dropped_by_the_sfu_is_rebuilt(sfu_running):
    token = sfu_running.token
    async with (
        Bot.connect(sfu_running.url, token("m", "pattern")) as publisher,
        Bot.connect(sfu_running.url, token("m", "viewer"), backoff=(0.1, 1.0)) as viewer,
    ):
        await publisher.publish(PatternVideoTrack(160, 120, 15))
        tracks = viewer.tracks()
        async with asyncio.timeout(15):
            first = await anext(tracks)
        await pattern_counters(first, 3)
        await sfu_running.server.media.subscriber("m", "viewer").close()  # as if the SFU gave up on it
        async with asyncio.timeout(20):
            second = await anext(tracks)
        await pattern_counters(second, 3)
        assert viewer.reconnects == 1 and first.ended and second.identity == "pattern"


async def test_a_refused_publication_is_not_retried_after_a_reconnect(sfu_running):
    token = sfu_running.token("m", "viewer", grants={"publish": False})
    async with Bot.connect(sfu_running.url, token, backoff=(0.1, 1.0)) as bot:
        with pytest.raises(BotError) as error:
            await bot.publish(PatternVideoTrack(160, 120, 15))
        assert error.value.code == "forbidden"
        reconnected = asyncio.Event()
        bot.on_reconnect(lambda _: reconnected.set())
        sid = next(iter(sfu_running.server.sockets.connections))
        await sfu_running.server.sio.disconnect(sid)
        await asyncio.wait_for(reconnected.wait(), 10)  # republishing it would be refused: fatal
        assert not bot.closed.is_set() and bot.error is None
