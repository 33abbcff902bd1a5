"""The forwarding core on its own: keyframe detection, PLI rate limiting, bounded fan-out queues."""

from __future__ import annotations

import asyncio

import av
import pytest
from aiortc.mediastreams import MediaStreamError
from roomwire.media.forwarding import (
    AUDIO_QUEUE_FRAMES,
    VIDEO_QUEUE_FRAMES,
    KeyframeRequester,
    PacketFanout,
    is_keyframe,
)

pytestmark = pytest.mark.timeout(20)

VP8_KEY = b"\x10\x02\x00\x9d\x01\x2a"  # frame tag bit 0 = 0
VP8_DELTA = b"\x31\x02\x00\x00"


def packet(data: bytes, pts: int = 0) -> av.Packet:
    p = av.Packet(data)
    p.pts = pts
    return p


def test_keyframe_detection():
    assert is_keyframe("video/VP8", VP8_KEY)
    assert not is_keyframe("video/VP8", VP8_DELTA)
    assert not is_keyframe("video/VP8", b"")
    sps, pps = b"\x00\x00\x00\x01\x67\x42", b"\x00\x00\x00\x01\x68\xce"
    idr, non_idr = b"\x00\x00\x01\x65\x88\x84", b"\x00\x00\x00\x01\x41\x9a"
    assert is_keyframe("video/H264", sps + pps + idr)
    assert not is_keyframe("video/H264", non_idr)
    assert not is_keyframe("video/H264", sps + pps)
    assert is_keyframe("audio/opus", b"\x78")


class Counter:
    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self) -> None:
        self.calls += 1


async def test_keyframe_requests_are_rate_limited_but_never_lost():
    sent = Counter()
    requester = KeyframeRequester(sent, interval=0.2)
    for _ in range(20):
        requester.request()
    await asyncio.sleep(0.05)
    assert sent.calls == 1  # the first goes out at once
    await asyncio.sleep(0.25)
    assert sent.calls == 2  # the others collapse into one at the end of the interval
    await asyncio.sleep(0.3)
    assert sent.calls == 2
    requester.request()
    await requester.close()
    requester.request()
    await asyncio.sleep(0.25)
    assert sent.calls <= 3


async def test_video_subscriber_starts_at_a_keyframe_and_asks_for_one():
    sent = Counter()
    fanout = PacketFanout("video", KeyframeRequester(sent, interval=0))
    track = fanout.subscribe()
    await asyncio.sleep(0)
    assert sent.calls == 1  # attaching asks for a keyframe
    fanout.push("video/VP8", packet(VP8_DELTA, 0))
    fanout.push("video/VP8", packet(VP8_KEY, 1))
    fanout.push("video/VP8", packet(VP8_DELTA, 2))
    assert [(await track.recv()).pts, (await track.recv()).pts] == [1, 2]
    assert track.frames_dropped == 1


async def test_lagging_video_subscriber_resyncs_on_the_next_keyframe():
    sent = Counter()
    fanout = PacketFanout("video", KeyframeRequester(sent, interval=0))
    slow, fast = fanout.subscribe(), fanout.subscribe()
    fanout.push("video/VP8", packet(VP8_KEY, 0))
    assert (await slow.recv()).pts == 0
    assert (await fast.recv()).pts == 0
    for pts in range(1, VIDEO_QUEUE_FRAMES + 10):
        fanout.push("video/VP8", packet(VP8_DELTA, pts))
        assert (await fast.recv()).pts == pts  # a fast reader is never disturbed
    await asyncio.sleep(0)
    assert slow.resyncs == 1 and sent.calls >= 2
    assert len(slow._queue) == 0, "a lagging subscriber must not get deltas it cannot decode"
    fanout.push("video/VP8", packet(VP8_KEY, 1000))
    fanout.push("video/VP8", packet(VP8_DELTA, 1001))
    assert [(await slow.recv()).pts, (await slow.recv()).pts] == [1000, 1001]


async def test_audio_queue_is_bounded_and_keeps_flowing():
    fanout = PacketFanout("audio", KeyframeRequester(Counter()))
    track = fanout.subscribe()
    for pts in range(AUDIO_QUEUE_FRAMES * 3):
        fanout.push("audio/opus", packet(b"\x78\x01", pts))
    assert len(track._queue) <= AUDIO_QUEUE_FRAMES
    first = (await track.recv()).pts
    assert first >= AUDIO_QUEUE_FRAMES  # the oldest went first
    assert track.frames_dropped > 0


async def test_a_new_audio_subscriber_skips_what_queued_while_it_connected():
    fanout = PacketFanout("audio", KeyframeRequester(Counter()))
    track = fanout.subscribe()
    for pts in range(20):
        fanout.push("audio/opus", packet(b"\x78\x01", pts))
    assert [(await track.recv()).pts for _ in range(3)] == [17, 18, 19]


async def test_queue_is_bounded_in_bytes_for_a_flooding_publisher():
    fanout = PacketFanout("video", KeyframeRequester(Counter(), interval=0))
    track = fanout.subscribe()
    big = VP8_KEY + bytes(1024 * 1024)
    for pts in range(20):
        fanout.push("video/VP8", packet(big, pts))
        assert track._queued_bytes <= 4 * 1024 * 1024 + len(big)


async def test_end_and_stop():
    fanout = PacketFanout("video", KeyframeRequester(Counter()))
    track = fanout.subscribe()
    waiting = asyncio.ensure_future(track.recv())
    await asyncio.sleep(0)
    fanout.end()
    with pytest.raises(MediaStreamError):
        await waiting
    assert fanout.subscribers == 0
    late = fanout.subscribe()
    with pytest.raises(MediaStreamError):
        await late.recv()

    fanout = PacketFanout("video", KeyframeRequester(Counter()))
    track = fanout.subscribe()
    track.stop()
    assert fanout.subscribers == 0
    with pytest.raises(MediaStreamError):
        await track.recv()
