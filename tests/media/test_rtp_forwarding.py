"""The packet forwarding core on its own: one TrackForwarder, its OutboundStreams, and what they
write. The writer is a recorder standing in for the SRTP/UDP boundary; end-to-end behaviour
through real peer connections is in test_sfu_forwarding.py and test_sfu_loss.py."""

from __future__ import annotations

import asyncio

import pytest
from aiortc.rtcrtpparameters import (
    RTCRtpCodecParameters,
    RTCRtpHeaderExtensionParameters,
    RTCRtpParameters,
    RTCRtpSendParameters,
)
from aiortc.rtp import (
    HeaderExtensionsMap,
    RtcpPacket,
    RtcpPsfbPacket,
    RtcpRrPacket,
    RtcpRtpfbPacket,
    RtcpSenderInfo,
    RtcpSrPacket,
    RtpPacket,
)
from roomwire.media.media_metrics import MediaStats
from roomwire.media.outbound_stream import RESENDS_PER_SECOND, OutboundStream
from roomwire.media.receive_gaps import GIVE_UP
from roomwire.media.rtcp_packets import REPORT_INTERVAL
from roomwire.media.rtp_forwarder import TrackForwarder

pytestmark = pytest.mark.timeout(20)

VP8 = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96)
VP8_RTX = RTCRtpCodecParameters(mimeType="video/rtx", clockRate=90000, payloadType=97, parameters={"apt": 96})
OPUS = RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48000, channels=2, payloadType=111)
# what the subscriber's m-line negotiated: other payload types and extension ids than the publisher's
SUB_VP8 = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=120)
SUB_RTX = RTCRtpCodecParameters(mimeType="video/rtx", clockRate=90000, payloadType=121, parameters={"apt": 120})
SUB_OPUS = RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48000, channels=2, payloadType=109)
MID = RTCRtpHeaderExtensionParameters(id=4, uri="urn:ietf:params:rtp-hdrext:sdes:mid")
ABS = RTCRtpHeaderExtensionParameters(id=9, uri="http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time")
LEVEL = RTCRtpHeaderExtensionParameters(id=7, uri="urn:ietf:params:rtp-hdrext:ssrc-audio-level")

KEY = b"\x10\x00\x9d\x01\x2a"  # VP8 descriptor S=1 PID=0, then a keyframe's frame tag (bit 0 clear)
DELTA = b"\x10\x01\x02\x03"  # S=1, inter frame
MIDDLE = b"\x00\x55\x66"  # a continuation packet


class Recorder:
    """Stands in for SrtpWriter: keeps what would have gone out."""

    def __init__(self) -> None:
        self.rtp: list[bytes] = []
        self.rtcp: list[bytes] = []
        self.open = True

    def send_rtp(self, data: bytes) -> bool:
        self.rtp.append(data)
        return True

    def send_rtcp(self, data: bytes) -> bool:
        self.rtcp.append(data)
        return True


def parsed(data: bytes, extensions: list[RTCRtpHeaderExtensionParameters]) -> RtpPacket:
    ids = HeaderExtensionsMap()
    ids.configure(RTCRtpParameters(headerExtensions=extensions))
    return RtpPacket.parse(data, ids)


class Rig:
    """A publisher's track (`send`) forwarded to subscribers (`subscribe`)."""

    def __init__(self, kind: str = "video") -> None:
        self.stats = MediaStats()
        self.publisher = Recorder()
        codecs = [VP8, VP8_RTX] if kind == "video" else [OPUS]
        self.forwarder = TrackForwarder(kind, codecs, self.publisher.send_rtcp, 0xAAAA, self.stats)
        self.kind = kind

    def subscribe(self, ssrc: int = 0x5151, mid: str = "3") -> tuple[OutboundStream, Recorder]:
        stream = OutboundStream(self.forwarder, ssrc, ssrc + 1, self.stats)
        if self.kind == "video":
            parameters = RTCRtpSendParameters(codecs=[SUB_VP8, SUB_RTX], headerExtensions=[MID, ABS], muxId=mid)
        else:
            parameters = RTCRtpSendParameters(codecs=[SUB_OPUS], headerExtensions=[MID, LEVEL], muxId=mid)
        writer = Recorder()
        stream.start(parameters, writer)  # type: ignore[arg-type]
        self.forwarder.attach(stream)
        return stream, writer

    def send(self, seq: int, timestamp: int, payload: bytes, *, ssrc: int = 0x1234, marker: bool = False) -> None:
        packet = RtpPacket(payload_type=96 if self.kind == "video" else 111, sequence_number=seq, timestamp=timestamp)
        packet.ssrc, packet.payload, packet.marker = ssrc, payload, int(marker)
        if self.kind == "audio":
            packet.extensions.audio_level = (True, 30)
        self.forwarder.receive(packet)

    def send_rtx(self, seq: int, rtx_seq: int, timestamp: int, payload: bytes) -> None:
        packet = RtpPacket(payload_type=97, sequence_number=rtx_seq, timestamp=timestamp)
        packet.ssrc, packet.payload = 0x9999, seq.to_bytes(2, "big") + payload
        self.forwarder.receive(packet)


def out_seqs(writer: Recorder) -> list[int]:
    return [parsed(data, [MID, ABS]).sequence_number for data in writer.rtp]


async def test_a_video_subscriber_starts_at_a_keyframe_with_its_own_ssrc_pt_seq_timestamps_and_extensions():
    rig = Rig()
    stream, writer = rig.subscribe(mid="3")
    rig.send(100, 3000, DELTA)
    rig.send(101, 3000, MIDDLE, marker=True)
    assert writer.rtp == [] and rig.stats.dropped["waiting_for_keyframe"] == 2
    rig.send(102, 6000, KEY)
    rig.send(103, 6000, MIDDLE, marker=True)
    rig.send(104, 9000, DELTA, marker=True)
    packets = [parsed(data, [MID, ABS]) for data in writer.rtp]
    assert [p.payload for p in packets] == [KEY, MIDDLE, DELTA]  # untouched
    assert {p.ssrc for p in packets} == {0x5151} and {p.payload_type for p in packets} == {120}
    assert [p.marker for p in packets] == [0, 1, 1]
    seqs = [p.sequence_number for p in packets]
    assert seqs == [seqs[0], (seqs[0] + 1) & 0xFFFF, (seqs[0] + 2) & 0xFFFF]
    offset = (packets[0].timestamp - 6000) & 0xFFFFFFFF
    assert [(p.timestamp - offset) & 0xFFFFFFFF for p in packets] == [6000, 6000, 9000]
    assert {p.extensions.mid for p in packets} == {"3"}
    assert all(p.extensions.abs_send_time is not None for p in packets)
    assert rig.stats.forwarded_packets["video"] == 3 and stream.packets_sent == 3
    rig.forwarder.close()


async def test_sequence_numbers_run_on_across_a_pause_and_resume_at_the_next_keyframe():
    rig = Rig()
    stream, writer = rig.subscribe()
    rig.send(10, 0, KEY, marker=True)
    rig.send(11, 3000, DELTA, marker=True)
    stream.pause()
    for seq in range(12, 20):
        rig.send(seq, seq * 3000, DELTA, marker=True)
    stream.resume()
    rig.send(20, 60000, DELTA, marker=True)  # not a keyframe: still waiting
    rig.send(21, 63000, KEY, marker=True)
    rig.send(22, 66000, DELTA, marker=True)
    seqs = out_seqs(writer)
    assert len(seqs) == 4
    assert [(s - seqs[0]) & 0xFFFF for s in seqs] == [0, 1, 2, 3], "no gap for what was not sent"
    assert rig.stats.dropped["paused"] == 8
    rig.forwarder.close()


async def test_a_gap_is_nacked_repaired_by_rtx_and_forwarded_late_and_a_subscriber_nack_is_answered_from_cache():
    rig = Rig()
    stream, writer = rig.subscribe()
    rig.send(200, 0, KEY, marker=True)
    rig.send(203, 3000, DELTA, marker=True)  # 201 and 202 lost on the way in
    [nack] = [p for p in RtcpPacket.parse(rig.publisher.rtcp[-1]) if isinstance(p, RtcpRtpfbPacket)]
    assert (nack.ssrc, nack.media_ssrc, nack.lost) == (0xAAAA, 0x1234, [201, 202])
    rig.send_rtx(201, 7, 0, MIDDLE)  # the publisher's retransmission
    rig.send_rtx(201, 8, 0, MIDDLE)  # ... twice: the second is a duplicate
    assert rig.stats.dropped["duplicate"] == 1
    first = out_seqs(writer)[0]
    assert [(s - first) & 0xFFFF for s in out_seqs(writer)] == [0, 3, 1]  # the repair goes out at once
    # the subscriber lost our copy of 203 and asks for it
    stream.resend([(first + 3) & 0xFFFF, (first + 2) & 0xFFFF])  # 202 never came: not in the cache
    retransmission = parsed(writer.rtp[-1], [MID, ABS])
    assert (retransmission.payload_type, retransmission.ssrc) == (121, 0x5151 + 1)
    assert retransmission.payload == ((first + 3) & 0xFFFF).to_bytes(2, "big") + DELTA
    assert (rig.stats.nacks_received, rig.stats.nacks_answered) == (2, 1)
    # a flood of NACKs gets no more than the budget of resends
    stream.resend([(first + 3) & 0xFFFF] * 1000)
    assert rig.stats.nacks_answered < 1 + RESENDS_PER_SECOND + 5
    assert rig.stats.dropped["resend_budget"] > 700
    rig.forwarder.close()


async def test_a_gap_given_up_becomes_a_pli_and_a_padding_packet_for_each_subscriber():
    rig = Rig()
    _, writer = rig.subscribe()
    rig.send(300, 0, KEY, marker=True)
    rig.send(302, 3000, DELTA, marker=True)  # 301 is lost for good
    await asyncio.sleep(GIVE_UP + 0.1)
    rtcp = [p for data in rig.publisher.rtcp for p in RtcpPacket.parse(data)]
    nacked = [seq for p in rtcp if isinstance(p, RtcpRtpfbPacket) for seq in p.lost]
    assert nacked.count(301) >= 3, "asked again while the gap was open"
    assert [p.fmt for p in rtcp if isinstance(p, RtcpPsfbPacket)] == [1], "one PLI"
    assert rig.stats.unrepaired == 1 and rig.stats.plis_sent == 1
    filler = parsed(writer.rtp[-1], [MID, ABS])
    first = out_seqs(writer)[0]
    assert filler.sequence_number == (first + 1) & 0xFFFF and filler.payload == b"" and filler.padding_size == 4
    rig.send_rtx(301, 1, 0, MIDDLE)  # too late: the subscribers already have the filler
    assert len(writer.rtp) == 3 and rig.stats.dropped["duplicate"] == 1
    rig.forwarder.close()


async def test_a_new_source_restarts_every_subscriber_at_a_keyframe_with_continuous_numbers():
    rig = Rig()
    _, writer = rig.subscribe()
    rig.send(500, 90000, KEY, marker=True)
    rig.send(501, 93000, DELTA, marker=True)
    rig.send(7, 5, DELTA, ssrc=0x7777, marker=True)  # the publisher's new source
    rig.send(8, 3005, KEY, ssrc=0x7777, marker=True)
    packets = [parsed(data, [MID, ABS]) for data in writer.rtp]
    assert len(packets) == 3
    assert (packets[2].sequence_number - packets[1].sequence_number) & 0xFFFF == 1
    step = (packets[2].timestamp - packets[1].timestamp) & 0xFFFFFFFF
    assert 0 < step < 90000, "timestamps go on forward, not from the new source's origin"
    assert rig.forwarder.ssrc == 0x7777
    rig.forwarder.close()


async def test_h264_subscribers_start_at_the_sps_of_a_keyframe():
    stats = MediaStats()
    h264 = RTCRtpCodecParameters(mimeType="video/H264", clockRate=90000, payloadType=102)
    forwarder = TrackForwarder("video", [h264], Recorder().send_rtcp, 1, stats)
    stream = OutboundStream(forwarder, 42, 43, stats)
    writer = Recorder()
    stream.start(RTCRtpSendParameters(codecs=[h264], headerExtensions=[]), writer)  # type: ignore[arg-type]
    forwarder.attach(stream)
    stap_a = b"\x18" + b"\x00\x02\x67\x42" + b"\x00\x02\x68\xce"  # STAP-A: SPS, PPS
    for seq, payload in enumerate([b"\x7c\x81\x00", b"\x41\x9a", stap_a, b"\x7c\x85\x88", b"\x7c\x45\x00"]):
        packet = RtpPacket(payload_type=102, sequence_number=seq, timestamp=seq // 2 * 3000)
        packet.ssrc, packet.payload = 1, payload
        forwarder.receive(packet)
    assert [RtpPacket.parse(data).payload for data in writer.rtp] == [stap_a, b"\x7c\x85\x88", b"\x7c\x45\x00"]
    forwarder.close()


async def test_audio_flows_at_once_with_the_publishers_level_and_late_packets_of_an_old_epoch_are_dropped():
    rig = Rig("audio")
    _, writer = rig.subscribe(mid="0")
    rig.send(1000, 960, b"\xfc\x01")
    rig.send(1001, 1920, b"\xfc\x02")
    packet = parsed(writer.rtp[0], [MID, LEVEL])
    assert (packet.payload_type, packet.extensions.mid, packet.extensions.audio_level) == (109, "0", (True, 30))
    rig.send(999, 0, b"\xfc\x00")  # from before this subscriber's first packet
    assert len(writer.rtp) == 2 and rig.stats.dropped["late"] == 1
    assert rig.forwarder.cache is None, "no NACK for Opus: nothing cached"
    rig.forwarder.close()


async def test_packets_the_forwarder_cannot_use_are_dropped_and_counted():
    rig = Rig()
    stream, writer = rig.subscribe()
    rig.send_rtx(5, 1, 0, MIDDLE)  # a retransmission before any media: nothing to repair
    stranger = RtpPacket(payload_type=100, sequence_number=1, timestamp=0)  # not negotiated
    stranger.ssrc, stranger.payload = 0x1234, KEY
    rig.forwarder.receive(stranger)
    assert rig.forwarder.ssrc is None and rig.publisher.rtcp == []
    rig.send(10, 0, KEY, marker=True)
    short = RtpPacket(payload_type=97, sequence_number=2, timestamp=0)  # RTX without its 2-byte seq
    short.ssrc, short.payload = 0x9999, b"\x00"
    rig.forwarder.receive(short)
    assert rig.stats.dropped["unknown_payload_type"] == 1 and rig.stats.dropped["padding"] == 2
    rig.send(11, 0, b"")  # the publisher's padding-only probe goes on as padding
    probe = parsed(writer.rtp[-1], [MID, ABS])
    assert len(writer.rtp) == 2 and probe.payload == b"" and probe.padding_size == 4
    first = out_seqs(writer)[0]
    stream.resend([(first - 1) & 0xFFFF, (first + 2) & 0xFFFF])  # numbers it never sent
    assert len(writer.rtp) == 2 and (rig.stats.nacks_received, rig.stats.nacks_answered) == (2, 0)
    rig.forwarder.close()


async def test_pli_requests_are_rate_limited_per_track():
    rig = Rig()
    rig.send(1, 0, DELTA, marker=True)
    rig.subscribe()  # attaching asks at once
    for _ in range(10):
        rig.forwarder.request_keyframe()
    plis = [p for data in rig.publisher.rtcp for p in RtcpPacket.parse(data) if isinstance(p, RtcpPsfbPacket)]
    assert len(plis) == 1 and rig.stats.keyframes_requested == 11
    await asyncio.sleep(0.35)
    assert rig.stats.plis_sent == 2, "the requests inside the interval became one more PLI"
    rig.forwarder.close()


async def test_sender_reports_carry_the_publishers_ntp_rtp_mapping_into_each_subscribers_timestamps():
    rig = Rig()
    stream, writer = rig.subscribe()
    rig.send(1, 90000, KEY, marker=True)
    assert stream.sender_report(0.0) is None, "no mapping before the publisher's own report"
    ntp = 0xE1234567_80000000  # some NTP time, .5 s
    rig.forwarder.on_rtcp(RtcpSrPacket(ssrc=0x1234, sender_info=RtcpSenderInfo(ntp, 90000, 1, 100)))
    _, _, received_at = rig.forwarder.sender_report
    [report] = RtcpPacket.parse(stream.sender_report(received_at + 0.5))
    offset = (parsed(writer.rtp[0], [MID, ABS]).timestamp - 90000) & 0xFFFFFFFF
    assert report.ssrc == 0x5151
    assert report.sender_info.ntp_timestamp == ntp + 2**31  # half a second later
    assert report.sender_info.rtp_timestamp == (90000 + offset + 45000) & 0xFFFFFFFF
    assert (report.sender_info.packet_count, report.sender_info.octet_count) == (1, len(KEY))
    rig.forwarder.close()


async def test_receiver_reports_to_the_publisher_answer_its_last_sender_report():
    rig = Rig()
    rig.send(1, 90000, KEY, marker=True)
    ntp = 0xE1234567_80000000
    rig.forwarder.on_rtcp(RtcpSrPacket(ssrc=0x1234, sender_info=RtcpSenderInfo(ntp, 90000, 1, 100)))
    await asyncio.sleep(REPORT_INTERVAL * 1.5 + 0.1)  # the first report is due by then
    [receiver_report] = [p for p in RtcpPacket.parse(rig.publisher.rtcp[-1]) if isinstance(p, RtcpRrPacket)]
    [info] = receiver_report.reports
    assert (receiver_report.ssrc, info.ssrc, info.highest_sequence) == (0xAAAA, 0x1234, 1)
    assert info.lsr == 0x4567_8000 and 0 < info.dlsr < 2 * 65536
    rig.forwarder.close()
