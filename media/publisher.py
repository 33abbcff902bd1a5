"""The publisher peer connection of one participant: the client offers, the SFU answers.

Each audio/video section the client sends on becomes a `PublishedTrack`. Its receiver is
tapped (`aiortc_internals.tap_receiver`): every RTP packet goes to the publication's
`TrackForwarder` as it arrives, never to aiortc's jitter buffer or decoder. A receiver
outlives the publications made on it; each publication gets a fresh forwarder. The `data`
channel the client opens is handed to the room's `DataRelay`.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiortc import RTCIceCandidate, RTCPeerConnection, RTCRtpTransceiver, RTCSessionDescription
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import AnyRtcpPacket, RtpPacket
from roomwire.signaling.protocol import ProtocolError, bad_request

from . import aiortc_internals
from .aiortc_internals import SrtpWriter
from .data_relay import DataRelay
from .media_metrics import MediaStats
from .publish_offer import PublishOffer
from .rtc import PendingCandidates, close_pc, rtc_configuration, wait_connected
from .rtp_forwarder import TrackForwarder

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT = 10.0


def new_track_sid() -> str:
    return "TR_" + secrets.token_urlsafe(9)


@dataclass
class PublishedTrack:
    """A track a participant publishes, as the room sees it."""

    sid: str
    identity: str
    kind: str
    source: str
    mid: str
    mime_type: str
    codec: RTCRtpCodecParameters
    forwarder: TrackForwarder

    def info(self) -> dict[str, Any]:
        """The presence view: `{sid, kind, source}`."""
        return {"sid": self.sid, "kind": self.kind, "source": self.source}


@dataclass
class _Inbound:
    """One receiving transceiver; outlives the tracks published on it."""

    transceiver: RTCRtpTransceiver
    stats: MediaStats
    track: PublishedTrack | None = None
    ended: bool = False  # the receiver stopped (RTCP BYE, disconnect): nothing more will come
    withheld: bool = False  # unpublished by the client; stays off until it stops sending
    writer: SrtpWriter | None = None

    def on_rtp(self, packet: RtpPacket) -> None:
        if self.track is not None:
            self.track.forwarder.receive(packet)
        else:
            self.stats.dropped["unpublished"] += 1

    def on_rtcp(self, packet: AnyRtcpPacket) -> None:
        if self.track is not None:
            self.track.forwarder.on_rtcp(packet)

    def send_rtcp(self, data: bytes) -> bool:
        """RTCP to the publisher (receiver reports, NACK, PLI, REMB); False if it cannot go out."""
        writer = self.writer
        if writer is None or not writer.open:
            writer = self.writer = aiortc_internals.srtp_writer(self.transceiver.receiver.transport)
            if writer is None:
                return False
        return writer.send_rtcp(data)


class Publisher:
    def __init__(
        self,
        identity: str,
        ice_servers: list[dict[str, Any]],
        relay: DataRelay,
        relay_data: bool,
        stats: MediaStats,
        on_tracks_changed: Callable[[], None],
        on_failed: Callable[[], None],
    ) -> None:
        self.identity = identity
        self._stats = stats
        self._ice_servers = ice_servers
        self._relay = relay
        self._relay_data = relay_data
        self._on_tracks_changed = on_tracks_changed
        self._on_failed = on_failed
        self.pc: RTCPeerConnection | None = None
        self.lock = asyncio.Lock()
        self._inbound: dict[str, _Inbound] = {}
        self._pending_candidates = PendingCandidates()
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def tracks(self) -> list[PublishedTrack]:
        return [i.track for i in self._inbound.values() if i.track is not None]

    def track_infos(self) -> list[dict[str, Any]]:
        return [t.info() for t in self.tracks]

    async def negotiate(self, offer: PublishOffer) -> tuple[str, bool]:
        """Apply the client's offer; returns (answer SDP, whether the published tracks changed)."""
        if self._closed:
            raise bad_request("the publisher connection is closed")
        fresh = self.pc is None
        if self.pc is None:
            self.pc = self._create_pc()
        pc = self.pc
        try:
            await wait_connected(pc, CONNECT_TIMEOUT)
        except ConnectionError as exc:
            raise ProtocolError("conflict", f"cannot renegotiate yet: {exc}") from None
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer.sdp, type="offer"))
            answer = await pc.createAnswer()
            await pc.setLocalDescription(answer)
            aiortc_internals.guard_rtcp_routing(pc)
        except Exception as exc:
            # parse_publish has vetted the offer; if aiortc still refuses it, say so plainly
            logger.info("publisher %s: offer refused: %s", self.identity, exc)
            if fresh:
                await self.close()
            raise bad_request(f"the offer could not be applied: {exc}") from None
        await self._pending_candidates.apply(pc)
        changed = self._apply_tracks(offer)
        return pc.localDescription.sdp, changed

    def _create_pc(self) -> RTCPeerConnection:
        pc = RTCPeerConnection(rtc_configuration(self._ice_servers))

        @pc.on("track")
        def on_track(track: Any) -> None:
            # Tap as soon as the receiver exists, before aiortc starts receiving.
            for transceiver in pc.getTransceivers():
                if transceiver.receiver.track is track:
                    self._tap(transceiver)

        @pc.on("datachannel")
        def on_datachannel(channel: Any) -> None:
            if channel.label == "data" and self._relay_data:
                self._relay.add_source(self.identity, channel)

        @pc.on("connectionstatechange")
        def on_state() -> None:
            # failed: ICE/DTLS gave up; closed: the client closed its side (DTLS close_notify)
            if pc.connectionState in ("failed", "closed") and not self._closed:
                self._on_failed()

        return pc

    def _tap(self, transceiver: RTCRtpTransceiver) -> _Inbound | None:
        mid = transceiver.mid
        if mid is None:
            return None
        inbound = self._inbound.get(mid)
        if inbound is not None:
            return inbound
        inbound = self._inbound[mid] = _Inbound(transceiver, self._stats)
        aiortc_internals.tap_receiver(
            transceiver.receiver, inbound.on_rtp, inbound.on_rtcp, lambda: self._receiver_ended(inbound)
        )
        return inbound

    def _apply_tracks(self, offer: PublishOffer) -> bool:
        assert self.pc is not None
        transceivers = {t.mid: t for t in self.pc.getTransceivers() if t.mid is not None}
        changed = False
        for media in offer.media:
            transceiver = transceivers.get(media.mid)
            if transceiver is None:
                continue
            inbound = self._tap(transceiver)
            if inbound is None:
                continue
            if not media.sending:
                inbound.withheld = False
                changed |= self._withdraw(inbound)
                continue
            if inbound.track is not None:
                if inbound.track.source != media.source:
                    inbound.track.source = media.source
                    changed = True
                continue
            if inbound.withheld or inbound.ended:
                continue
            codecs = aiortc_internals.negotiated_codecs(transceiver)
            rtcp_ssrc, _ = aiortc_internals.sender_ssrcs(transceiver.sender)
            inbound.track = PublishedTrack(
                sid=new_track_sid(),
                identity=self.identity,
                kind=media.kind,
                source=media.source,
                mid=media.mid,
                mime_type=media.mime_type,
                codec=codecs[0],
                forwarder=TrackForwarder(media.kind, codecs, inbound.send_rtcp, rtcp_ssrc, self._stats),
            )
            changed = True
        return changed

    def unpublish(self, sid: str) -> bool:
        for inbound in self._inbound.values():
            if inbound.track is not None and inbound.track.sid == sid:
                inbound.withheld = True
                return self._withdraw(inbound)
        return False

    def _withdraw(self, inbound: _Inbound) -> bool:
        if inbound.track is None:
            return False
        inbound.track.forwarder.close()
        inbound.track = None
        return True

    def _receiver_ended(self, inbound: _Inbound) -> None:
        inbound.ended = True
        if not self._closed and self._withdraw(inbound):
            self._on_tracks_changed()

    async def add_candidate(self, candidate: RTCIceCandidate | None) -> None:
        if self.pc is None or self.pc.remoteDescription is None or self.lock.locked():
            # before (or during) the first negotiation: keep it for after setRemoteDescription
            self._pending_candidates.hold(candidate)
            return
        await self.pc.addIceCandidate(candidate)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for inbound in self._inbound.values():
            self._withdraw(inbound)
        if self.pc is not None:
            await close_pc(self.pc)
        self._inbound.clear()
