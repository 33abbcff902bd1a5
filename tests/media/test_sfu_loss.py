"""Loss and congestion through the SFU, injected in a UDP relay between one peer and the server
(there is no netem here): real aiortc peers, a real recording bot, the real SFU."""

from __future__ import annotations

import asyncio
import random

import av
import pytest
from roomwire.media.bot import Bot
from roomwire.media.bot.sinks import Recorder
from roomwire.media.sources import PatternVideoTrack, ToneAudioTrack, read_frame_counter

from tests.media.sfu_peer import wait_until
from tests.media.udp_relay import is_rtcp, is_rtp, rtp_seq, rtp_ssrc, ssrcs

pytestmark = pytest.mark.timeout(90)


def longest_freeze(times: list[float], after: float) -> float:
    """The longest wait between two decoded frames, from the last one before `after` on."""
    start = max((i for i, t in enumerate(times) if t <= after), default=0)
    return max((b - a for a, b in zip(times[start:], times[start + 1 :], strict=False)), default=float("inf"))


async def test_three_unrecoverable_video_packets_freeze_no_subscriber_for_half_a_second(sfu_server, peers, relays):
    relay = await relays()
    alice = await peers("alice", publisher_relay=relay)
    subscribers = [await peers(name) for name in ("bob", "carol", "dave")]
    for subscriber in subscribers:
        assert (await subscriber.subscribe())["ok"]
    assert (await alice.publish([PatternVideoTrack(), ToneAudioTrack()]))["ok"]
    video_ssrc, rtx_ssrc = ssrcs(alice.publisher.localDescription.sdp, "video")
    for subscriber in subscribers:
        await subscriber.wait_video_frames(30)

    loop = asyncio.get_running_loop()
    lost: list[int] = []
    repairs_dropped_until: list[float] = []

    def drop(data: bytes) -> bool:
        if not is_rtp(data):
            return False
        if rtp_ssrc(data) == video_ssrc and len(lost) < 3:
            lost.append(rtp_seq(data))
            repairs_dropped_until[:] = [loop.time() + 2]
            return True
        # every retransmission while the loss is fresh: the three are gone for good
        return rtp_ssrc(data) == rtx_ssrc and bool(repairs_dropped_until) and loop.time() < repairs_dropped_until[0]

    sfu = sfu_server.server.media
    plis_before = sfu.stats.plis_sent
    relay.drop_to_server = drop
    await wait_until(lambda: len(lost) == 3)
    lost_at = loop.time()
    await asyncio.sleep(3)
    assert lost == [lost[0], (lost[0] + 1) & 0xFFFF, (lost[0] + 2) & 0xFFFF]
    assert sfu.stats.unrepaired == 3, "the SFU gave up on exactly the three"
    assert sfu.stats.nacks_sent >= 6, "and asked for them more than once first"
    assert sfu.stats.plis_sent > plis_before
    for subscriber in subscribers:
        video = subscriber.video()
        freeze = longest_freeze(video.counted_at, lost_at)
        assert freeze < 0.5, f"{subscriber.identity} froze for {freeze:.2f} s"
        assert video.counted_at[-1] > lost_at + 2.5, f"{subscriber.identity} stopped getting frames"


def recorded_counters(path) -> set[int]:
    """The pattern counters of the video frames decoded from a recorded file."""
    with av.open(str(path)) as container:
        return {c for c in map(read_frame_counter, container.decode(video=0)) if c is not None}


async def test_with_two_percent_random_loss_a_recording_bot_decodes_nine_frames_in_ten(
    sfu_server, peers, relays, tmp_path
):
    relay = await relays()
    alice = await peers("alice", publisher_relay=relay)
    video = PatternVideoTrack(320, 240)  # small: the machine's CPU must not be what drops frames
    async with Bot.connect(sfu_server.url, sfu_server.token("media", "recorder")) as bot:
        recorder = Recorder(tmp_path).attach(bot)
        assert (await alice.publish([video, ToneAudioTrack()]))["ok"]
        await wait_until(lambda: "alice" in recorder.recordings and recorder.recordings["alice"].frames["video"] > 30)
        [decoded] = [track for track in bot.remote_tracks if track.kind == "video"]
        lossless_from = decoded.frames
        await asyncio.sleep(6)
        lossy_from, sent_before_loss = decoded.frames, video.frames_sent
        losses = random.Random(2)
        relay.drop_to_server = relay.drop_to_peer = lambda data: (
            (is_rtp(data) or is_rtcp(data)) and losses.random() < 0.02
        )
        await asyncio.sleep(6)
        lossy_to, sent_after_loss = decoded.frames, video.frames_sent
        relay.drop_to_server = relay.drop_to_peer = lambda data: False
        [path] = await recorder.close()
    assert relay.dropped >= 5, "the relay did lose packets"
    assert sfu_server.server.media.stats.nacks_sent > 0
    lossless, lossy = lossy_from - lossless_from, lossy_to - lossy_from
    assert lossless > 120  # of 180 sent
    assert lossy >= 0.9 * lossless, (lossy, lossless)
    recorded = recorded_counters(path)
    assert any(sent_before_loss <= c < sent_after_loss for c in recorded), "the lossy part is in the file too"


async def test_a_subscribers_lost_packets_are_resent_from_the_cache(sfu_server, peers, relays):
    relay = await relays()
    alice = await peers("alice")
    bob = await peers("bob", subscriber_relay=relay)
    assert (await bob.subscribe())["ok"]
    assert (await alice.publish([PatternVideoTrack()]))["ok"]
    await bob.wait_video_frames(10)
    losses = random.Random(3)
    relay.drop_to_peer = lambda data: is_rtp(data) and losses.random() < 0.03
    counted = len(bob.video().counters)
    await asyncio.sleep(6)
    stats = sfu_server.server.media.stats
    assert stats.nacks_received > 0 and stats.nacks_answered > 0
    received = bob.video().counters[counted:]
    assert len(received) >= 0.9 * (received[-1] - received[0] + 1), "most frames decoded despite the loss"


async def test_a_throttled_subscriber_keeps_audio_and_gets_video_back_when_the_throttle_lifts(
    sfu_server, peers, relays
):
    relay = await relays()
    alice = await peers("alice")
    bob = await peers("bob", subscriber_relay=relay)
    assert (await bob.subscribe())["ok"]
    assert (await alice.publish([PatternVideoTrack(), ToneAudioTrack()]))["ok"]
    await bob.wait_video_frames(30)
    sfu = sfu_server.server.media
    [audio] = [r for r in bob.received.values() if r.track.kind == "audio"]

    relay.throttle_to_peer(250_000)  # half the video's rate (500 kbit/s and up); above the audio's (~120)
    await wait_until(lambda: sfu.gauges().paused_video == 1, timeout=15)
    frames, counters = audio.frames, len(bob.video().counters)
    await asyncio.sleep(1.5)  # the first try to resume video comes after 2 s
    assert audio.frames - frames >= 60, "audio (50 frames/s) kept flowing while video was paused"
    assert len(bob.video().counters) - counters <= 5

    relay.throttle_to_peer(None)
    counters = len(bob.video().counters)
    await wait_until(lambda: len(bob.video().counters) > counters + 30, timeout=20)
    assert sfu.gauges().paused_video == 0
