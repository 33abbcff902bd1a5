"""Every use of aiortc's private internals (and of aioice's, beneath it), in one place, pinned.

The SFU keeps aiortc's peer connections for ICE, DTLS and SDP, and moves RTP itself:
- ingress: a receiver's RTP packets come to the SFU as aiortc parsed them, before its
  jitter buffer and decoder (`tap_receiver`), and so do the sender reports of the publisher;
- egress: a subscriber's `RTCRtpSender` never runs its encoder loop or RTCP task
  (`take_over_sender`); the SFU writes RTP and RTCP through the connection's own SRTP session
  and selected ICE pair (`SrtpWriter`) and receives the subscriber's feedback for that
  sender's SSRC (`RtcpSink`).
tests/media/test_aiortc_internals.py fails loudly if an aiortc release moves any of this, so
an upgrade breaks this one file, not the SFU.
"""

from __future__ import annotations

import inspect
import queue
import struct
from collections.abc import Callable
from typing import Any

import aioice
import aiortc
import pylibsrtp
from aiortc import (
    RTCDtlsTransport,
    RTCIceCandidate,
    RTCPeerConnection,
    RTCRtpReceiver,
    RTCRtpSender,
    RTCRtpTransceiver,
)
from aiortc.codecs import CODECS
from aiortc.rate import RemoteBitrateEstimator
from aiortc.rtcpeerconnection import find_common_codecs
from aiortc.rtcrtpparameters import RTCRtpCodecParameters, RTCRtpSendParameters
from aiortc.rtcrtpreceiver import StreamStatistics
from aiortc.rtp import AnyRtcpPacket, RtpPacket
from aiortc.sdp import SessionDescription, candidate_from_sdp
from pylibsrtp._binding import ffi, lib

PINNED_AIORTC = "1.16.0"

# a packet as aiortc parsed it, on the event loop
RtpHandler = Callable[[RtpPacket], None]
RtcpHandler = Callable[[AnyRtcpPacket], None]

_DECODER_QUEUE = "_RTCRtpReceiver__decoder_queue"
_TAP = "_roomwire_rtp"  # where a tapped receiver keeps its handler (a cycle, never a global)
MAX_SEND_BUFFER = 256 * 1024  # bytes an ICE pair's socket may hold in user space before we drop
# pylibsrtp's session buffer is 1500 bytes; the SRTP trailer (tag, MKI) needs up to 144 of them
MAX_RTP_SIZE = 1500 - pylibsrtp.SRTP_MAX_TRAILER_LEN


class IncompatibleAiortc(RuntimeError):
    """aiortc is not the release whose internals this module was written against."""


def verify() -> None:
    """Fail loudly, at SFU start, if the installed aiortc (or the aioice it runs on) is not what
    this module was written against."""
    if aiortc.__version__ != PINNED_AIORTC:
        raise IncompatibleAiortc(
            f"roomwire's SFU relies on aiortc {PINNED_AIORTC} internals; found {aiortc.__version__}"
        )
    # aioice is a range in aiortc's requirements: check the parts SrtpWriter uses by shape
    pair = aioice.ice.CandidatePair
    if (
        "self._nominated" not in inspect.getsource(aioice.Connection.__init__)
        or "self.protocol = protocol" not in inspect.getsource(pair.__init__)
        or not isinstance(getattr(pair, "remote_addr", None), property)
    ):
        raise IncompatibleAiortc(f"aioice {aioice.__version__} has no selected pairs where SrtpWriter looks")
    # and pylibsrtp, for SrtpWriter's direct call into libsrtp
    session = inspect.getsource(pylibsrtp.Session)
    if 'self._cdata = ffi.new("char[]", 1500)' not in session or "self._srtp = ffi.gc(" not in session:
        raise IncompatibleAiortc(f"pylibsrtp {pylibsrtp.__version__}'s Session is not what SrtpWriter uses")


# -- ingress -------------------------------------------------------------------------------------


class _EndSignal:
    """Stands in for a receiver's decoder input queue, only to learn when the receiver stops.

    With the tap in place nothing is ever queued for decoding; aiortc still starts its decoder
    thread, which waits on the original queue, and stops it by queueing None (RTCP BYE,
    disconnect, `stop()`): that None is passed on, and `on_end` runs.
    """

    def __init__(self, original: queue.Queue, on_end: Callable[[], None]) -> None:
        self._original = original
        self._on_end = on_end

    def put(self, item: Any) -> None:
        self._original.put(item)
        if item is None:
            self._on_end()

    def get(self, *args: Any, **kwargs: Any) -> Any:
        return self._original.get(*args, **kwargs)


def tap_receiver(
    receiver: RTCRtpReceiver, on_rtp: RtpHandler, on_rtcp: RtcpHandler, on_end: Callable[[], None]
) -> None:
    """Hand the receiver's RTP packets to `on_rtp` instead of its jitter buffer and decoder, and
    its RTCP (the remote sender's reports) to `on_rtcp` as well as to aiortc.

    The first packet comes the way aiortc delivers it (the ICE connection queues each datagram
    for the DTLS transport's reader task, which decrypts, parses and routes it); from then on
    `_take_rtp_early` has the connection hand its SRTP packets over as they arrive.
    `on_end` runs when the receiver stops (RTCP BYE, disconnect, close). Call it before media
    flows; a receiver is tapped once.
    """
    current = getattr(receiver, _DECODER_QUEUE)
    if isinstance(current, _EndSignal):
        raise ValueError("this receiver is already tapped")
    if not isinstance(current, queue.Queue):
        raise IncompatibleAiortc("RTCRtpReceiver's decoder queue is not where it used to be")
    aiortc_rtcp = receiver._handle_rtcp_packet
    setattr(receiver, _TAP, on_rtp)

    async def handle_rtp(packet: RtpPacket, arrival_time_ms: int) -> None:
        _take_rtp_early(receiver.transport)
        on_rtp(packet)

    async def handle_rtcp(packet: AnyRtcpPacket) -> None:
        on_rtcp(packet)
        await aiortc_rtcp(packet)  # BYE still ends the receiver

    receiver._handle_rtp_packet = handle_rtp  # type: ignore[method-assign]
    receiver._handle_rtcp_packet = handle_rtcp  # type: ignore[method-assign]
    setattr(receiver, _DECODER_QUEUE, _EndSignal(current, on_end))


def guard_rtcp_routing(pc: RTCPeerConnection) -> None:
    """aiortc routes a REMB by the SSRCs its FCI lists and reads as many as the FCI's count
    byte says: a count larger than the packet raises `struct.error`, which aiortc does not
    catch (only ValueError), and the connection's DTLS reader task dies with it (no more RTCP,
    no data channels). Such a REMB is dropped instead, as aiortc drops RTCP it cannot parse.

    Call it after every description the connection applies, before its transports connect:
    each DTLS transport it has (media or data only) is guarded once."""
    transports = {transceiver.receiver.transport for transceiver in pc.getTransceivers()}
    if pc.sctp is not None:
        transports.add(pc.sctp.transport)
    for dtls in transports:
        router = dtls._rtp_router
        if "route_rtcp" not in router.__dict__:
            router.route_rtcp = _guarded(router.route_rtcp)


def _guarded(route_rtcp: Callable[[AnyRtcpPacket], set[Any]]) -> Callable[[AnyRtcpPacket], set[Any]]:
    def guarded(packet: AnyRtcpPacket) -> set[Any]:
        try:
            return route_rtcp(packet)
        except struct.error:
            return set()

    return guarded


def _take_rtp_early(dtls: RTCDtlsTransport) -> None:
    """Have the connection's SRTP packets decrypted, parsed and handed to their tapped receiver
    right in the ICE connection's datagram callback: no queue, no reader task wake-up per
    packet (that round trip cost more than all the rest of a packet's way in). Everything else
    (STUN, DTLS, RTCP) still goes to the DTLS transport's queue. Once per connection."""
    connection = dtls.transport._connection
    if "data_received" in connection.__dict__:
        return
    queue_datagram = connection.data_received
    router = dtls._rtp_router
    extensions = dtls._rtp_header_extensions_map
    length = ffi.new("int *")

    def data_received(data: bytes, component: int) -> None:
        session = dtls._rx_srtp
        size = len(data)
        if session is None or size < 12 or not 127 < data[0] < 192 or 191 < data[1] < 209:
            queue_datagram(data, component)
            return
        if size > 1500:
            return
        # pylibsrtp's unprotect(), without its per-call allocation and checks
        session._buffer[0:size] = data
        length[0] = size
        if lib.srtp_unprotect(session._srtp[0], session._cdata, length):
            return  # as aiortc does: what does not authenticate is dropped
        try:
            packet = RtpPacket.parse(session._buffer[0 : length[0]], extensions)
        except ValueError:
            return
        on_rtp = getattr(router.route_rtp(packet), _TAP, None)
        if on_rtp is not None:
            on_rtp(packet)

    connection.data_received = data_received


def receive_statistics(clock_rate: int) -> StreamStatistics:
    """aiortc's RFC 3550 receive statistics (loss, jitter) for the reports we send a publisher."""
    return StreamStatistics(clock_rate)


def bitrate_estimator() -> RemoteBitrateEstimator:
    """aiortc's receive-side bandwidth estimator (abs-send-time based), for REMB to a publisher.

    `add(arrival_time_ms, abs_send_time, payload_size, ssrc)` returns `(bitrate, ssrcs)` when
    the estimate should be sent.
    """
    return RemoteBitrateEstimator()


# -- egress --------------------------------------------------------------------------------------


def take_over_sender(sender: RTCRtpSender, on_start: Callable[[RTCRtpSendParameters], None]) -> None:
    """aiortc calls `sender.send(parameters)` once the transceiver is negotiated and DTLS is up,
    and again after every renegotiation; instead of starting the sender's encoder loop and RTCP
    task, each call hands the parameters to `on_start`. `sender.stop()` then has nothing to stop.
    """

    async def send(parameters: RTCRtpSendParameters) -> None:
        on_start(parameters)

    sender.send = send  # type: ignore[method-assign]


def sender_ssrcs(sender: RTCRtpSender) -> tuple[int, int]:
    """The SSRCs aiortc put in the SDP for this sender: (media, retransmission)."""
    return sender._ssrc, sender._rtx_ssrc


def set_stream_id(sender: RTCRtpSender, stream_id: str) -> None:
    """The MediaStream id of the sender's `a=msid` (browsers synchronise audio and video that share one)."""
    sender._stream_id = stream_id


class SrtpWriter:
    """Sends RTP and RTCP on a connected DTLS transport, synchronously: protected with the
    transport's own SRTP session, then handed to the selected ICE pair's datagram transport.

    RTP is protected by calling libsrtp on the session's own buffer: pylibsrtp's `protect()`
    allocates and checks on every call, a quarter of its cost, once per packet and subscriber.
    Nothing waits in user space: a datagram the socket cannot take (more than MAX_SEND_BUFFER
    already buffered), or a packet too large to protect, is dropped and `send_*` return False.
    """

    __slots__ = ("_addr", "_buffer", "_cdata", "_length", "_protect_rtcp", "_srtp", "_transport")

    def __init__(self, dtls: RTCDtlsTransport) -> None:
        pair = dtls.transport._connection._nominated.get(1)
        session = dtls._tx_srtp
        if session is None or pair is None:
            raise ConnectionError("the DTLS transport is not connected")
        self._srtp = session._srtp[0]
        self._cdata = session._cdata
        self._buffer = session._buffer
        self._length = ffi.new("int *")
        self._protect_rtcp = session.protect_rtcp
        self._transport = pair.protocol.transport
        self._addr = pair.remote_addr

    @property
    def open(self) -> bool:
        return not self._transport.is_closing()

    def send_rtp(self, packet: bytes) -> bool:
        transport = self._transport
        size = len(packet)
        if size > MAX_RTP_SIZE or transport.get_write_buffer_size() > MAX_SEND_BUFFER or transport.is_closing():
            return False
        self._buffer[0:size] = packet
        self._length[0] = size
        if lib.srtp_protect(self._srtp, self._cdata, self._length):
            return False
        transport.sendto(self._buffer[0 : self._length[0]], self._addr)
        return True

    def send_rtcp(self, packet: bytes) -> bool:
        transport = self._transport
        if transport.get_write_buffer_size() > MAX_SEND_BUFFER or transport.is_closing():
            return False
        try:
            transport.sendto(self._protect_rtcp(packet), self._addr)
        except (ValueError, pylibsrtp.Error):  # too large, or refused
            return False
        return True


def srtp_writer(dtls: RTCDtlsTransport) -> SrtpWriter | None:
    """A writer for the transport, or None while it is not connected."""
    if dtls.state != "connected":
        return None
    try:
        return SrtpWriter(dtls)
    except ConnectionError:
        return None


class RtcpSink:
    """Receives the RTCP a remote receiver sends about one of our SSRCs (RR, REMB, NACK,
    PLI/FIR), through the transport's own RTP/RTCP router."""

    def __init__(self, dtls: RTCDtlsTransport, ssrc: int, handler: RtcpHandler) -> None:
        self._ssrc = ssrc  # the router's key
        self._handler = handler
        self._dtls = dtls
        dtls._rtp_router.register_sender(self, ssrc)

    async def _handle_rtcp_packet(self, packet: AnyRtcpPacket) -> None:
        self._handler(packet)

    def close(self) -> None:
        self._dtls._rtp_router.unregister_sender(self)


# -- negotiation -----------------------------------------------------------------------------------


def negotiated_codecs(transceiver: RTCRtpTransceiver) -> list[RTCRtpCodecParameters]:
    """The codecs the last negotiation chose for this transceiver, preferred first (RTX included)."""
    return list(transceiver._codecs)


def parse_sdp(text: str) -> SessionDescription:
    """aiortc's own SDP parser, so validation sees exactly what setRemoteDescription will."""
    return SessionDescription.parse(text)


def chosen_codec(kind: str, offered: list[RTCRtpCodecParameters]) -> RTCRtpCodecParameters | None:
    """The codec aiortc's answer will pick from an offer's media section (None: no common codec)."""
    common = find_common_codecs(CODECS[kind], offered)
    return common[0] if common else None


def parse_candidate(line: str) -> RTCIceCandidate:
    """An `a=candidate` value (with or without its `candidate:` prefix) as aiortc's type."""
    if line.startswith("candidate:"):
        line = line[len("candidate:") :]
    return candidate_from_sdp(line)
