"""Every aiortc internal the SFU relies on, checked against the installed aiortc.

If one of these fails after an aiortc upgrade, media/aiortc_internals.py needs porting; nothing
else in the SFU touches aiortc's private parts.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import inspect
import threading

import aioice
import aiortc
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection
from aiortc.codecs import get_encoder
from aiortc.mediastreams import MediaStreamError
from aiortc.rtcdtlstransport import RTCDtlsTransport, RtpRouter
from aiortc.rtcrtpparameters import RTCRtpSendParameters
from aiortc.rtp import RtcpPsfbPacket, RtcpRrPacket, RtcpSrPacket, RtpPacket
from roomwire.media import aiortc_internals
from roomwire.media.rtp_packets import RTP_HEADER
from roomwire.media.sources import PatternVideoTrack

from tests.media.sfu_peer import wait_until

pytestmark = pytest.mark.timeout(30)


def config() -> RTCConfiguration:
    return RTCConfiguration(iceServers=[])


def test_installed_aiortc_is_the_pinned_release():
    assert aiortc.__version__ == aiortc_internals.PINNED_AIORTC
    aiortc_internals.verify()


def test_private_parts_are_where_the_sfu_expects_them():
    # ingress: the DTLS transport hands each parsed packet to the receiver it routes it to
    handle_rtp = inspect.getsource(RTCDtlsTransport._handle_rtp_data)
    assert "await receiver._handle_rtp_packet(packet, arrival_time_ms=arrival_time_ms)" in handle_rtp
    assert "await recipient._handle_rtcp_packet(packet)" in inspect.getsource(RTCDtlsTransport._handle_rtcp_data)
    # ... or, once tapped, the ICE connection's datagram callback hands SRTP over at once
    assert "self.receiver.data_received(data, self.local_candidate.component)" in inspect.getsource(
        aioice.ice.StunProtocol.datagram_received
    )
    assert "self._rx_srtp = Session(rx_policy)" in inspect.getsource(RTCDtlsTransport._setup_srtp)
    assert "self._rtp_header_extensions_map.configure(parameters)" in inspect.getsource(
        RTCDtlsTransport._register_rtp_receiver
    )
    receiver_init = inspect.getsource(aiortc.RTCRtpReceiver.__init__)
    assert "self.__decoder_queue: queue.Queue = queue.Queue()" in receiver_init
    assert "self.__decoder_queue.put(None)" in inspect.getsource(aiortc.RTCRtpReceiver._RTCRtpReceiver__stop_decoder)
    # egress: the connection starts a sender through send(), which takes over the RTP and RTCP
    connect = inspect.getsource(aiortc.RTCPeerConnection._RTCPeerConnection__connect)
    assert "await transceiver.sender.send(self.__localRtp(transceiver))" in connect
    assert list(inspect.signature(aiortc.RTCRtpSender.send).parameters) == ["self", "parameters"]
    assert "if self.__started:" in inspect.getsource(aiortc.RTCRtpSender.stop)
    assert "self._tx_srtp = Session(tx_policy)" in inspect.getsource(RTCDtlsTransport._setup_srtp)
    assert "self._connection = gatherer._connection" in inspect.getsource(aiortc.RTCIceTransport.__init__)
    assert "add_recipient(self.senders.get(packet.media_ssrc))" in inspect.getsource(RtpRouter.route_rtcp)
    # what the SDP says about a sender
    transceiver_sdp = inspect.getsource(aiortc.rtcpeerconnection.create_media_description_for_transceiver)
    assert 'media.msid = f"{transceiver.sender._stream_id} {transceiver.sender._track_id}"' in transceiver_sdp
    assert "transceiver.sender._ssrc" in transceiver_sdp and "transceiver.sender._rtx_ssrc" in transceiver_sdp


async def connect(offerer: RTCPeerConnection, answerer: RTCPeerConnection) -> None:
    await offerer.setLocalDescription(await offerer.createOffer())
    await answerer.setRemoteDescription(offerer.localDescription)
    await answerer.setLocalDescription(await answerer.createAnswer())
    await offerer.setRemoteDescription(answerer.localDescription)


async def test_a_tapped_receiver_hands_over_rtp_and_sender_reports_and_says_when_it_ends():
    source, sink = RTCPeerConnection(config()), RTCPeerConnection(config())
    packets: list[RtpPacket] = []
    reports: list[RtcpSrPacket] = []
    ended = asyncio.Event()

    @sink.on("track")
    def on_track(track) -> None:
        receiver = next(t.receiver for t in sink.getTransceivers() if t.receiver.track is track)
        aiortc_internals.tap_receiver(
            receiver, packets.append, lambda p: reports.append(p) if isinstance(p, RtcpSrPacket) else None, ended.set
        )
        with pytest.raises(ValueError):
            aiortc_internals.tap_receiver(receiver, packets.append, reports.append, ended.set)

    try:
        sender = source.addTransceiver(PatternVideoTrack(), direction="sendonly").sender
        await connect(source, sink)
        await wait_until(lambda: len(packets) >= 30 and reports, timeout=15)
        transceiver = sink.getTransceivers()[0]
        codec, rtx = aiortc_internals.negotiated_codecs(transceiver)[:2]
        assert codec.mimeType == "video/VP8" and rtx.parameters["apt"] == codec.payloadType
        assert {p.payload_type for p in packets} == {codec.payloadType}
        assert {p.ssrc for p in packets} == {sender._ssrc} == {r.ssrc for r in reports}
        seqs = [p.sequence_number for p in packets]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # as sent, nothing held back
        # after the first packet, the connection hands SRTP over without the DTLS reader task
        assert "data_received" in transceiver.receiver.transport.transport._connection.__dict__
        assert packets[-1].extensions.mid == transceiver.mid, "parsed with the negotiated extensions"
        assert transceiver.receiver.track._queue.empty(), "nothing reached the decoder"
    finally:
        await source.close()
        await sink.close()
    assert ended.is_set(), "the tap did not report the receiver's end"
    assert not [t for t in threading.enumerate() if t.name.endswith("-decoder")]


async def test_a_taken_over_sender_sends_what_the_srtp_writer_writes_and_hears_the_receivers_rtcp():
    server, client = RTCPeerConnection(config()), RTCPeerConnection(config())
    started: list[RTCRtpSendParameters] = []
    feedback: list[object] = []
    frames = []

    readers: list[asyncio.Task[None]] = []

    @client.on("track")
    def on_track(track) -> None:
        async def read() -> None:
            with contextlib.suppress(MediaStreamError):
                while True:
                    frames.append(await track.recv())

        readers.append(asyncio.ensure_future(read()))

    try:
        transceiver = server.addTransceiver("video", direction="sendonly")
        sender = transceiver.sender
        aiortc_internals.take_over_sender(sender, started.append)
        aiortc_internals.set_stream_id(sender, "rw-publisher")
        ssrc, rtx_ssrc = aiortc_internals.sender_ssrcs(sender)
        await connect(server, client)
        assert "a=msid:rw-publisher " in server.localDescription.sdp
        assert f"a=ssrc:{ssrc} " in server.localDescription.sdp
        assert f"a=ssrc:{rtx_ssrc} " in server.localDescription.sdp
        await wait_until(lambda: started)
        parameters = started[0]
        assert parameters.codecs[0].mimeType == "video/VP8" and parameters.muxId == transceiver.mid
        assert not sender._RTCRtpSender__started, "aiortc's own RTP and RTCP tasks must not run"

        dtls = sender.transport
        writer = aiortc_internals.srtp_writer(dtls)
        assert writer is not None and writer.open
        sink = aiortc_internals.RtcpSink(dtls, ssrc, feedback.append)
        encoder = get_encoder(parameters.codecs[0])
        video = PatternVideoTrack(160, 120)
        seq = 1000
        for n in range(30):
            frame = video.make_frame(n)
            frame.pts, frame.time_base = n * 3000, fractions.Fraction(1, 90000)
            payloads, timestamp = encoder.encode(frame, force_keyframe=n == 0)
            for i, payload in enumerate(payloads):
                marker = 0x80 if i == len(payloads) - 1 else 0
                header = RTP_HEADER.pack(0x80, marker | parameters.codecs[0].payloadType, seq, timestamp, ssrc)
                assert writer.send_rtp(header + payload)
                seq += 1
            await asyncio.sleep(1 / 30)
        await wait_until(lambda: len(frames) >= 20 and any(isinstance(p, RtcpRrPacket) for p in feedback))
        # the client's receiver asks for a keyframe through the same route (RTCP PLI)
        receiver = client.getTransceivers()[0].receiver
        await receiver._send_rtcp_pli(ssrc)
        await wait_until(lambda: any(isinstance(p, RtcpPsfbPacket) for p in feedback), timeout=5)
        sink.close()
        assert dtls._rtp_router.senders.get(ssrc) is None
    finally:
        await server.close()
        await client.close()
        await asyncio.gather(*readers)
    assert writer.send_rtp(b"\x80" * 20) is False, "a closed connection takes nothing"


async def test_no_writer_before_the_transport_is_connected():
    pc = RTCPeerConnection(config())
    try:
        transceiver = pc.addTransceiver("video", direction="sendonly")
        assert aiortc_internals.srtp_writer(transceiver.sender.transport) is None
    finally:
        await pc.close()


def test_receive_statistics_and_bitrate_estimator_work_on_packets():
    statistics = aiortc_internals.receive_statistics(90000)
    estimator = aiortc_internals.bitrate_estimator()
    estimate = None
    for seq in range(200):
        packet = RtpPacket(payload_type=96, sequence_number=seq if seq != 50 else 0, timestamp=seq * 3000)
        if seq != 50:
            statistics.add(packet)
        estimate = (
            estimator.add(
                arrival_time_ms=seq * 33, abs_send_time=(seq * 33 * 262) & 0xFFFFFF, payload_size=1000, ssrc=5
            )
            or estimate
        )
    assert statistics.packets_lost == 1 and statistics.max_seq == 199
    assert estimate is not None and estimate[1] == [5] and estimate[0] > 0


def test_chosen_codec_follows_aiortc_negotiation():
    from aiortc.rtcrtpparameters import RTCRtpCodecParameters

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
