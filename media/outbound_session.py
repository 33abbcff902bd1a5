"""The media side of one subscriber's connection: its outbound streams and their RTCP.

In: the subscriber's RTCP for each stream's SSRC (through aiortc's router): NACKs are
answered from the track's packet cache, PLI goes to the publisher (rate-limited by the
track), receiver reports and REMB feed the `CongestionGuard` that pauses this subscriber's
video when it cannot keep up. Out: a sender report with the source description per stream
about once a second, and a BYE when a stream stops.
"""

from __future__ import annotations

import asyncio
import random

from aiortc import RTCDtlsTransport
from aiortc.rtcrtpparameters import RTCRtpSendParameters
from aiortc.rtp import (
    RTCP_PSFB_APP,
    RTCP_PSFB_FIR,
    RTCP_PSFB_PLI,
    RTCP_RTPFB_NACK,
    AnyRtcpPacket,
    RtcpPsfbPacket,
    RtcpRrPacket,
    RtcpRtpfbPacket,
    RtcpSrPacket,
    unpack_remb_fci,
)

from . import aiortc_internals, rtcp_packets
from .aiortc_internals import RtcpSink, SrtpWriter
from .congestion import CongestionGuard
from .media_metrics import MediaStats
from .outbound_stream import OutboundStream


class _Started:
    __slots__ = ("cname", "sink", "writer")

    def __init__(self, writer: SrtpWriter, sink: RtcpSink, cname: str) -> None:
        self.writer = writer
        self.sink = sink
        self.cname = cname


class OutboundSession:
    def __init__(self, stats: MediaStats) -> None:
        self._stats = stats
        self._started: dict[OutboundStream, _Started] = {}
        self._last_remb: RtcpPsfbPacket | None = None
        self.guard = CongestionGuard(self._pause_video, self._resume_video)
        self._loop = asyncio.get_running_loop()
        self._report_timer: asyncio.TimerHandle | None = None

    @property
    def streams(self) -> list[OutboundStream]:
        return list(self._started)

    def start(self, stream: OutboundStream, parameters: RTCRtpSendParameters, dtls: RTCDtlsTransport) -> bool:
        """aiortc negotiated the stream's m-line: forward from now on. False if the transport
        is not connected (aiortc only starts senders on a connected one)."""
        if stream in self._started:
            return True
        writer = aiortc_internals.srtp_writer(dtls)
        if writer is None:
            return False
        stream.start(parameters, writer)
        sink = RtcpSink(dtls, stream.ssrc, lambda packet: self._on_rtcp(stream, packet))
        self._started[stream] = _Started(writer, sink, parameters.rtcp.cname or "")
        if stream.kind == "video" and self.guard.paused:
            stream.pause()
        stream.forwarder.attach(stream)
        if self._report_timer is None:
            self._report_timer = self._loop.call_later(rtcp_packets.REPORT_INTERVAL * random.random(), self._report)
        return True

    def stop(self, stream: OutboundStream) -> None:
        """The stream's track went away: stop sending it, and tell the subscriber (BYE)."""
        stream.forwarder.detach(stream)
        started = self._started.pop(stream, None)
        if started is not None:
            started.sink.close()
            started.writer.send_rtcp(rtcp_packets.goodbye([stream.ssrc]))

    def close(self) -> None:
        for stream in list(self._started):
            self.stop(stream)
        self.guard.close()
        if self._report_timer is not None:
            self._report_timer.cancel()
            self._report_timer = None

    # -- RTCP in ---------------------------------------------------------------------------------

    def _on_rtcp(self, stream: OutboundStream, packet: AnyRtcpPacket) -> None:
        if isinstance(packet, RtcpRtpfbPacket):
            if packet.fmt == RTCP_RTPFB_NACK and packet.media_ssrc == stream.ssrc:
                stream.resend(rtcp_packets.nacked(packet))
        elif isinstance(packet, RtcpPsfbPacket):
            if packet.fmt in (RTCP_PSFB_PLI, RTCP_PSFB_FIR):
                stream.forwarder.request_keyframe()
            elif packet.fmt == RTCP_PSFB_APP and packet is not self._last_remb:
                self._last_remb = packet  # the router hands one REMB to each SSRC it lists
                self._on_remb(packet)
        elif isinstance(packet, (RtcpRrPacket, RtcpSrPacket)) and stream.kind == "video" and not stream.paused:
            for report in packet.reports:
                if report.ssrc == stream.ssrc:
                    self.guard.report(report.fraction_lost / 256)

    def _on_remb(self, packet: RtcpPsfbPacket) -> None:
        try:
            bitrate, ssrcs = unpack_remb_fci(packet.fci)
        except ValueError:
            return
        covered = [s for s in self._started if s.ssrc in ssrcs and s.kind == "video" and not s.paused]
        if covered:
            self.guard.estimate(bitrate, sum(s.octets_sent for s in covered))

    def _pause_video(self) -> None:
        for stream in self._started:
            if stream.kind == "video":
                stream.pause()

    def _resume_video(self) -> None:
        for stream in self._started:
            if stream.kind == "video":
                stream.resume()

    # -- RTCP out --------------------------------------------------------------------------------

    def _report(self) -> None:
        self._report_timer = self._loop.call_later(rtcp_packets.report_delay(), self._report)
        now = self._loop.time()
        for stream, started in self._started.items():
            report = stream.sender_report(now)
            if report is not None:
                started.writer.send_rtcp(report + rtcp_packets.source_description(started.cname, [stream.ssrc]))
