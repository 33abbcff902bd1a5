"""Sinks through the real SFU: recording a pattern bot to a file, counting frames, echoing back."""

from __future__ import annotations

import asyncio

import av
import pytest
from roomwire.media.bot import Bot
from roomwire.media.bot.sinks import Echo, FrameCounter, Recorder
from roomwire.media.sfu import SFU
from roomwire.media.sources import PatternVideoTrack, ToneAudioTrack, read_frame_counter

from tests.media.sfu_peer import wait_until

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
async def sfu_running(make_server):
    return await make_server(media=SFU(ice_servers=[]))


def decodable(path) -> tuple[int, float, list[int]]:
    """(video frames, audio seconds, pattern counters) decoded from a recorded file."""
    video = samples = 0
    counters: list[int] = []
    with av.open(str(path)) as container:
        for frame in container.decode(*container.streams):
            if isinstance(frame, av.VideoFrame):
                video += 1
                counter = read_frame_counter(frame)
                if counter is not None:
                    counters.append(counter)
            else:
                samples += frame.samples
    return video, samples / 48000, counters


@pytest.mark.parametrize("media_format", ["webm", "mp4"])
async def test_recorder_records_three_seconds_of_a_pattern_bot(sfu_running, tmp_path, media_format):
    token = sfu_running.token
    async with (
        Bot.connect(sfu_running.url, token("m", "pattern")) as pattern,
        Bot.connect(sfu_running.url, token("m", "recorder")) as recorder_bot,
    ):
        recorder = Recorder(tmp_path, media_format).attach(recorder_bot)
        await pattern.publish(PatternVideoTrack(320, 240, 30), ToneAudioTrack())
        await wait_until(lambda: bool(recorder.recordings and recorder.recordings["pattern"].frames["video"]), 20)
        await asyncio.sleep(3)
        files = await recorder.close()
    assert files == [tmp_path / f"pattern.{media_format}"]
    video, audio_seconds, counters = decodable(files[0])
    assert video >= 60 and audio_seconds >= 1.5
    assert len(counters) >= 60 and counters == sorted(counters)


async def test_frame_counter_reports_rates_per_track(sfu_running):
    token = sfu_running.token
    async with (
        Bot.connect(sfu_running.url, token("m", "pattern")) as pattern,
        Bot.connect(sfu_running.url, token("m", "counter")) as counter_bot,
    ):
        counter = FrameCounter().attach(counter_bot)
        await pattern.publish(PatternVideoTrack(160, 120, 20), ToneAudioTrack())
        await counter_bot.wait_until(lambda b: len(b.remote_tracks) == 2, timeout=15)
        await asyncio.sleep(1.5)
        counter.rates()
        await asyncio.sleep(2)
        rates = {track.kind: rate for track, rate in counter.rates().items()}
        assert 10 < rates["video"] < 30 and 35 < rates["audio"] < 65
        await counter.close()


async def test_echo_returns_a_participants_camera_but_ignores_bots(sfu_running):
    token = sfu_running.token
    async with (
        Bot.connect(sfu_running.url, token("m", "echo")) as echo_bot,
        Bot.connect(sfu_running.url, token("m", "other-bot")) as other_bot,
    ):
        echo = Echo(echo_bot)
        await other_bot.publish(PatternVideoTrack(160, 120, 15))
        await echo_bot.wait_until(lambda b: len(b.remote_tracks) == 1, timeout=15)
        await asyncio.sleep(0.5)
        assert echo.relays["video"].following is None  # a bot: not echoed

        # a participant that is not a bot: a plain Socket.IO client publishing through the SFU
        from tests.media.sfu_peer import SfuPeer

        person = SfuPeer("person")
        try:
            await person.join(sfu_running.url, token("m", "person"))
            await person.subscribe()
            assert (await person.publish([PatternVideoTrack(160, 120, 15)]))["ok"]

            def echoed_frames() -> int:
                latest = person.track_maps[-1] if person.track_maps else []  # no offer yet
                echo_mids = {t["mid"] for t in latest if t["identity"] == "echo"}
                return max((len(r.counters) for mid, r in person.received.items() if mid in echo_mids), default=0)

            await wait_until(lambda: echoed_frames() >= 10, 20)
            assert echo.relays["video"].following.identity == "person"
        finally:
            await person.close()


async def test_a_participants_file_is_finished_when_it_leaves(sfu_running, tmp_path):
    token = sfu_running.token
    async with Bot.connect(sfu_running.url, token("m", "recorder")) as recorder_bot:
        recorder = Recorder(tmp_path).attach(recorder_bot)
        for n in range(2):  # the same participant twice: two files
            async with Bot.connect(sfu_running.url, token("m", "pattern")) as pattern:
                await pattern.publish(PatternVideoTrack(160, 120, 30))
                await wait_until(
                    lambda: "pattern" in recorder.recordings and recorder.recordings["pattern"].frames["video"] > 10,
                    20,
                )
            await wait_until(lambda count=n + 1: len(recorder.finished) == count, 20)
        assert recorder.finished == [tmp_path / "pattern.webm", tmp_path / "pattern-2.webm"]
        for path in recorder.finished:
            video, _, counters = decodable(path)
            assert video > 10 and counters == sorted(counters)
        assert await recorder.close() == recorder.finished
