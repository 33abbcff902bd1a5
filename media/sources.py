"""Synthetic media sources: a test-pattern video whose frame counter is drawn into the pixels,
and a sine tone.

The counter survives lossy coding (VP8, H.264): it is drawn as 32 large black/white cells in
a band at the top of the luma plane (16 bits of counter, then the same 16 bits inverted as a
check), so `read_frame_counter` can recover it from a decoded frame and tell a receiver which
frames arrived, in which order. No numpy: the planes are built from precomputed rows.
"""

from __future__ import annotations

import asyncio
import fractions
import math
import time
from array import array

import av
from aiortc.mediastreams import MediaStreamTrack

VIDEO_CLOCK_RATE = 90000
COUNTER_BITS = 16
CELLS = 2 * COUNTER_BITS
BAND_FRACTION = 10  # the counter band is 1/10 of the height
BLACK, WHITE = 16, 235
AUDIO_SAMPLE_RATE = 48000


# Nobody read frames for this long (no connection, a reconnect): go on at the steady rate from
# now instead of handing out every missed frame at once.
MAX_LAG = 0.5


class _Pacer:
    """Hands out presentation timestamps and sleeps so frames leave at a steady rate."""

    def __init__(self, rate: float, clock_rate: int) -> None:
        self._period = 1.0 / rate
        self._step = clock_rate / rate
        self._start: float | None = None
        self.count = 0

    async def next(self) -> int:
        if self._start is None:
            self._start = time.monotonic()
        else:
            now = time.monotonic()
            delay = self._start + self.count * self._period - now
            if delay > 0:
                await asyncio.sleep(delay)
            elif delay < -MAX_LAG:
                self._start = now - self.count * self._period
        pts = round(self.count * self._step)
        self.count += 1
        return pts


def check_pattern_size(width: int, height: int) -> None:
    """ValueError unless a PatternVideoTrack can draw frames of this size."""
    if width < CELLS * 4 or height < 40 or width % 2 or height % 2:
        raise ValueError(f"{width}x{height}: the pattern's frames must be even-sized and at least {CELLS * 4}x40")


class PatternVideoTrack(MediaStreamTrack):
    """A `width`x`height` video at `fps`: a scrolling diagonal pattern plus the frame counter.

    Frame n carries counter n (mod 2**16), readable back with `read_frame_counter`.
    """

    kind = "video"

    def __init__(self, width: int = 640, height: int = 480, fps: float = 30) -> None:
        super().__init__()
        check_pattern_size(width, height)
        self.width, self.height, self.fps = width, height, fps
        self._pacer = _Pacer(fps, VIDEO_CLOCK_RATE)
        self._time_base = fractions.Fraction(1, VIDEO_CLOCK_RATE)
        self._band_rows = height // BAND_FRACTION
        # 256 distinct pattern rows; scrolling picks a different starting row each frame
        self._rows = [bytes((x + r) & 0xFF for x in range(width)) for r in range(256)]
        self._chroma = bytes([128]) * ((width // 2) * (height // 2))
        self._cell = [
            [bytes([BLACK]) * _cell_width(width, i) for i in range(CELLS)],
            [bytes([WHITE]) * _cell_width(width, i) for i in range(CELLS)],
        ]

    @property
    def frames_sent(self) -> int:
        return self._pacer.count

    async def recv(self) -> av.VideoFrame:
        pts = await self._pacer.next()
        frame = self.make_frame(self._pacer.count - 1)
        frame.pts = pts
        frame.time_base = self._time_base
        return frame

    def make_frame(self, counter: int) -> av.VideoFrame:
        """The frame carrying `counter` (no pts): also used to pre-encode benchmark streams."""
        bits = _counter_bits(counter)
        band_row = b"".join(self._cell[bit][i] for i, bit in enumerate(bits))
        first = (counter * 3) & 0xFF
        pattern = [self._rows[(first + r) & 0xFF] for r in range(self.height - self._band_rows)]
        luma = band_row * self._band_rows + b"".join(pattern)
        frame = av.VideoFrame(self.width, self.height, "yuv420p")
        _fill_plane(frame.planes[0], luma, self.width)
        _fill_plane(frame.planes[1], self._chroma, self.width // 2)
        _fill_plane(frame.planes[2], self._chroma, self.width // 2)
        return frame


class ToneAudioTrack(MediaStreamTrack):
    """A mono 48 kHz sine tone in 20 ms s16 frames."""

    kind = "audio"

    def __init__(self, frequency: float = 440, amplitude: float = 0.3) -> None:
        super().__init__()
        self.frequency = frequency
        self._samples_per_frame = AUDIO_SAMPLE_RATE // 50
        self._pacer = _Pacer(50, AUDIO_SAMPLE_RATE)
        self._time_base = fractions.Fraction(1, AUDIO_SAMPLE_RATE)
        # One second of tone holds a whole number of 20 ms frames, so it loops without a seam
        # whenever the frequency is a whole number of hertz.
        peak = int(32767 * amplitude)
        self._second = array(
            "h",
            (int(peak * math.sin(2 * math.pi * frequency * n / AUDIO_SAMPLE_RATE)) for n in range(AUDIO_SAMPLE_RATE)),
        ).tobytes()

    @property
    def frames_sent(self) -> int:
        return self._pacer.count

    async def recv(self) -> av.AudioFrame:
        pts = await self._pacer.next()
        start = (pts % AUDIO_SAMPLE_RATE) * 2
        frame = av.AudioFrame(format="s16", layout="mono", samples=self._samples_per_frame)
        frame.planes[0].update(self._second[start : start + self._samples_per_frame * 2])
        frame.sample_rate = AUDIO_SAMPLE_RATE
        frame.pts = pts
        frame.time_base = self._time_base
        return frame


def read_frame_counter(frame: av.VideoFrame) -> int | None:
    """The counter drawn by `PatternVideoTrack`, or None if the frame does not carry one."""
    if frame.format.name not in ("yuv420p", "yuvj420p", "gray"):
        frame = frame.reformat(format="yuv420p")
    plane = frame.planes[0]
    data = memoryview(plane)
    stride = plane.line_size
    width, height = frame.width, frame.height
    if width < CELLS * 4:
        return None
    band = height // BAND_FRACTION
    rows = range(band // 4, band - band // 4, max(1, band // 8))
    bits = []
    x = 0
    for i in range(CELLS):
        cell = _cell_width(width, i)
        columns = range(x + cell // 4, x + cell - cell // 4)
        total = count = 0
        for row in rows:
            line = data[row * stride : row * stride + width]
            for col in columns:
                total += line[col]
                count += 1
        bits.append(1 if total / count > (BLACK + WHITE) / 2 else 0)
        x += cell
    value = check = 0
    for bit in bits[:COUNTER_BITS]:
        value = (value << 1) | bit
    for bit in bits[COUNTER_BITS:]:
        check = (check << 1) | bit
    if value ^ check != (1 << COUNTER_BITS) - 1:
        return None
    return value


def _counter_bits(counter: int) -> list[int]:
    value = counter & ((1 << COUNTER_BITS) - 1)
    bits = [(value >> (COUNTER_BITS - 1 - i)) & 1 for i in range(COUNTER_BITS)]
    return bits + [1 - b for b in bits]


def _cell_width(width: int, index: int) -> int:
    """Cells split the width evenly; the last one takes the remainder."""
    base = width // CELLS
    return base + (width - base * CELLS if index == CELLS - 1 else 0)


def _fill_plane(plane: av.video.plane.VideoPlane, data: bytes, width: int) -> None:
    stride = plane.line_size
    if stride != width:  # libav pads rows to an alignment; pad ours to match
        pad = bytes(stride - width)
        data = b"".join(data[i : i + width] + pad for i in range(0, len(data), width))
    plane.update(data)
