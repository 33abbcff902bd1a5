"""FileSource: passthrough of VP8/H.264/Opus packets, decoding of the rest, looping, and a bot
playing a file through the real SFU."""

from __future__ import annotations

import asyncio
import math
from array import array
from pathlib import Path

import av
import pytest
from roomwire.media.bot import Bot
from roomwire.media.file_source import FileSource
from roomwire.media.sfu import SFU
from roomwire.media.sources import PatternVideoTrack, read_frame_counter

from tests.media.frames import pattern_counters

pytestmark = pytest.mark.timeout(90)

CODECS = {  # container suffix -> (video encoder, options, audio encoder)
    ".webm": ("libvpx", {"deadline": "realtime", "cpu-used": "8"}, "libopus"),
    ".mp4": ("libx264", {"profile": "baseline", "preset": "ultrafast"}, "aac"),
    ".mkv": ("mpeg4", {}, "mp2"),
}


def write_clip(path: Path, seconds: float = 2.0, fps: int = 30, size: tuple[int, int] = (320, 240)) -> Path:
    """A clip of the counter pattern (a keyframe every second) and a 440 Hz tone."""
    video_codec, options, audio_codec = CODECS[path.suffix]
    pattern = PatternVideoTrack(*size, fps=fps)
    with av.open(str(path), "w") as container:
        video = container.add_stream(video_codec, rate=fps, options=options)
        video.width, video.height, video.pix_fmt = size[0], size[1], "yuv420p"
        video.codec_context.gop_size = fps
        audio = container.add_stream(audio_codec, rate=48000)
        audio.layout = "stereo" if audio_codec == "mp2" else "mono"
        for i in range(int(seconds * fps)):
            frame = pattern.make_frame(i)
            frame.pts = i
            container.mux(video.encode(frame))
        samples = array("h", (int(8000 * math.sin(2 * math.pi * 440 * n / 48000)) for n in range(960)))
        for i in range(int(seconds * 50)):
            chunk = av.AudioFrame(format="s16", layout="mono", samples=960)
            chunk.planes[0].update(samples.tobytes())
            chunk.sample_rate, chunk.pts = 48000, i * 960
            container.mux(audio.encode(chunk))
        container.mux(video.encode(None))
        container.mux(audio.encode(None))
    return path


async def read_items(track, count: int) -> list:
    async with asyncio.timeout(10):
        return [await track.recv() for _ in range(count)]


async def test_webm_vp8_and_opus_pass_through_without_decoding(tmp_path):
    source = FileSource(write_clip(tmp_path / "clip.webm"), loop=False)
    assert source.video.passthrough_mime_type == "video/VP8"
    assert source.audio.passthrough_mime_type == "audio/opus"
    packets = await read_items(source.video, 10)
    assert all(isinstance(p, av.Packet) for p in packets)
    times = [float(p.pts * p.time_base) for p in packets]
    assert times == sorted(times) and 0.25 < times[-1] - times[0] < 0.35  # 9 frame intervals at 30 fps
    assert all(isinstance(p, av.Packet) for p in await read_items(source.audio, 5))
    for track in source.tracks:
        track.stop()


async def test_mp4_h264_baseline_passes_through_as_annex_b_and_aac_is_decoded(tmp_path):
    source = FileSource(write_clip(tmp_path / "clip.mp4"), loop=False)
    assert source.video.passthrough_mime_type == "video/H264" and source.audio.passthrough_mime_type is None
    first = (await read_items(source.video, 1))[0]
    assert bytes(first).startswith((b"\x00\x00\x00\x01", b"\x00\x00\x01"))  # Annex B, not avcC
    frames = await read_items(source.audio, 5)
    assert all(isinstance(f, av.AudioFrame) and f.sample_rate == 48000 and f.samples == 960 for f in frames)
    assert [f.pts for f in frames] == [0, 960, 1920, 2880, 3840]
    for track in source.tracks:
        track.stop()


async def test_other_codecs_are_decoded_and_carry_the_pattern(tmp_path):
    source = FileSource(write_clip(tmp_path / "clip.mkv"), loop=False)
    assert source.video.passthrough_mime_type is None and source.audio.passthrough_mime_type is None
    frames = await read_items(source.video, 5)
    assert [read_frame_counter(f) for f in frames] == [0, 1, 2, 3, 4]
    for track in source.tracks:
        track.stop()


async def test_looping_keeps_timestamps_increasing_and_the_end_ends_tracks(tmp_path):
    path = write_clip(tmp_path / "short.webm", seconds=0.5)
    looping = FileSource(path, loop=True)
    packets = await read_items(looping.video, 25)  # 15 frames a pass
    pts = [p.pts for p in packets]
    assert pts == sorted(pts) and len(set(pts)) == len(pts)
    for track in looping.tracks:
        track.stop()

    once = FileSource(path, loop=False)
    from aiortc.mediastreams import MediaStreamError

    with pytest.raises(MediaStreamError):
        await read_items(once.video, 100)
    await asyncio.wait_for(once.finished.wait(), 5)


def test_a_file_without_media_is_refused(tmp_path):
    text = tmp_path / "notes.srt"
    text.write_text("1\n00:00:00,000 --> 00:00:01,000\nhello\n")
    with pytest.raises(ValueError, match="no audio or video"):
        FileSource(text)


@pytest.mark.parametrize(
    ("suffix", "mime_types"), [(".webm", {"video/vp8", "audio/opus"}), (".mp4", {"video/h264", "audio/opus"})]
)
async def test_bot_plays_a_file_through_the_sfu(make_server, tmp_path, suffix, mime_types):
    server = await make_server(media=SFU(ice_servers=[]))
    clip = write_clip(tmp_path / f"clip{suffix}", seconds=1.0)
    async with (
        Bot.connect(server.url, server.token("m", "player")) as player,
        Bot.connect(server.url, server.token("m", "viewer")) as viewer,
    ):
        await player.publish(FileSource(clip, loop=True))
        async with asyncio.timeout(15):
            video = await anext(t async for t in viewer.tracks() if t.kind == "video")
        counters = await pattern_counters(video, 10)
        assert len(set(counters)) >= 5  # real frames of the clip, decoded by the viewer
        published = server.server.media.tracks("m")
        assert {t.mime_type for t in published} == mime_types
