"""What a bot does with the tracks it subscribes to: count frames, record, echo back.

Each sink takes `RemoteTrack`s (`sink.add(track)`, or `sink.attach(bot)` for every track the
bot gets) and reads their decoded frames.

`Recorder` writes one file per participant (WebM: VP8 + Opus, or MP4: H.264 + AAC). A
container needs all its streams before the first packet, so a participant's file opens once
its tracks have had `gather` seconds to arrive and its first video frame gave the size;
frames are stamped with the wall clock, so a track that comes back after a reconnect carries
on in the same stream. Encoding runs in one worker thread per file, so the bot's event loop
keeps up and a file is never touched by two threads at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import logging
import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import av
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from .tracks import RemoteTrack

if TYPE_CHECKING:
    from roomwire.media.bot import Bot

log = logging.getLogger("roomwire.media.bot.sinks")

FORMATS = {  # format -> (video encoder, its options, audio encoder)
    "webm": ("libvpx", {"deadline": "realtime", "cpu-used": "8", "b": "1M"}, "libopus"),
    "mp4": ("libx264", {"preset": "ultrafast", "tune": "zerolatency"}, "aac"),
}
MS = fractions.Fraction(1, 1000)
VIDEO_CLOCK = fractions.Fraction(1, 90000)
RECORD_QUEUE = 600  # frames waiting to be encoded, per participant (~10 s of audio + video)


async def _frames(track: MediaStreamTrack) -> Any:
    """The track's frames until it ends."""
    with contextlib.suppress(MediaStreamError):
        while True:
            yield await track.recv()


class FrameCounter:
    """Frames per second of every track it is given, from `RemoteTrack.frames`.

    A track has one reader: with `consume=True` (the default) the counter reads the tracks
    itself; with `consume=False` another sink (a Recorder, an Echo) reads them and the counter
    only watches.
    """

    def __init__(self, consume: bool = True) -> None:
        self.consume = consume
        self.tracks: list[RemoteTrack] = []
        self._last: dict[RemoteTrack, tuple[int, float]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def attach(self, bot: Bot) -> FrameCounter:
        bot.on_track(self.add)
        return self

    def add(self, track: RemoteTrack) -> None:
        self.tracks.append(track)
        self._last[track] = (track.frames, time.monotonic())
        if self.consume:
            task = asyncio.ensure_future(self._drain(track))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _drain(self, track: RemoteTrack) -> None:
        async for _ in _frames(track):
            pass

    def rates(self) -> dict[RemoteTrack, float]:
        """Frames per second of each live track since the previous call."""
        now = time.monotonic()
        rates = {}
        for track in self.tracks:
            then_count, then = self._last[track]
            self._last[track] = (track.frames, now)
            if not track.ended:
                rates[track] = (track.frames - then_count) / max(now - then, 1e-6)
        self.tracks = [t for t in self.tracks if not t.ended]
        return rates

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


class _Recording:
    """One participant's file."""

    def __init__(self, path: Path, media_format: str, gather: float) -> None:
        self.path = path
        self.format = media_format
        self.kinds: set[str] = set()
        # unbounded so the end marker always fits; `offer` enforces the bound
        self.queue: asyncio.Queue[tuple[str, Any, float] | None] = asyncio.Queue()
        self.dropped = 0
        self.frames = {"audio": 0, "video": 0}
        self._container: Any = None
        self._streams: dict[str, Any] = {}
        self._start = 0.0
        self._last_video_pts = -1
        self._samples = 0
        self._gather = gather
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="recorder")
        self.writer = asyncio.ensure_future(self._write_all())

    def offer(self, kind: str, frame: Any) -> None:
        if self.queue.qsize() >= RECORD_QUEUE:
            self.dropped += 1
        else:
            self.queue.put_nowait((kind, frame, time.monotonic()))

    async def end(self) -> None:
        """Encode what is queued and close the file."""
        self.queue.put_nowait(None)
        await asyncio.shield(self.writer)  # whoever waits may be cancelled; the file still gets finished

    async def _write_all(self) -> None:
        loop = asyncio.get_running_loop()
        await asyncio.sleep(self._gather)
        pending: list[tuple[str, Any, float]] = []
        try:
            while (item := await self.queue.get()) is not None:
                if self._container is None:
                    pending.append(item)
                    if "video" in self.kinds and item[0] != "video" and len(pending) < RECORD_QUEUE:
                        continue  # the video size comes with the first video frame
                    await loop.run_in_executor(self._thread, self._open, pending)
                    items, pending = pending, []
                else:
                    items = [item]
                for kind, frame, at in items:
                    await loop.run_in_executor(self._thread, self._write, kind, frame, at)
        except Exception:  # a broken encoder or a full disk ends this file, not the bot
            log.exception("recording to %s failed", self.path)
        finally:
            if self._container is not None:
                # queued behind any write still running (a cancelled writer leaves one behind):
                # the file is only ever touched from this one thread
                finishing = loop.run_in_executor(self._thread, self._finish)
                self._thread.shutdown(wait=False)
                await asyncio.shield(finishing)

    def _open(self, pending: list[tuple[str, Any, float]]) -> None:
        video_codec, options, audio_codec = FORMATS[self.format]
        self._container = av.open(str(self.path), "w")
        self._start = pending[0][2]
        frame = next((frame for kind, frame, _ in pending if kind == "video"), None)
        if frame is not None:  # else no video came for a long while: record the audio alone
            video = self._streams["video"] = self._container.add_stream(video_codec, rate=30, options=options)
            video.width, video.height, video.pix_fmt = frame.width, frame.height, "yuv420p"
            video.codec_context.time_base = MS
        if "audio" in self.kinds:
            audio = self._streams["audio"] = self._container.add_stream(audio_codec, rate=48000)
            audio.layout = "stereo"

    def _write(self, kind: str, frame: Any, at: float) -> None:
        stream = self._streams.get(kind)
        if stream is None:
            return  # a kind that arrived after the file was opened
        if kind == "video":
            if frame.width != stream.width or frame.height != stream.height or frame.format.name != "yuv420p":
                frame = frame.reformat(width=stream.width, height=stream.height, format="yuv420p")
            pts = max(round((at - self._start) * 1000), self._last_video_pts + 1)
            self._last_video_pts = pts
            frame.pts, frame.time_base = pts, MS
        else:
            frame.pts, frame.time_base = self._samples, fractions.Fraction(1, frame.sample_rate)
            self._samples += frame.samples
        self._container.mux(stream.encode(frame))
        self.frames[kind] += 1

    def _finish(self) -> None:
        for stream in self._streams.values():
            self._container.mux(stream.encode(None))
        self._container.close()


class Recorder:
    """Records each participant to `{directory}/{identity}.{format}` (format "webm" or "mp4").

    A participant's file is finished when it leaves; if it comes back, it gets a new file
    (`{identity}-2.{format}`).
    """

    def __init__(self, directory: str | Path, media_format: str = "webm", gather: float = 0.5) -> None:
        if media_format not in FORMATS:
            raise ValueError(f"format must be one of {', '.join(FORMATS)}")
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.format = media_format
        self.gather = gather
        self.recordings: dict[str, _Recording] = {}  # by identity: the files being written
        self.finished: list[Path] = []
        self._readers: set[asyncio.Task[None]] = set()

    def attach(self, bot: Bot) -> Recorder:
        bot.on_track(self.add)
        bot.on_leave(lambda participant: self.finish(participant.get("identity", "")))
        return self

    def add(self, track: RemoteTrack) -> None:
        recording = self.recordings.get(track.identity)
        if recording is None:
            recording = self.recordings[track.identity] = _Recording(
                self._new_path(track.identity), self.format, self.gather
            )
        recording.kinds.add(track.kind)
        reader = asyncio.ensure_future(self._read(track, recording))
        self._readers.add(reader)
        reader.add_done_callback(self._readers.discard)

    def _new_path(self, identity: str) -> Path:
        name = re.sub(r"[^A-Za-z0-9_-]", "_", identity)
        path, n = self.directory / f"{name}.{self.format}", 1
        while path.exists() or path in self.finished:
            n += 1
            path = self.directory / f"{name}-{n}.{self.format}"
        return path

    async def _read(self, track: RemoteTrack, recording: _Recording) -> None:
        async for frame in _frames(track):
            recording.offer(track.kind, frame)

    async def finish(self, identity: str) -> Path | None:
        """Finish one participant's file (called when it leaves); returns it if it was written."""
        recording = self.recordings.pop(identity, None)
        if recording is None:
            return None
        await recording.end()
        if not recording.path.exists():
            return None
        self.finished.append(recording.path)
        return recording.path

    @property
    def files(self) -> list[Path]:
        return self.finished + [r.path for r in self.recordings.values()]

    async def close(self) -> list[Path]:
        """Stop reading, encode what is queued, and close every file; returns the files written."""
        for reader in list(self._readers):
            reader.cancel()
        await asyncio.gather(*self._readers, return_exceptions=True)
        await asyncio.gather(*(self.finish(identity) for identity in list(self.recordings)))
        return list(self.finished)


class RelayTrack(MediaStreamTrack):
    """Frames of whichever remote track it follows now, restamped so a switch stays seamless."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self.following: RemoteTrack | None = None
        self._changed = asyncio.Event()
        self._start: float | None = None
        self._samples = 0

    def follow(self, track: RemoteTrack) -> None:
        self.following = track
        self._changed.set()

    async def recv(self) -> Any:
        while True:
            source = self.following
            if source is None or source.ended:
                self._changed.clear()
                await self._changed.wait()
                continue
            try:
                frame = await source.recv()
            except MediaStreamError:
                continue  # it ended: wait for the next one to follow
            return self._restamp(frame)

    def _restamp(self, frame: Any) -> Any:
        if self.kind == "video":
            now = time.monotonic()
            if self._start is None:
                self._start = now
            frame.pts, frame.time_base = round((now - self._start) * 90000), VIDEO_CLOCK
        else:
            frame.pts, frame.time_base = self._samples, fractions.Fraction(1, frame.sample_rate)
            self._samples += frame.samples
        return frame


class Echo:
    """Publishes back the camera and microphone of the latest participant who is not a bot
    (bots echoing bots would feed each other forever)."""

    def __init__(self, bot: Bot, *, echo_bots: bool = False) -> None:
        self.bot = bot
        self.echo_bots = echo_bots
        self.relays = {"video": RelayTrack("video"), "audio": RelayTrack("audio")}
        self._published: set[str] = set()
        bot.on_track(self.add)

    async def add(self, track: RemoteTrack) -> None:
        participant = self.bot.participants.get(track.identity, {})
        if participant.get("transport") == "bot" and not self.echo_bots:
            return
        relay = self.relays.get(track.kind)
        if relay is None:
            return
        relay.follow(track)
        if track.kind not in self._published:
            self._published.add(track.kind)
            await self.bot.publish(relay, source=track.source)
