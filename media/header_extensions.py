"""The RTP header extensions of one subscriber's copies, prebuilt (RFC 8285, one-byte form).

Of the extensions a subscriber negotiated, the SFU writes three: `sdes:mid` (the mid of the
subscriber's own m-line: fixed), `abs-send-time` on video (when the SFU sends the packet, for
the subscriber's bandwidth estimate and REMB) and `ssrc-audio-level` on audio (the publisher's
value, passed on). The publisher's own extension ids mean nothing to the subscriber, so the
block is rebuilt with the subscriber's ids; only the one varying value is written per packet.
"""

from __future__ import annotations

import struct

from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters

from .rtp_packets import HAS_EXTENSION, RTP_VERSION

MID = "urn:ietf:params:rtp-hdrext:sdes:mid"
ABS_SEND_TIME = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
AUDIO_LEVEL = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"

_ONE_BYTE_PROFILE = b"\xbe\xde"
_WORDS = struct.Struct("!H")


def _block(elements: bytes) -> bytes:
    """A one-byte-form extension block around `elements`, padded to 32-bit words."""
    padded = elements + bytes(-len(elements) % 4)
    return _ONE_BYTE_PROFILE + _WORDS.pack(len(padded) // 4) + padded


class ExtensionLayout:
    """`head + value + tail` is the block of a packet that carries the varying value (3 bytes
    of abs-send-time, or 1 byte of audio level); `plain` (with `plain_first`, the header's
    first byte) is the block of one that does not."""

    __slots__ = ("head", "plain", "plain_first", "tail", "varies")

    def __init__(self, extensions: list[RTCRtpHeaderExtensionParameters], mid: str | None, kind: str) -> None:
        ids = {ext.uri: ext.id for ext in extensions if 1 <= ext.id <= 14}
        fixed = b""
        encoded_mid = (mid or "").encode()
        if MID in ids and 1 <= len(encoded_mid) <= 16:
            fixed = bytes(((ids[MID] << 4) | (len(encoded_mid) - 1),)) + encoded_mid
        value_id = ids.get(ABS_SEND_TIME if kind == "video" else AUDIO_LEVEL)
        value_size = 3 if kind == "video" else 1
        self.varies = value_id is not None
        self.head = self.tail = b""
        if value_id is not None:
            elements = len(fixed) + 1 + value_size
            padding = -elements % 4
            self.head = (
                _ONE_BYTE_PROFILE
                + _WORDS.pack((elements + padding) // 4)
                + fixed
                + bytes(((value_id << 4) | (value_size - 1),))
            )
            self.tail = bytes(padding)
        self.plain = _block(fixed) if fixed else b""
        self.plain_first = RTP_VERSION | (HAS_EXTENSION if fixed else 0)
