"""The RTCP the SFU writes (RFC 3550 reports, RFC 4585 feedback, REMB), as bytes.

aiortc's packet classes serialise most of it; NACK lists are packed here because the SFU's
sequence numbers wrap around 65535 and aiortc's packing assumes they do not.
"""

from __future__ import annotations

import random
import struct

from aiortc.rtp import (
    RTCP_PSFB_APP,
    RTCP_PSFB_PLI,
    RTCP_RTPFB,
    RTCP_RTPFB_NACK,
    RtcpByePacket,
    RtcpPsfbPacket,
    RtcpReceiverInfo,
    RtcpRrPacket,
    RtcpRtpfbPacket,
    RtcpSdesPacket,
    RtcpSenderInfo,
    RtcpSourceInfo,
    RtcpSrPacket,
    pack_remb_fci,
    pack_rtcp_packet,
)

_SSRCS = struct.Struct("!LL")
_FCI = struct.Struct("!HH")
_CNAME = 1
REPORT_INTERVAL = 1.0  # seconds between one sender's reports, on average (RFC 3550 6.2)


def report_delay() -> float:
    """The wait before the next report: REPORT_INTERVAL randomised by +-50 % (RFC 3550 6.2)."""
    return REPORT_INTERVAL * (0.5 + random.random())


def nack(ssrc: int, media_ssrc: int, seqs: list[int]) -> bytes:
    """Generic NACK for `seqs` (oldest first): each FCI holds a packet id and the 16 after it."""
    fci = bytearray()
    pid: int | None = None
    mask = 0
    for seq in seqs:
        if pid is not None:
            distance = (seq - pid - 1) & 0xFFFF
            if distance < 16:
                mask |= 1 << distance
                continue
            fci += _FCI.pack(pid, mask)
        pid, mask = seq, 0
    if pid is not None:
        fci += _FCI.pack(pid, mask)
    return pack_rtcp_packet(RTCP_RTPFB, RTCP_RTPFB_NACK, _SSRCS.pack(ssrc, media_ssrc) + bytes(fci))


def nacked(packet: RtcpRtpfbPacket) -> list[int]:
    """The sequence numbers a generic NACK asks for (aiortc's parser lets them run past 65535)."""
    return [seq & 0xFFFF for seq in packet.lost]


def pli(ssrc: int, media_ssrc: int) -> bytes:
    return bytes(RtcpPsfbPacket(fmt=RTCP_PSFB_PLI, ssrc=ssrc, media_ssrc=media_ssrc))


def remb(ssrc: int, bitrate: int, ssrcs: list[int]) -> bytes:
    return bytes(RtcpPsfbPacket(fmt=RTCP_PSFB_APP, ssrc=ssrc, media_ssrc=0, fci=pack_remb_fci(bitrate, ssrcs)))


def sender_report(ssrc: int, ntp: int, rtp_timestamp: int, packets: int, octets: int) -> bytes:
    info = RtcpSenderInfo(
        ntp_timestamp=ntp,
        rtp_timestamp=rtp_timestamp,
        packet_count=packets & 0xFFFFFFFF,
        octet_count=octets & 0xFFFFFFFF,
    )
    return bytes(RtcpSrPacket(ssrc=ssrc, sender_info=info))


def receiver_report(ssrc: int, reports: list[RtcpReceiverInfo]) -> bytes:
    return bytes(RtcpRrPacket(ssrc=ssrc, reports=reports))


def source_description(cname: str, ssrcs: list[int]) -> bytes:
    chunks = [RtcpSourceInfo(ssrc=ssrc, items=[(_CNAME, cname.encode())]) for ssrc in ssrcs]
    return bytes(RtcpSdesPacket(chunks=chunks))


def goodbye(ssrcs: list[int]) -> bytes:
    return bytes(RtcpByePacket(sources=ssrcs))
