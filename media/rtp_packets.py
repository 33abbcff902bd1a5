"""The RTP packets the SFU forwards, and the pieces every subscriber's copy is built from.

A publisher's packet is parsed once (by aiortc, then `InboundPacket`); each subscriber's copy
is a fresh 12-byte header (its SSRC, payload type, sequence number, timestamp), its prebuilt
header extension block (`header_extensions.ExtensionLayout`) and the publisher's payload,
untouched.
"""

from __future__ import annotations

import struct
import time

from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import RtpPacket

RTP_HEADER = struct.Struct("!BBHII")
RTP_VERSION = 0x80
HAS_EXTENSION = 0x10
HAS_PADDING = 0x20
MARKER = 0x80
NTP_EPOCH = 2208988800  # seconds from 1900 (NTP) to 1970 (Unix)
# a padding-only payload: RTP padding whose last byte counts the padding (RFC 3550 5.1)
PADDING_ONLY = b"\x00\x00\x00\x04"


class InboundPacket:
    """One RTP packet of a published track, as the SFU keeps it (retransmissions unwrapped)."""

    __slots__ = ("arrival", "keyframe", "level", "marker", "padding", "payload", "seq", "timestamp")

    def __init__(
        self,
        seq: int,
        timestamp: int,
        marker: int,
        payload: bytes,
        arrival: float,
        keyframe: bool = False,
        level: bytes | None = None,
        padding: int = 0,
    ) -> None:
        self.seq = seq
        self.timestamp = timestamp
        self.marker = marker  # MARKER or 0, ready to be or-ed with the payload type
        self.payload = payload
        self.arrival = arrival  # loop time, seconds
        self.keyframe = keyframe  # the first packet of a keyframe
        self.level = level  # the ssrc-audio-level extension's byte, if the publisher sent one
        self.padding = padding  # HAS_PADDING for a padding-only packet

    @classmethod
    def padding_only(cls, seq: int, timestamp: int, arrival: float) -> InboundPacket:
        """A packet with no payload, only RTP padding: the publisher's bandwidth probes, and the
        filler standing for a packet lost for good (receivers stop waiting for the hole:
        libwebrtc stops NACKing it; aiortc's jitter buffer moves on)."""
        return cls(seq, timestamp, 0, PADDING_ONLY, arrival, padding=HAS_PADDING)


def rtx_payload_type(codecs: list[RTCRtpCodecParameters]) -> int | None:
    """The payload type of retransmissions (RFC 4588) of the first codec, if RTX was negotiated."""
    media = codecs[0].payloadType
    return next(
        (c.payloadType for c in codecs if c.mimeType.lower().endswith("/rtx") and c.parameters.get("apt") == media),
        None,
    )


def audio_level_byte(packet: RtpPacket) -> bytes | None:
    """The ssrc-audio-level extension value (RFC 6464) aiortc parsed, as its one byte."""
    level = packet.extensions.audio_level
    if level is None:
        return None
    voice, dbov = level
    return bytes(((0x80 if voice else 0) | (dbov & 0x7F),))


def abs_send_time() -> bytes:
    """Now as the abs-send-time extension's value: NTP seconds, 6.18 fixed point, 24 bits."""
    return (int((time.time() + NTP_EPOCH) * 262144) & 0xFFFFFF).to_bytes(3, "big")
