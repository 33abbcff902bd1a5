"""Forwarding encoded media: one fan-out per published track, one bounded queue per subscriber.

A publisher's receiver hands each complete encoded frame (an `av.Packet`) to its
`PacketFanout`, which offers it to every `ForwardedTrack`. A `ForwardedTrack` is what a
subscriber's RTCRtpSender reads: its `recv()` returns `av.Packet`s, so aiortc packs them
(`codec.pack()`) instead of encoding. Nothing here decodes or encodes.

Video can only be decoded from a keyframe on, so a video subscriber starts, and after any
overflow restarts, at the next keyframe, and asks the publisher for one. Those requests
(and the subscribers' own PLI/FIR) go through one `KeyframeRequester` per published track,
which sends at most one PLI per interval.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable

import av
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

logger = logging.getLogger(__name__)

KEYFRAME_INTERVAL = 0.3
VIDEO_QUEUE_FRAMES = 60  # 2 s at 30 fps
AUDIO_QUEUE_FRAMES = 50  # 1 s of 20 ms Opus frames
AUDIO_START_FRAMES = 3  # what a new audio subscriber keeps of what queued while it connected
QUEUE_BYTES = 4 * 1024 * 1024


def is_keyframe(mime_type: str, data: bytes) -> bool:
    """Whether a depayloaded frame can be decoded on its own."""
    mime = mime_type.lower()
    if mime == "video/vp8":
        # RFC 6386 9.1: bit 0 of the frame tag is the inverse keyframe flag
        return len(data) > 0 and data[0] & 0x01 == 0
    if mime == "video/h264":
        return _has_idr(data)
    return True  # audio: every Opus frame stands alone


def _has_idr(data: bytes) -> bool:
    """Whether an Annex-B access unit contains an IDR slice (NAL type 5)."""
    pos = data.find(b"\x00\x00\x01")
    while pos != -1 and pos + 3 < len(data):
        if data[pos + 3] & 0x1F == 5:
            return True
        pos = data.find(b"\x00\x00\x01", pos + 3)
    return False


class KeyframeRequester:
    """Sends PLIs for one published track, at most one per `interval` seconds.

    A request inside the interval is not lost: one PLI goes out when the interval ends.
    """

    def __init__(self, send: Callable[[], Awaitable[None]], interval: float = KEYFRAME_INTERVAL):
        self._send = send
        self._interval = interval
        self._last = -interval
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        self.sent = 0

    def request(self) -> None:
        if self._closed or self._timer is not None:
            return
        wait = self._last + self._interval - time.monotonic()
        if wait <= 0:
            self._fire()
        else:
            self._timer = asyncio.get_running_loop().call_later(wait, self._fire)

    def _fire(self) -> None:
        self._timer = None
        if self._closed:
            return
        self._last = time.monotonic()
        self.sent += 1
        task = asyncio.ensure_future(self._send_quietly())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send_quietly(self) -> None:
        try:
            await self._send()
        except Exception:  # a PLI that cannot go out (transport closing) is not an error
            logger.debug("keyframe request failed", exc_info=True)

    async def close(self) -> None:
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


class PacketFanout:
    """One published track: offers each encoded frame to every subscriber's queue."""

    def __init__(self, kind: str, keyframes: KeyframeRequester) -> None:
        self.kind = kind
        self.keyframes = keyframes
        self.mime_type: str | None = None
        self.frames_in = 0
        self._subscribers: set[ForwardedTrack] = set()
        self._ended = False

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    def subscribe(self) -> ForwardedTrack:
        track = ForwardedTrack(self)
        if self._ended:
            track._end()
        else:
            self._subscribers.add(track)
        return track

    def push(self, mime_type: str, packet: av.Packet) -> None:
        self.mime_type = mime_type
        self.frames_in += 1
        if not self._subscribers:
            return
        keyframe = self.kind != "video" or is_keyframe(mime_type, bytes(packet))
        for track in list(self._subscribers):
            track._offer(packet, keyframe)

    def end(self) -> None:
        """The publisher's track is gone: end every subscriber's track."""
        self._ended = True
        for track in list(self._subscribers):
            track._end()
        self._subscribers.clear()

    def _unsubscribe(self, track: ForwardedTrack) -> None:
        self._subscribers.discard(track)


class ForwardedTrack(MediaStreamTrack):
    """A subscriber's view of a published track: `recv()` returns encoded `av.Packet`s."""

    def __init__(self, fanout: PacketFanout) -> None:
        super().__init__()
        self.kind = fanout.kind
        self._fanout: PacketFanout | None = fanout
        self._queue: deque[tuple[av.Packet, bool]] = deque()
        self._queued_bytes = 0
        self._limit = VIDEO_QUEUE_FRAMES if fanout.kind == "video" else AUDIO_QUEUE_FRAMES
        self._waiter: asyncio.Future[None] | None = None
        self._started = False
        self._finished = False
        # video waits for a keyframe before its first frame and after every overflow
        self._resync = fanout.kind == "video"
        self.frames_forwarded = 0
        self.frames_dropped = 0
        self.resyncs = 0
        if self._resync:
            fanout.keyframes.request()

    def request_keyframe(self) -> None:
        """The subscriber lost a picture (PLI/FIR): ask the publisher."""
        if self.kind == "video":
            self._request_keyframe()

    def _request_keyframe(self) -> None:
        if self._fanout is not None:
            self._fanout.keyframes.request()

    def _offer(self, packet: av.Packet, keyframe: bool) -> None:
        if self._resync:
            if not keyframe:
                self.frames_dropped += 1
                self._request_keyframe()
                return
            self._resync = False
        size = packet.size
        if len(self._queue) >= self._limit or self._queued_bytes + size > QUEUE_BYTES:
            self._overflow()
            if self.kind == "video" and not keyframe:
                self.frames_dropped += 1
                return
            self._resync = False
        self._queue.append((packet, keyframe))
        self._queued_bytes += size
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _overflow(self) -> None:
        """The subscriber fell behind: drop what it has not taken yet."""
        self.frames_dropped += len(self._queue)
        self._queue.clear()
        self._queued_bytes = 0
        # audio goes on with the next frame (each Opus frame decodes alone); video needs a keyframe
        if self.kind == "video":
            self.resyncs += 1
            self._resync = True
            self._request_keyframe()

    def _start(self) -> None:
        """First read: anything queued while the subscriber was connecting is stale; start
        from the newest keyframe queued, or wait for a fresh one."""
        self._started = True
        if self.kind != "video":
            # a burst of stale audio would only become playout delay at the receiver
            while len(self._queue) > AUDIO_START_FRAMES:
                packet, _ = self._queue.popleft()
                self._queued_bytes -= packet.size
                self.frames_dropped += 1
            return
        last_key = max((i for i, (_, key) in enumerate(self._queue) if key), default=None)
        if last_key is None:
            self._queue.clear()
            self._queued_bytes = 0
            self._resync = True
            self._request_keyframe()
            return
        for _ in range(last_key):
            packet, _ = self._queue.popleft()
            self._queued_bytes -= packet.size
            self.frames_dropped += 1

    async def recv(self) -> av.Packet:  # type: ignore[override]
        if not self._started:
            self._start()
        while not self._queue:
            if self._finished or self.readyState != "live":
                raise MediaStreamError
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        packet, _ = self._queue.popleft()
        self._queued_bytes -= packet.size
        self.frames_forwarded += 1
        return packet

    def _end(self) -> None:
        # drop the link to the publisher's side, so an ended track keeps nothing of it alive
        self._fanout = None
        self._finished = True
        self._queue.clear()
        self._queued_bytes = 0
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def stop(self) -> None:
        super().stop()
        if self._fanout is not None:
            self._fanout._unsubscribe(self)
        self._end()
