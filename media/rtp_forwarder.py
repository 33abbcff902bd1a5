"""One published track: each RTP packet its publisher sends goes to every subscriber at once.

Nothing is depayloaded, jitter-buffered or re-packetized. The forwarder unwraps
retransmissions (RTX), drops duplicates, keeps the last video packets for NACKs
(`PacketCache`), NACKs its own receive gaps to the publisher and gives them up after
~150 ms (`ReceiveGaps`: then a keyframe is requested, and every subscriber gets a
padding-only packet in place of each lost one, so no receiver waits for it), marks the first
packet of each keyframe, and hands each packet to every `OutboundStream`. Towards the
publisher it sends receiver reports, REMB (aiortc's bandwidth estimator) and
rate-limited PLIs.

A new publication gets a new forwarder: a re-published track starts clean.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import AnyRtcpPacket, RtcpReceiverInfo, RtcpSrPacket, RtpPacket

from . import aiortc_internals, rtcp_packets
from .keyframes import KeyframeRequester, keyframe_detector
from .media_metrics import MediaStats
from .outbound_stream import OutboundStream
from .packet_cache import PacketCache
from .receive_gaps import ReceiveGaps
from .rtp_packets import MARKER, InboundPacket, abs_send_time, audio_level_byte, rtx_payload_type

logger = logging.getLogger(__name__)


class TrackForwarder:
    """`send_rtcp(bytes)` reaches the publisher; `rtcp_ssrc` is our SSRC in what we send it."""

    def __init__(
        self,
        kind: str,
        codecs: list[RTCRtpCodecParameters],
        send_rtcp: Callable[[bytes], bool],
        rtcp_ssrc: int,
        stats: MediaStats,
    ) -> None:
        codec = codecs[0]
        self.kind = kind
        self.clock_rate = codec.clockRate
        self._video = kind == "video"
        self._media_pt = codec.payloadType
        self._rtx_pt = rtx_payload_type(codecs)
        self._send_rtcp = send_rtcp
        self._rtcp_ssrc = rtcp_ssrc
        self._stats = stats
        self._is_keyframe = keyframe_detector(codec.mimeType)
        self._streams: tuple[OutboundStream, ...] = ()
        self._keyframes = KeyframeRequester(self._send_pli)
        self.cache = PacketCache() if self._video else None
        self._gaps = ReceiveGaps(self._send_nack, self._lost) if self._video else None
        self._estimator = aiortc_internals.bitrate_estimator() if self._video else None
        self._statistics = aiortc_internals.receive_statistics(self.clock_rate)
        self.ssrc: int | None = None  # the publisher's media SSRC
        self._last: InboundPacket | None = None  # the newest packet
        # the publisher's last SR (NTP, RTP timestamp, loop time): the mapping, and our LSR
        self.sender_report: tuple[int, int, float] | None = None
        self._closed = False
        self._loop = asyncio.get_running_loop()
        self._report_timer = self._loop.call_later(rtcp_packets.REPORT_INTERVAL, self._report)

    # -- ingress ---------------------------------------------------------------------------------

    def receive(self, rtp: RtpPacket) -> None:
        """A packet from the publisher (aiortc parsed it; nothing else touched it)."""
        now = self._loop.time()
        payload = rtp.payload
        if rtp.payload_type == self._media_pt:
            if rtp.ssrc != self.ssrc:
                self._new_source(rtp, now)
            seq = rtp.sequence_number
            self._statistics.add(rtp)
            if self._estimator is not None and rtp.extensions.abs_send_time is not None:
                self._estimate(rtp, now)
        elif rtp.payload_type == self._rtx_pt and self.ssrc is not None and len(payload) >= 2:
            seq = (payload[0] << 8) | payload[1]
            payload = payload[2:]
        else:
            self._stats.dropped["padding" if rtp.payload_type == self._rtx_pt else "unknown_payload_type"] += 1
            return
        if self.cache is not None:
            if self.cache.get(seq) is not None:
                self._stats.dropped["duplicate"] += 1
                return
            self._gaps.received(seq, now)  # type: ignore[union-attr]
        if payload:
            packet = InboundPacket(
                seq,
                rtp.timestamp,
                MARKER if rtp.marker else 0,
                payload,
                now,
                self._is_keyframe(payload) if self._is_keyframe is not None else False,
                None if self._video else audio_level_byte(rtp),
            )
        else:  # padding only (bandwidth probing)
            packet = InboundPacket.padding_only(seq, rtp.timestamp, now)
        if self.cache is not None:
            self.cache.put(packet)
        if self._last is None or 0 < (seq - self._last.seq) & 0xFFFF < 0x8000:
            self._last = packet
        self._fan_out(packet)

    def _fan_out(self, packet: InboundPacket) -> None:
        value = abs_send_time() if self._video else packet.level
        sent = octets = 0
        for stream in self._streams:
            size = stream.forward(packet, value)
            if size:
                sent += 1
                octets += size
        if sent:
            self._stats.forwarded_packets[self.kind] += sent
            self._stats.forwarded_bytes[self.kind] += octets

    def _new_source(self, rtp: RtpPacket, now: float) -> None:
        """The first packet, or a publisher that switched its source (a new SSRC): start over
        for every subscriber, timestamps carried on across the switch."""
        last = self._last
        if self.ssrc is not None:
            logger.info("%s track: source %08x replaced by %08x", self.kind, self.ssrc, rtp.ssrc)
        self.ssrc = rtp.ssrc
        self._statistics = aiortc_internals.receive_statistics(self.clock_rate)
        self.sender_report = None
        if self._video:
            self.cache = PacketCache()
            self._gaps.close()  # type: ignore[union-attr]
            self._gaps = ReceiveGaps(self._send_nack, self._lost)
        self._last = None
        if last is not None:
            expected = last.timestamp + int((now - last.arrival) * self.clock_rate)
            for stream in self._streams:
                stream.restart((expected - rtp.timestamp) & 0xFFFFFFFF)

    def on_rtcp(self, packet: AnyRtcpPacket) -> None:
        """RTCP from the publisher: its sender reports, for the mapping and our LSR."""
        if isinstance(packet, RtcpSrPacket) and packet.ssrc == self.ssrc:
            info = packet.sender_info
            self.sender_report = (info.ntp_timestamp, info.rtp_timestamp, self._loop.time())

    # -- loss and keyframes ----------------------------------------------------------------------

    def _send_nack(self, seqs: list[int]) -> None:
        if self.ssrc is not None:
            self._stats.nacks_sent += len(seqs)
            self._send_rtcp(rtcp_packets.nack(self._rtcp_ssrc, self.ssrc, seqs))

    def _lost(self, seqs: list[int]) -> None:
        """Packets given up: a keyframe repairs the picture; until it comes, each subscriber gets
        a padding-only packet in place of each lost one, so that none waits for the hole."""
        self._stats.unrepaired += len(seqs)
        self.request_keyframe()
        now = self._loop.time()
        for seq in seqs:
            filler = InboundPacket.padding_only(seq, self._timestamp_near(seq), now)
            if self.cache is not None:
                self.cache.put(filler)  # a repair that comes later still is a duplicate
            self._fan_out(filler)

    def _timestamp_near(self, seq: int) -> int:
        assert self.cache is not None
        for back in range(1, 32):
            before = self.cache.get((seq - back) & 0xFFFF)
            if before is not None:
                return before.timestamp
        return self._last.timestamp if self._last is not None else 0

    def request_keyframe(self) -> None:
        if self._video and not self._closed:
            self._stats.keyframes_requested += 1
            self._keyframes.request()

    def _send_pli(self) -> bool:
        if self.ssrc is None or not self._send_rtcp(rtcp_packets.pli(self._rtcp_ssrc, self.ssrc)):
            return False
        self._stats.plis_sent += 1
        return True

    # -- reports to the publisher ----------------------------------------------------------------

    def _estimate(self, rtp: RtpPacket, now: float) -> None:
        estimate = self._estimator.add(  # type: ignore[union-attr]
            arrival_time_ms=int(now * 1000),
            abs_send_time=rtp.extensions.abs_send_time,
            payload_size=len(rtp.payload) + rtp.padding_size,
            ssrc=rtp.ssrc,
        )
        if estimate is not None:
            bitrate, ssrcs = estimate
            self._send_rtcp(rtcp_packets.remb(self._rtcp_ssrc, bitrate, ssrcs))

    def _report(self) -> None:
        self._report_timer = self._loop.call_later(rtcp_packets.report_delay(), self._report)
        statistics = self._statistics
        if self.ssrc is None or statistics.max_seq is None:
            return
        lsr = dlsr = 0
        if self.sender_report is not None:
            ntp, _, received_at = self.sender_report
            lsr = (ntp >> 16) & 0xFFFFFFFF
            dlsr = int((self._loop.time() - received_at) * 65536)
        report = RtcpReceiverInfo(
            ssrc=self.ssrc,
            fraction_lost=statistics.fraction_lost,
            packets_lost=statistics.packets_lost,
            highest_sequence=(statistics.cycles + statistics.max_seq) & 0xFFFFFFFF,
            jitter=statistics.jitter,
            lsr=lsr,
            dlsr=dlsr,
        )
        self._send_rtcp(rtcp_packets.receiver_report(self._rtcp_ssrc, [report]))

    # -- subscribers -----------------------------------------------------------------------------

    def attach(self, stream: OutboundStream) -> None:
        if self._closed or stream in self._streams:
            return
        self._streams = (*self._streams, stream)
        if self._video:
            self.request_keyframe()

    def detach(self, stream: OutboundStream) -> None:
        self._streams = tuple(s for s in self._streams if s is not stream)

    def close(self) -> None:
        """The publication is over (withdrawn, or its receiver ended)."""
        self._closed = True
        self._streams = ()
        self._report_timer.cancel()
        self._keyframes.close()
        if self._gaps is not None:
            self._gaps.close()
