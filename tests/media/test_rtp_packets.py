"""The pieces every subscriber's copy is built from: extension blocks, RTCP NACK packing."""

from __future__ import annotations

import asyncio

from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters, RTCRtpParameters
from aiortc.rtp import HeaderExtensionsMap, RtcpPacket, RtpPacket
from roomwire.media import rtcp_packets
from roomwire.media.header_extensions import ABS_SEND_TIME, AUDIO_LEVEL, MID, ExtensionLayout
from roomwire.media.receive_gaps import ReceiveGaps
from roomwire.media.rtp_packets import RTP_HEADER


def parse(data: bytes, extensions: list[RTCRtpHeaderExtensionParameters]) -> RtpPacket:
    ids = HeaderExtensionsMap()
    ids.configure(RTCRtpParameters(headerExtensions=extensions))
    return RtpPacket.parse(data, ids)


def test_extension_blocks_carry_the_subscribers_ids_mid_and_the_varying_value():
    extensions = [
        RTCRtpHeaderExtensionParameters(id=2, uri=MID),
        RTCRtpHeaderExtensionParameters(id=13, uri=ABS_SEND_TIME),
        RTCRtpHeaderExtensionParameters(id=15, uri="urn:example:too-high-for-one-byte"),
    ]
    layout = ExtensionLayout(extensions, "12", "video")
    assert layout.varies and len(layout.head + b"abc" + layout.tail) % 4 == 0
    data = RTP_HEADER.pack(0x90, 96, 1, 2, 3) + layout.head + b"\x01\x02\x03" + layout.tail + b"payload"
    packet = parse(data, extensions)
    assert (packet.extensions.mid, packet.extensions.abs_send_time, packet.payload) == ("12", 0x010203, b"payload")
    plain = parse(RTP_HEADER.pack(layout.plain_first, 96, 1, 2, 3) + layout.plain + b"p", extensions)
    assert (plain.extensions.mid, plain.extensions.abs_send_time) == ("12", None)

    audio = ExtensionLayout([RTCRtpHeaderExtensionParameters(id=1, uri=AUDIO_LEVEL)], "0", "audio")
    packet = parse(
        RTP_HEADER.pack(0x90, 111, 1, 2, 3) + audio.head + b"\x9e" + audio.tail + b"x",
        [RTCRtpHeaderExtensionParameters(id=1, uri=AUDIO_LEVEL)],
    )
    assert packet.extensions.audio_level == (True, 30) and packet.extensions.mid is None
    bare = ExtensionLayout([], None, "audio")
    assert not bare.varies and bare.plain == b"" and bare.plain_first == 0x80


def test_nack_packing_wraps_around_65535():
    seqs = [65534, 65535, 0, 1, 17, 40]
    data = rtcp_packets.nack(1, 2, seqs)
    [packet] = RtcpPacket.parse(data)
    assert (packet.ssrc, packet.media_ssrc) == (1, 2)
    assert rtcp_packets.nacked(packet) == seqs


async def test_receive_gaps_nack_once_per_retry_and_give_up_a_jump_too_far_to_repair():
    nacks: list[list[int]] = []
    lost: list[list[int]] = []
    gaps = ReceiveGaps(nacks.append, lost.append)
    now = asyncio.get_running_loop().time()
    gaps.received(65533, now)
    gaps.received(1, now)  # 65534, 65535, 0 missing, across the wrap
    assert nacks == [[65534, 65535, 0]]
    gaps.received(65535, now)  # repaired
    gaps.received(5000, now)  # a jump, not a loss: what is still missing is given up at once
    assert lost == [[65534, 0]]
    gaps.close()
