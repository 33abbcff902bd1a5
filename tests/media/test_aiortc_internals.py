"""Every aiortc internal the SFU relies on, checked against the installed aiortc.

If one of these fails after an aiortc upgrade, media/aiortc_internals.py needs porting; nothing
else in the SFU touches aiortc's private parts.
"""

from __future__ import annotations

import asyncio
import fractions
import inspect
import queue
import threading

import aiortc
import av
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection
from aiortc.jitterbuffer import JitterBuffer
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import RTCP_PSFB_PLI, RtcpPsfbPacket, RtpPacket
from roomwire.media import aiortc_internals
from roomwire.media.forwarding import is_keyframe
from roomwire.media.sources import PatternVideoTrack

pytestmark = pytest.mark.timeout(30)


def test_installed_aiortc_is_the_pinned_release():
    assert aiortc.__version__ == aiortc_internals.PINNED_AIORTC
    aiortc_internals.verify()


def test_private_attributes_are_where_the_sfu_expects_them():
    receiver_init = inspect.getsource(aiortc.RTCRtpReceiver.__init__)
    assert "self.__decoder_queue: queue.Queue = queue.Queue()" in receiver_init
    assert "self.__rtx_ssrc" in receiver_init
    handle = inspect.getsource(aiortc.RTCRtpReceiver._handle_rtp_packet)
    assert "self.__decoder_queue.put((codec, encoded_frame))" in handle
    pli = inspect.signature(aiortc.RTCRtpReceiver._send_rtcp_pli)
    assert list(pli.parameters) == ["self", "media_ssrc"]
    assert inspect.iscoroutinefunction(aiortc.RTCRtpReceiver._send_rtcp_pli)
    assert "self._send_keyframe()" in inspect.getsource(aiortc.RTCRtpSender._handle_rtcp_packet)
    # the packet path: a non-Frame from recv() is packed, not encoded
    assert "self.__encoder.pack(data)" in inspect.getsource(aiortc.RTCRtpSender._next_encoded_frame)


async def test_transceiver_codecs_and_receiver_queue_exist_on_real_objects():
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        transceiver = pc.addTransceiver("video", direction="recvonly")
        assert isinstance(transceiver.receiver._RTCRtpReceiver__decoder_queue, queue.Queue)
        assert isinstance(transceiver.receiver._RTCRtpReceiver__rtx_ssrc, dict)
        assert transceiver._codecs == []
        assert aiortc_internals.negotiated_codec(transceiver) is None
    finally:
        await pc.close()


async def connect(sender: RTCPeerConnection, receiver: RTCPeerConnection) -> None:
    await sender.setLocalDescription(await sender.createOffer())
    await receiver.setRemoteDescription(sender.localDescription)
    await receiver.setLocalDescription(await receiver.createAnswer())
    await sender.setRemoteDescription(receiver.localDescription)


async def test_tapped_receiver_yields_encoded_packets_and_pli_reaches_the_sender():
    source = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    sink = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    packets: list[tuple[RTCRtpCodecParameters, av.Packet]] = []
    ended = asyncio.Event()
    keyframe_requested = asyncio.Event()
    got_packets = asyncio.Event()

    def on_packet(codec: RTCRtpCodecParameters, packet: av.Packet) -> None:
        packets.append((codec, packet))
        if len(packets) >= 10:
            got_packets.set()

    @sink.on("track")
    def on_track(track) -> None:
        receiver = next(t.receiver for t in sink.getTransceivers() if t.receiver.track is track)
        aiortc_internals.tap_receiver(receiver, on_packet, ended.set)
        aiortc_internals.tap_receiver(receiver, on_packet, ended.set)  # idempotent
        assert aiortc_internals.is_tapped(receiver)

    def on_keyframe_request() -> None:
        keyframe_requested.set()

    try:
        transceiver = source.addTransceiver(PatternVideoTrack(), direction="sendonly")
        aiortc_internals.on_keyframe_request(transceiver.sender, on_keyframe_request)
        await connect(source, sink)
        await asyncio.wait_for(got_packets.wait(), 15)

        codec, first = packets[0]
        assert codec.mimeType == "video/VP8"
        assert first.time_base == fractions.Fraction(1, 90000)
        assert is_keyframe(codec.mimeType, bytes(first))
        pts = [p.pts for _, p in packets]
        assert pts == sorted(pts) and abs(pts[1] - pts[0] - 3000) <= 1  # RTP clock units, 30 fps
        # the decoder was bypassed: the receiver's track never got a decoded frame
        receiver = sink.getTransceivers()[0].receiver
        assert receiver.track._queue.empty()
        assert aiortc_internals.negotiated_codec(sink.getTransceivers()[0]).mimeType == "video/VP8"

        ssrcs = aiortc_internals.media_ssrcs(receiver)
        assert ssrcs == [transceiver.sender._ssrc]
        await aiortc_internals.send_picture_loss(receiver, ssrcs[0])
        await asyncio.wait_for(keyframe_requested.wait(), 5)
    finally:
        await source.close()
        await sink.close()
    assert ended.is_set(), "the tap did not report the receiver's end"
    # aiortc still starts and joins its decoder thread: it is not left running
    assert not [t for t in threading.enumerate() if t.name.endswith("-decoder")]


def test_rtcp_pli_packet_drives_the_keyframe_hook():
    """The same check without a network: feed a PLI to a sender's RTCP handler."""

    async def run() -> int:
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        calls = 0

        def hook() -> None:
            nonlocal calls
            calls += 1

        try:
            sender = pc.addTransceiver("video", direction="sendonly").sender
            aiortc_internals.on_keyframe_request(sender, hook)
            await sender._handle_rtcp_packet(RtcpPsfbPacket(fmt=RTCP_PSFB_PLI, ssrc=1, media_ssrc=sender._ssrc))
        finally:
            await pc.close()
        return calls

    assert asyncio.run(run()) == 1


def test_chosen_codec_follows_aiortc_negotiation():
    opus = RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48000, channels=2, payloadType=111)
    pcmu = RTCRtpCodecParameters(mimeType="audio/PCMU", clockRate=8000, channels=1, payloadType=0)
    vp9 = RTCRtpCodecParameters(mimeType="video/VP9", clockRate=90000, payloadType=98)
    assert aiortc_internals.chosen_codec("audio", [opus, pcmu]).mimeType == "audio/opus"
    assert aiortc_internals.chosen_codec("audio", [pcmu, opus]).mimeType == "audio/PCMU"
    assert aiortc_internals.chosen_codec("video", [vp9]) is None


def test_candidate_lines_parse_with_or_without_prefix():
    line = "842163049 1 udp 1677729535 192.0.2.2 50000 typ srflx raddr 0.0.0.0 rport 0"
    for text in (line, "candidate:" + line):
        candidate = aiortc_internals.parse_candidate(text)
        assert (candidate.ip, candidate.port, candidate.type) == ("192.0.2.2", 50000, "srflx")
    with pytest.raises(Exception):  # noqa: B017 - aiortc asserts on malformed lines
        aiortc_internals.parse_candidate("garbage")


def rtp(seq: int, timestamp: int, data: bytes, marker: bool = False) -> RtpPacket:
    packet = RtpPacket(payload_type=96, sequence_number=seq, timestamp=timestamp)
    packet.marker = int(marker)
    packet._data = data  # what the receiver sets after depayloading
    return packet


def test_forwarding_jitter_buffer_releases_video_on_the_marker_bit():
    buffer = aiortc_internals.ForwardingJitterBuffer("video")
    assert isinstance(buffer, JitterBuffer)
    assert buffer.add(rtp(100, 3000, b"a")) == (False, None)
    _, frame = buffer.add(rtp(101, 3000, b"b", marker=True))
    assert (frame.data, frame.timestamp) == (b"ab", 3000)  # at once, not when frame 2 starts
    # a frame with a hole waits for it, then goes out when the hole is filled
    assert buffer.add(rtp(102, 6000, b"c"))[1] is None
    assert buffer.add(rtp(104, 6000, b"e", marker=True))[1] is None
    _, frame = buffer.add(rtp(103, 6000, b"d"))
    assert (frame.data, frame.timestamp) == (b"cde", 6000)
    # a frame without a marker bit is still completed by aiortc's rule (the next frame starts)
    assert buffer.add(rtp(105, 9000, b"g"))[1] is None
    _, frame = buffer.add(rtp(106, 12000, b"i"))
    assert frame.data == b"g"


def test_forwarding_jitter_buffer_passes_audio_through_in_order():
    buffer = aiortc_internals.ForwardingJitterBuffer("audio")
    assert buffer.add(rtp(10, 960, b"x"))[1].data == b"x"
    assert buffer.add(rtp(12, 2880, b"z"))[1].data == b"z"  # a gap is not waited for
    assert buffer.add(rtp(11, 1920, b"y")) == (False, None)  # late: dropped
    assert buffer.add(rtp(12, 2880, b"z")) == (False, None)  # duplicate: dropped
    assert buffer.add(rtp(65535, 0, b"w"))[1] is None  # far behind (wraps as older)
    assert buffer.add(rtp(13, 3840, b"n"))[1].data == b"n"


def test_receivers_have_the_jitter_buffer_the_tap_replaces():
    init = inspect.getsource(aiortc.RTCRtpReceiver.__init__)
    assert "self.__jitter_buffer = JitterBuffer(capacity=512, is_video=True)" in init
    assert "self.__kind = kind" in init
    assert "pli_flag, encoded_frame = self.__jitter_buffer.add(packet)" in inspect.getsource(
        aiortc.RTCRtpReceiver._handle_rtp_packet
    )
