"""One published track as one subscriber receives it: every packet rewritten for that subscriber.

The subscriber's copy has its own SSRC and payload type (what its m-line negotiated), its own
sequence numbers and timestamps (the publisher's plus an offset), and its own header
extensions. The copy is forwarded in *epochs*: an epoch starts at the first packet of a
keyframe for video (any packet for audio) and lasts until the stream is paused or the
publisher's source changes; each new epoch continues the sequence numbers where the last one
ended, so a subscriber never sees a gap for what it was not sent.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

from aiortc.rtcrtpparameters import RTCRtpSendParameters
from roomwire.signaling.rate_limit import RateLimit, TokenBucket

from . import rtcp_packets
from .header_extensions import ExtensionLayout
from .rtp_packets import HAS_EXTENSION, RTP_HEADER, RTP_VERSION, InboundPacket, rtx_payload_type

if TYPE_CHECKING:
    from .aiortc_internals import SrtpWriter
    from .media_metrics import MediaStats
    from .rtp_forwarder import TrackForwarder

LATE_LIMIT = 1024  # a packet this far behind the newest one is stale, whatever the epoch
KEYFRAME_RETRY = 1.0  # seconds a stream waits for a keyframe before asking again
# retransmissions a subscriber may have per second (and at once): 5 % loss of a 1.5 Mbit/s
# video is ~8/s; a NACK flood must not turn into a flood of resends
RESENDS_PER_SECOND = 200.0
RESENDS = RateLimit(rate=RESENDS_PER_SECOND, burst=RESENDS_PER_SECOND)


class OutboundStream:
    __slots__ = (
        "_asked_keyframe_at",
        "_epoch_start",
        "_high_in",
        "_layout",
        "_open",
        "_pt",
        "_resends",
        "_rtx_pt",
        "_rtx_seq",
        "_seq_offset",
        "_stats",
        "_ts_offset",
        "_video",
        "_writer",
        "forwarder",
        "kind",
        "octets_sent",
        "packets_sent",
        "paused",
        "rtx_ssrc",
        "ssrc",
    )

    def __init__(self, forwarder: TrackForwarder, ssrc: int, rtx_ssrc: int, stats: MediaStats) -> None:
        self.forwarder = forwarder
        self.kind = forwarder.kind
        self.ssrc = ssrc
        self.rtx_ssrc = rtx_ssrc
        self._stats = stats
        self._video = forwarder.kind == "video"
        self._writer: SrtpWriter | None = None
        self._layout: ExtensionLayout | None = None
        self._pt = 0
        self._rtx_pt: int | None = None
        self._open = False  # an epoch is running
        self.paused = False
        # the first epoch's first packet gets a random sequence number in the lower half, as
        # aiortc's own senders do (far from a wrap-around early on)
        self._seq_offset = random.randrange(0x8000)
        self._high_in = 0  # the newest publisher sequence number of the epoch
        self._epoch_start = 0
        self._ts_offset = random.getrandbits(32)
        self._rtx_seq = random.randrange(0x8000)
        self._resends = TokenBucket(RESENDS)
        self._asked_keyframe_at = float("-inf")
        self.packets_sent = 0
        self.octets_sent = 0

    def start(self, parameters: RTCRtpSendParameters, writer: SrtpWriter) -> None:
        """The subscriber's m-line is negotiated and its transport connected: from now on."""
        codec = parameters.codecs[0]
        self._pt = codec.payloadType or 0
        self._rtx_pt = rtx_payload_type(parameters.codecs)
        self._layout = ExtensionLayout(parameters.headerExtensions, parameters.muxId, self.kind)
        self._writer = writer

    # -- the forward path ----------------------------------------------------------------------

    def forward(self, packet: InboundPacket, value: bytes | None) -> int:
        """Send the subscriber its copy of `packet`; returns the bytes sent (0: not sent).

        `value` is the varying header extension value (abs-send-time or audio level)."""
        if self._open:
            ahead = (packet.seq - self._high_in) & 0xFFFF
            if ahead < 0x8000:
                self._high_in = packet.seq
            elif 0x10000 - ahead > min((self._high_in - self._epoch_start) & 0xFFFF, LATE_LIMIT):
                self._stats.dropped["late"] += 1  # older than this epoch
                return 0
        elif not self._start_epoch(packet):
            return 0
        data = self._copy(packet, (packet.seq + self._seq_offset) & 0xFFFF, value)
        if not self._writer.send_rtp(data):  # type: ignore[union-attr]
            self._stats.dropped["send_buffer_full"] += 1
            return 0
        self.packets_sent += 1
        self.octets_sent += len(packet.payload)
        return len(data)

    def _copy(self, packet: InboundPacket, seq: int, value: bytes | None) -> bytes:
        layout = self._layout
        assert layout is not None
        timestamp = (packet.timestamp + self._ts_offset) & 0xFFFFFFFF
        if value is not None and layout.varies:
            header = RTP_HEADER.pack(
                RTP_VERSION | HAS_EXTENSION | packet.padding, packet.marker | self._pt, seq, timestamp, self.ssrc
            )
            return b"".join((header, layout.head, value, layout.tail, packet.payload))
        header = RTP_HEADER.pack(
            layout.plain_first | packet.padding, packet.marker | self._pt, seq, timestamp, self.ssrc
        )
        return b"".join((header, layout.plain, packet.payload))

    def _start_epoch(self, packet: InboundPacket) -> bool:
        if self.paused or self._writer is None:
            self._stats.dropped["paused" if self.paused else "not_negotiated"] += 1
            return False
        if self._video and not packet.keyframe:
            self._stats.dropped["waiting_for_keyframe"] += 1
            if packet.arrival - self._asked_keyframe_at >= KEYFRAME_RETRY:
                self._asked_keyframe_at = packet.arrival
                self.forwarder.request_keyframe()
            return False
        last_sent = (self._high_in + self._seq_offset) & 0xFFFF
        self._seq_offset = (last_sent + 1 - packet.seq) & 0xFFFF
        self._high_in = self._epoch_start = packet.seq
        self._open = True
        return True

    def restart(self, ts_offset_shift: int) -> None:
        """The publisher's source changed (a new SSRC): a new epoch at its next keyframe, with
        timestamps shifted so that they go on from where the old source's ended."""
        self._open = False
        self._asked_keyframe_at = float("-inf")
        self._ts_offset = (self._ts_offset + ts_offset_shift) & 0xFFFFFFFF

    def pause(self) -> None:
        self.paused = True
        self._open = False

    def resume(self) -> None:
        self.paused = False
        self._asked_keyframe_at = float("-inf")

    # -- feedback --------------------------------------------------------------------------------

    def resend(self, seqs: list[int]) -> None:
        """The subscriber NACKed `seqs` (its own sequence numbers): resend what the cache holds,
        within the stream's budget of RESENDS_PER_SECOND."""
        stats = self._stats
        stats.nacks_received += len(seqs)
        cache = self.forwarder.cache
        if not self._open or cache is None or self._writer is None:
            return
        sent_span = (self._high_in - self._epoch_start) & 0xFFFF
        for seq in seqs:
            original = (seq - self._seq_offset) & 0xFFFF
            if (self._high_in - original) & 0xFFFF > sent_span:
                continue  # not sent in this epoch
            packet = cache.get(original)
            if packet is None:
                continue
            if not self._resends.allow():
                stats.dropped["resend_budget"] += 1
                continue
            if self._writer.send_rtp(self._retransmission(packet, seq)):
                stats.nacks_answered += 1

    def _retransmission(self, packet: InboundPacket, seq: int) -> bytes:
        if self._rtx_pt is None:
            return self._copy(packet, seq, None)
        timestamp = (packet.timestamp + self._ts_offset) & 0xFFFFFFFF
        rtx_seq = self._rtx_seq = (self._rtx_seq + 1) & 0xFFFF
        layout = self._layout
        assert layout is not None
        header = RTP_HEADER.pack(
            layout.plain_first | packet.padding, packet.marker | self._rtx_pt, rtx_seq, timestamp, self.rtx_ssrc
        )
        return b"".join((header, layout.plain, seq.to_bytes(2, "big"), packet.payload))

    def sender_report(self, now: float) -> bytes | None:
        """An RTCP SR: the publisher's own NTP/RTP mapping (from its last SR), carried over to
        this subscriber's timestamps, so a browser can synchronise the publisher's audio and video."""
        mapping = self.forwarder.sender_report
        if mapping is None or self._writer is None:
            return None
        ntp, rtp_timestamp, received_at = mapping
        elapsed = now - received_at
        return rtcp_packets.sender_report(
            self.ssrc,
            ntp + int(elapsed * 4294967296),
            (rtp_timestamp + self._ts_offset + int(elapsed * self.forwarder.clock_rate)) & 0xFFFFFFFF,
            self.packets_sent,
            self.octets_sent,
        )
