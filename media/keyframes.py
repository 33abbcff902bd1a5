"""Keyframes at the packet level: where a decodable picture starts, and asking a publisher for one.

A video subscriber can only start (or restart, after a pause or a loss) at the first packet
of a keyframe. `keyframe_start` recognises that packet from the RTP payload alone, without
depayloading anything; `KeyframeRequester` sends the publisher picture-loss indications
(PLI), at most one per interval per published track.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

KEYFRAME_INTERVAL = 0.3

_H264_IDR = 5
_H264_SPS = 7  # sent at the head of every keyframe
_H264_STAP_A = 24
_H264_FU_A = 28


def vp8_keyframe_start(payload: bytes) -> bool:
    """The first packet of a VP8 keyframe (RFC 7741 payload descriptor, RFC 6386 frame tag)."""
    size = len(payload)
    if size < 2:
        return False
    first = payload[0]
    if not first & 0x10 or first & 0x0F:  # S: start of a partition; PID 0: the first one
        return False
    pos = 1
    if first & 0x80:  # X: extension byte
        ext = payload[1]
        pos = 2
        if ext & 0x80:  # I: picture id, 7 or 15 bits
            if size <= pos:
                return False
            pos += 2 if payload[pos] & 0x80 else 1
        if ext & 0x40:  # L: TL0PICIDX
            pos += 1
        if ext & 0x30:  # T or K: TID/KEYIDX
            pos += 1
    # bit 0 of the frame tag is the inverse keyframe flag
    return size > pos and not payload[pos] & 0x01


def h264_keyframe_start(payload: bytes) -> bool:
    """A packet that starts an H.264 keyframe (RFC 6184): an IDR slice or an SPS, alone, in a
    STAP-A, or at the start of an FU-A."""
    if not payload:
        return False
    nal_type = payload[0] & 0x1F
    if nal_type in (_H264_IDR, _H264_SPS):
        return True
    if nal_type == _H264_STAP_A:
        pos = 1
        while pos + 2 < len(payload):
            size = (payload[pos] << 8) | payload[pos + 1]
            if payload[pos + 2] & 0x1F in (_H264_IDR, _H264_SPS):
                return True
            pos += 2 + size
        return False
    if nal_type == _H264_FU_A:
        return len(payload) > 1 and bool(payload[1] & 0x80) and payload[1] & 0x1F in (_H264_IDR, _H264_SPS)
    return False


def keyframe_detector(mime_type: str) -> Callable[[bytes], bool] | None:
    """The detector for a video codec; None for audio, where every packet stands alone."""
    mime = mime_type.lower()
    if mime == "video/vp8":
        return vp8_keyframe_start
    if mime == "video/h264":
        return h264_keyframe_start
    return None


class KeyframeRequester:
    """Sends PLIs for one published track, at most one per `interval` seconds.

    A request inside the interval is not lost: one PLI goes out when the interval ends. `send`
    returns False when it could not send (no media seen yet): that starts no interval.
    """

    def __init__(self, send: Callable[[], bool], interval: float = KEYFRAME_INTERVAL) -> None:
        self._send = send
        self._interval = interval
        self._last = -interval
        self._timer: asyncio.TimerHandle | None = None
        self._closed = False

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
        if self._send():
            self._last = time.monotonic()

    def close(self) -> None:
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
