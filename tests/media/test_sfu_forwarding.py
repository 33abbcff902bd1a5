"""Media through the SFU between real aiortc peers over real signaling."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from roomwire.media.sources import PatternVideoTrack, ToneAudioTrack

pytestmark = pytest.mark.timeout(60)


def in_order_share(counters: list[int]) -> float:
    """Share of the frames between the first and last received counter that arrived, in order."""
    assert counters == sorted(counters), "frames arrived out of order"
    assert len(set(counters)) == len(counters), "a frame arrived twice"
    return len(counters) / (counters[-1] - counters[0] + 1)


async def test_video_and_audio_are_forwarded_without_loss(sfu_server, peers):
    alice = await peers("alice")
    bob = await peers("bob")
    video, tone = PatternVideoTrack(), ToneAudioTrack()
    ack = await alice.publish([video, tone])
    assert ack["ok"], ack
    assert (await bob.subscribe())["ok"]
    await bob.wait_video_frames(1, timeout=10)
    await asyncio.sleep(3)
    received = bob.video()
    assert received is not None
    assert len(received.counters) >= 60
    assert in_order_share(received.counters) >= 0.9
    audio = [r for r in bob.received.values() if r.track.kind == "audio"]
    assert audio and audio[0].frames > 50
    # presence knows alice's tracks, and bob's offer mapped them
    kinds = sorted(t["kind"] for t in bob.track_maps[-1])
    assert kinds == ["audio", "video"]
    assert {t["identity"] for t in bob.track_maps[-1]} == {"alice"}
    sids = {t.sid for t in sfu_server.server.media.tracks("media")}
    assert {t["sid"] for t in bob.track_maps[-1]} == sids
    # forwarded packet by packet: bob's streams sent RTP, and so did nothing else
    sfu = sfu_server.server.media
    streams = sfu.subscriber("media", "bob").media.streams
    assert sorted(s.kind for s in streams) == ["audio", "video"]
    assert all(s.packets_sent > 0 for s in streams)
    assert sfu.stats.forwarded_packets["video"] == next(s.packets_sent for s in streams if s.kind == "video")
    # and /metrics says so
    async with aiohttp.ClientSession() as http, http.get(sfu_server.url + "/metrics") as response:
        metrics = {
            line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
            for line in (await response.text()).splitlines()
            if line.startswith("roomwire_media_")
        }
    assert metrics['roomwire_media_forwarded_packets_total{kind="video"}'] > 100
    assert metrics['roomwire_media_forwarded_bytes_total{kind="audio"}'] > 0
    assert metrics['roomwire_media_published_tracks{kind="video"}'] == 1
    assert metrics['roomwire_media_subscriptions{kind="audio"}'] == 1
    assert metrics["roomwire_media_paused_video_subscriptions"] == 0
    assert metrics["roomwire_media_keyframes_requested_total"] >= 1


async def test_h264_is_forwarded_as_h264(sfu_server, peers):
    alice = await peers("alice")
    bob = await peers("bob")
    assert (await bob.subscribe())["ok"]
    assert (await alice.publish([PatternVideoTrack()], video_codec="video/H264"))["ok"]
    received = await bob.wait_video_frames(30)
    assert in_order_share(received.counters) >= 0.9
    [track] = sfu_server.server.media.tracks("media")
    assert track.mime_type == "video/h264"
    assert "H264/90000" in bob.subscriber.remoteDescription.sdp
    assert "VP8/90000" not in bob.subscriber.remoteDescription.sdp  # egress pinned to the publisher's codec
