"""Play a media file as WebRTC tracks, without decoding when the codec allows.

A stream that WebRTC can carry as-is (VP8, H.264 Constrained Baseline, Opus) is passed through:
its packets become `av.Packet`s that aiortc packs into RTP (`codec.pack()`) with no decoding or
encoding, as aiortc's `MediaPlayer(decode=False)` does. A track that passes packets through
says so in `passthrough_mime_type`, so the publisher offers exactly that codec. Any other
stream is decoded, and aiortc encodes the frames.

One reader task demuxes (in its own worker thread, so the event loop never blocks on the file),
paces packets to the wall clock, and hands them to the tracks' queues; a track nobody reads
just drops its oldest items. With `loop=True` the file restarts at its end with timestamps
that keep increasing.
"""

from __future__ import annotations

import asyncio
import fractions
import logging
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import av
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

log = logging.getLogger("roomwire.media.file")

PASSTHROUGH = {"vp8": "video/VP8", "h264": "video/H264", "opus": "audio/opus"}
BASELINE_PROFILES = ("Baseline", "Constrained Baseline")  # what aiortc's H.264 SDP announces
AUDIO_RATE = 48000
AUDIO_TIME_BASE = fractions.Fraction(1, AUDIO_RATE)
QUEUE_ITEMS = 50
MAX_LEAD = 0.05  # hand items over this much ahead of their time, to absorb scheduling jitter


class FileTrack(MediaStreamTrack):
    """One stream of a `FileSource`: `av.Packet`s when passing through, else decoded frames."""

    def __init__(self, source: FileSource, kind: str, passthrough_mime_type: str | None) -> None:
        super().__init__()
        self.kind = kind
        self.passthrough_mime_type = passthrough_mime_type
        self._source = source
        self.queue: asyncio.Queue[Any] = asyncio.Queue(QUEUE_ITEMS)

    async def recv(self) -> Any:
        if self.readyState != "live":
            raise MediaStreamError
        self._source.start()
        item = await self.queue.get()
        if item is None:  # the file ended
            raise MediaStreamError
        return item

    def offer(self, item: Any) -> None:
        if self.queue.full():
            self.queue.get_nowait()  # nobody keeps up with this track: drop the oldest
        self.queue.put_nowait(item)

    def stop(self) -> None:
        super().stop()
        self._source.track_stopped()


class _Stream:
    """Per-stream state: the track it feeds, its decoder path, its timestamps."""

    def __init__(self, stream: Any, track: FileTrack) -> None:
        self.stream = stream
        self.track = track
        self.time_base = stream.time_base
        self.first_pts: int | None = None
        self.end = 0.0  # seconds: the end of the last item in this pass
        self.filter: Any = None
        self.resampler: Any = None
        self.samples = 0
        if track.passthrough_mime_type == "video/H264" and (stream.codec_context.extradata or b"")[:1] == b"\x01":
            # MP4 stores H.264 length-prefixed (avcC); RTP packing wants Annex B start codes
            self.filter = av.bitstream.BitStreamFilterContext("h264_mp4toannexb", stream)
        if track.kind == "audio" and track.passthrough_mime_type is None:
            self.resampler = av.AudioResampler(format="s16", layout="stereo", rate=AUDIO_RATE, frame_size=960)


class FileSource:
    """A file's first audio and first video stream as tracks (`.audio`, `.video`, `.tracks`).

    `decode=None` passes through whatever can be, `True` always decodes. Raises ValueError for a
    file with no audio or video, OSError / av.FFmpegError for a file av cannot open.
    """

    def __init__(self, path: str | Path, *, loop: bool = True, decode: bool | None = None) -> None:
        self.path = str(path)
        self.loop = loop
        self._container = av.open(self.path)
        self._streams: dict[int, _Stream] = {}
        self.audio: FileTrack | None = None
        self.video: FileTrack | None = None
        for stream in self._container.streams:
            if stream.type not in ("audio", "video") or getattr(self, stream.type) is not None:
                continue
            mime = None if decode else _passthrough_mime(stream)
            track = FileTrack(self, stream.type, mime)
            setattr(self, stream.type, track)
            self._streams[stream.index] = _Stream(stream, track)
        if not self._streams:
            self._container.close()
            raise ValueError(f"{self.path} has no audio or video stream")
        self._task: asyncio.Task[None] | None = None
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="file-source")
        self._stopped = 0
        self.finished = asyncio.Event()

    @property
    def tracks(self) -> list[FileTrack]:
        return [t for t in (self.video, self.audio) if t is not None]

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._read())

    def track_stopped(self) -> None:
        self._stopped += 1
        if self._stopped == len(self._streams):
            self.close()

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        else:
            self._container.close()

    async def _read(self) -> None:
        loop = asyncio.get_running_loop()
        started = time.monotonic()
        offset = 0.0  # seconds added to every timestamp: the length of the passes played so far
        try:
            while True:
                items = await loop.run_in_executor(self._thread, self._next_items, offset)
                if items is None:
                    if not self.loop:
                        break
                    offset = max(s.end for s in self._streams.values())
                    await loop.run_in_executor(self._thread, self._rewind)
                    continue
                for track, item, at in items:
                    delay = started + at - time.monotonic()
                    if delay > MAX_LEAD:
                        await asyncio.sleep(delay - MAX_LEAD)
                    track.offer(item)
        except av.FFmpegError as exc:
            log.warning("%s: stops playing: %s", self.path, exc)
        finally:
            for state in self._streams.values():
                state.track.offer(None)
            # queued behind a read that a cancellation left running: only this thread touches the file
            self._thread.submit(self._container.close)
            self._thread.shutdown(wait=False)
            self.finished.set()

    def _rewind(self) -> None:
        self._container.seek(0)
        for state in self._streams.values():
            state.first_pts = None

    def _next_items(self, offset: float) -> list[tuple[FileTrack, Any, float]] | None:
        """The next demuxed packet as track items with their play time (worker thread); None at the end."""
        for packet in self._container.demux(*(s.stream for s in self._streams.values())):
            if packet.size == 0 or packet.pts is None:
                continue  # a flush packet, or one we cannot place in time
            state = self._streams[packet.stream.index]
            if state.first_pts is None:
                state.first_pts = packet.pts
            at = offset + float((packet.pts - state.first_pts) * state.time_base)
            duration = float((packet.duration or 0) * state.time_base)
            state.end = max(state.end, at + duration)
            if state.track.passthrough_mime_type:
                items = list(_passthrough(state, packet, at))
            else:
                items = list(_decoded(state, packet, at))
            if items:
                return items
        return None


def _passthrough_mime(stream: Any) -> str | None:
    name = stream.codec_context.name
    if name == "h264" and stream.codec_context.profile not in BASELINE_PROFILES:
        return None  # a browser may refuse what aiortc's SDP does not announce: decode instead
    return PASSTHROUGH.get(name)


def _passthrough(state: _Stream, packet: av.Packet, at: float) -> Iterator[tuple[FileTrack, Any, float]]:
    packets = state.filter.filter(packet) if state.filter is not None else [packet]
    for out in packets:
        out.pts = out.dts = round(at / state.time_base)
        out.time_base = state.time_base
        yield state.track, out, at


def _decoded(state: _Stream, packet: av.Packet, at: float) -> Iterator[tuple[FileTrack, Any, float]]:
    for frame in packet.decode():
        if state.resampler is None:
            frame_at = at
            if frame.pts is not None and packet.pts is not None:
                # decoders reorder (B-frames): the frame's own pts places it in time
                frame_at += float((frame.pts - packet.pts) * state.time_base)
            frame.pts = round(max(frame_at, 0.0) / state.time_base)
            frame.time_base = state.time_base
            yield state.track, frame, frame_at
            continue
        for chunk in state.resampler.resample(frame):
            chunk.pts = state.samples
            chunk.time_base = AUDIO_TIME_BASE
            state.samples += chunk.samples
            yield state.track, chunk, at
