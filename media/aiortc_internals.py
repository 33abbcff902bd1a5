"""Every use of aiortc's private internals, in one place, pinned to one aiortc release.

The SFU needs four things aiortc has no public API for: the encoded frames a receiver
assembles (before its decoder thread), a way to send a picture-loss indication (PLI) to a
publisher, a hook for the PLI/FIR a subscriber sends us, and the codec a transceiver
negotiated. Each is a small function here; tests/media/test_aiortc_internals.py fails loudly
if an aiortc release moves any of them, so an upgrade breaks this one file, not the SFU.
"""

from __future__ import annotations

import fractions
import queue
from collections.abc import Callable
from typing import Any

import aiortc
import av
from aiortc import RTCIceCandidate, RTCRtpReceiver, RTCRtpSender, RTCRtpTransceiver
from aiortc.codecs import CODECS
from aiortc.jitterbuffer import JitterBuffer, JitterFrame
from aiortc.rtcpeerconnection import find_common_codecs
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import RtpPacket
from aiortc.sdp import SessionDescription, candidate_from_sdp
from aiortc.utils import uint16_add, uint16_gt

PINNED_AIORTC = "1.16.0"

# (codec, av.Packet) for each complete encoded frame; called on the event loop thread.
PacketCallback = Callable[[RTCRtpCodecParameters, av.Packet], None]

_DECODER_QUEUE = "_RTCRtpReceiver__decoder_queue"
_JITTER_BUFFER = "_RTCRtpReceiver__jitter_buffer"
_KIND = "_RTCRtpReceiver__kind"
_RTX_SSRC = "_RTCRtpReceiver__rtx_ssrc"


class IncompatibleAiortc(RuntimeError):
    """aiortc is not the release whose internals this module was written against."""


def verify() -> None:
    """Fail loudly, at SFU start, if the installed aiortc is not the pinned release."""
    if aiortc.__version__ != PINNED_AIORTC:
        raise IncompatibleAiortc(
            f"roomwire's SFU relies on aiortc {PINNED_AIORTC} internals; found {aiortc.__version__}"
        )


class _FrameTap:
    """Stands in for a receiver's decoder input queue.

    `RTCRtpReceiver._handle_rtp_packet` puts each jitter-buffered `(codec, JitterFrame)` here
    on the event loop; we hand it on as an `av.Packet` instead of letting the decoder thread
    decode it. The decoder thread itself still exists (aiortc starts and joins it), but it
    only ever waits on the original queue, which receives nothing but the stop sentinel: so
    its lifecycle stays aiortc's own, whether the tap went in before or after it started.
    """

    def __init__(self, original: queue.Queue, on_packet: PacketCallback, on_end: Callable[[], None]):
        self._original = original
        self._on_packet = on_packet
        self._on_end = on_end
        self._time_bases: dict[int, fractions.Fraction] = {}

    def put(self, item: Any) -> None:
        if item is None:  # the receiver is stopping: release the decoder thread
            self._original.put(None)
            self._on_end()
            return
        codec, frame = item
        time_base = self._time_bases.get(codec.clockRate)
        if time_base is None:
            time_base = self._time_bases[codec.clockRate] = fractions.Fraction(1, codec.clockRate)
        packet = av.Packet(frame.data)
        packet.pts = frame.timestamp
        packet.time_base = time_base
        self._on_packet(codec, packet)

    def get(self, *args: Any, **kwargs: Any) -> Any:
        return self._original.get(*args, **kwargs)


class ForwardingJitterBuffer(JitterBuffer):
    """aiortc's jitter buffer, releasing frames as soon as they are complete.

    aiortc only knows a video frame is complete when the first packet of the next one arrives
    (one frame interval late), and holds 4 audio packets before releasing any: fine before a
    decoder, pure added latency before a forwarder. Here a video frame goes out as soon as all
    its packets up to the one with the marker bit are in (aiortc's own rule still applies too),
    and an audio packet (one Opus frame) goes out at once unless it is late or a duplicate.
    """

    def __init__(self, kind: str) -> None:
        if kind == "audio":
            super().__init__(capacity=16)
        else:
            super().__init__(capacity=512, is_video=True)
        self._audio = kind == "audio"

    def add(self, packet: RtpPacket) -> tuple[bool, JitterFrame | None]:
        if self._audio:
            if self._origin is not None and uint16_gt(self._origin, packet.sequence_number):
                return False, None  # late or duplicate
            self._origin = uint16_add(packet.sequence_number, 1)
            return False, JitterFrame(data=packet._data, timestamp=packet.timestamp)  # type: ignore[attr-defined]
        pli_flag, frame = super().add(packet)
        if frame is None and self._origin is not None:
            frame = self._complete_at_origin(packet.timestamp)
        return pli_flag, frame

    def _complete_at_origin(self, timestamp: int) -> JitterFrame | None:
        """The frame at the head of the buffer, if all its packets up to the marker are in."""
        head = self._packets[self._origin % self._capacity]
        if head is None or head.timestamp != timestamp:
            return None
        packets = []
        for i in range(self._capacity):
            packet = self._packets[(self._origin + i) % self._capacity]
            if packet is None or packet.timestamp != timestamp:
                return None
            packets.append(packet)
            if packet.marker:
                self.remove(len(packets))
                return JitterFrame(data=b"".join(p._data for p in packets), timestamp=timestamp)  # type: ignore
        return None


def tap_receiver(receiver: RTCRtpReceiver, on_packet: PacketCallback, on_end: Callable[[], None]) -> None:
    """Route the receiver's encoded frames to `on_packet` instead of its decoder, each as soon as
    it is complete (`ForwardingJitterBuffer`). Call it before media flows.

    `on_end` runs when the receiver stops (RTCP BYE, disconnect, close). Idempotent per receiver.
    """
    current = getattr(receiver, _DECODER_QUEUE)
    if isinstance(current, _FrameTap):
        return
    if not isinstance(current, queue.Queue) or not isinstance(getattr(receiver, _JITTER_BUFFER), JitterBuffer):
        raise IncompatibleAiortc("RTCRtpReceiver's decoder queue or jitter buffer is not where it used to be")
    setattr(receiver, _JITTER_BUFFER, ForwardingJitterBuffer(getattr(receiver, _KIND)))
    setattr(receiver, _DECODER_QUEUE, _FrameTap(current, on_packet, on_end))


def is_tapped(receiver: RTCRtpReceiver) -> bool:
    return isinstance(getattr(receiver, _DECODER_QUEUE, None), _FrameTap)


def media_ssrcs(receiver: RTCRtpReceiver) -> list[int]:
    """The SSRCs the receiver has seen media on, retransmission (RTX) streams excluded."""
    rtx = getattr(receiver, _RTX_SSRC)
    return [s.source for s in receiver.getSynchronizationSources() if s.source not in rtx]


async def send_picture_loss(receiver: RTCRtpReceiver, media_ssrc: int) -> None:
    """Ask the remote sender for a keyframe (RTCP PLI)."""
    await receiver._send_rtcp_pli(media_ssrc)


def on_keyframe_request(sender: RTCRtpSender, callback: Callable[[], None]) -> None:
    """Call `callback` whenever the remote receiver sends PLI or FIR for this sender.

    aiortc's own `_send_keyframe` only flags its encoder, which the packet path never uses.
    """
    sender._send_keyframe = callback  # type: ignore[method-assign]


def forget_keyframe_request(sender: RTCRtpSender) -> None:
    """Undo `on_keyframe_request`, so the sender no longer references the callback's owner."""
    sender.__dict__.pop("_send_keyframe", None)


def negotiated_codec(transceiver: RTCRtpTransceiver) -> RTCRtpCodecParameters | None:
    """The codec the last negotiation chose for this transceiver (the first of its list)."""
    codecs = transceiver._codecs
    return codecs[0] if codecs else None


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
