"""The subscriber peer connection of one participant: the SFU offers, the client answers.

It sends every track of the room the participant may receive, each on its own `sendonly`
transceiver whose aiortc sender never runs: the SFU writes that m-line's RTP itself
(`OutboundStream`, in this connection's `OutboundSession`). It always carries the
server-created `data` channel. Whenever the set of tracks changes, one worker task
renegotiates: renegotiations of one participant never overlap, and a burst of changes
(a leaving publisher's tracks end one by one) costs one new offer.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiortc import (
    RTCIceCandidate,
    RTCPeerConnection,
    RTCRtpSender,
    RTCRtpTransceiver,
    RTCSessionDescription,
)
from aiortc.rtcrtpparameters import RTCRtpCodecCapability, RTCRtpCodecParameters, RTCRtpSendParameters
from roomwire.signaling.media_backend import MediaSignaling
from roomwire.signaling.protocol import MAX_SDP_BYTES

from . import aiortc_internals
from .data_relay import DataRelay
from .media_metrics import MediaStats
from .outbound_session import OutboundSession
from .outbound_stream import OutboundStream
from .publisher import PublishedTrack
from .rtc import PendingCandidates, close_pc, rtc_configuration, wait_connected

logger = logging.getLogger(__name__)

SETTLE = 0.1  # seconds a change waits for the rest of its burst before the offer


@dataclass
class _Outbound:
    published: PublishedTrack
    transceiver: RTCRtpTransceiver
    stream: OutboundStream


def stream_id(identity: str) -> str:
    """The MediaStream id (`a=msid`) of a publisher's tracks, the same in every offer, so that a
    browser synchronises each publisher's audio with its video (and no one's with another's)."""
    return "rw-" + hashlib.sha256(identity.encode()).hexdigest()[:24]


def egress_preferences(kind: str, codec: RTCRtpCodecParameters, mime_type: str) -> list[RTCRtpCodecCapability]:
    """Codec preferences that make the subscriber's sender use the publisher's codec (+ RTX)."""
    capabilities = RTCRtpSender.getCapabilities(kind).codecs
    same = [c for c in capabilities if c.mimeType.lower() == mime_type]
    if mime_type == "video/h264":
        profile = str(codec.parameters.get("profile-level-id", "42e01f")).lower()
        exact = [c for c in same if str(c.parameters.get("profile-level-id", "")).lower() == profile]
        same = exact or same
    preferred = same[:1]
    if kind == "video":
        preferred += [c for c in capabilities if c.mimeType.lower() == "video/rtx"]
    return preferred


class Subscriber:
    def __init__(
        self,
        room: str,
        identity: str,
        receive_media: bool,
        tracks: Callable[[], list[PublishedTrack]],
        relay: DataRelay | None,
        signaling: MediaSignaling,
        ice_servers: list[dict[str, Any]],
        offer_timeout: float,
        stats: MediaStats,
        on_failed: Callable[[str], None],
    ) -> None:
        self.room = room
        self.identity = identity
        self._receive_media = receive_media
        self._tracks = tracks
        self._relay = relay
        self._signaling = signaling
        self._offer_timeout = offer_timeout
        self._on_failed = on_failed
        self.pc = RTCPeerConnection(rtc_configuration(ice_servers))
        self.channel = self.pc.createDataChannel("data", ordered=True)
        if relay is not None:
            relay.add_sink(identity, self.channel)
        self._outbound: dict[str, _Outbound] = {}
        self._stats = stats
        self.media = OutboundSession(stats)
        self._dirty = asyncio.Event()
        self._dirty.set()  # the first offer
        self._negotiated = False
        self._pending_candidates = PendingCandidates()
        self._closed = False
        self.offers_sent = 0
        self.pc.on("connectionstatechange", self._on_state)
        self._task = asyncio.ensure_future(self._run())

    def _on_state(self) -> None:
        if self.pc.connectionState in ("failed", "closed") and not self._closed:
            self._on_failed(f"the connection is {self.pc.connectionState}")

    def invalidate(self) -> None:
        """The room's tracks changed: renegotiate (once, however many changes pile up)."""
        self._dirty.set()

    @property
    def tracks(self) -> list[dict[str, Any]]:
        """The track map of the last offer: `[{mid, sid, identity, kind, source}]`."""
        return [
            {
                "mid": out.transceiver.mid,
                "sid": out.published.sid,
                "identity": out.published.identity,
                "kind": out.published.kind,
                "source": out.published.source,
            }
            for out in self._outbound.values()
        ]

    async def _run(self) -> None:
        try:
            while True:
                await self._dirty.wait()
                await asyncio.sleep(SETTLE)
                self._dirty.clear()
                await self._negotiate()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}"
            logger.info("subscriber %s/%s: negotiation failed: %s", self.room, self.identity, reason)
            self._on_failed(reason)

    async def _negotiate(self) -> None:
        # before adding transceivers: each new one brings a DTLS transport that stays "new"
        # (so the connection "connecting") until the next answer bundles it
        await wait_connected(self.pc, self._offer_timeout)
        desired = {t.sid: t for t in self._tracks()} if self._receive_media else {}
        changed = not self._negotiated
        for sid in list(self._outbound):
            out = self._outbound[sid]
            if desired.get(sid) is not out.published:
                del self._outbound[sid]
                self._retire(out)
                changed = True
        for sid, published in desired.items():
            if sid in self._outbound:
                continue
            self._outbound[sid] = self._add(published)
            changed = True
        if not changed:
            return
        offer = await self.pc.createOffer()
        await self.pc.setLocalDescription(offer)
        self.offers_sent += 1
        answer = await self._signaling.send_offer(
            self.room,
            self.identity,
            self.pc.localDescription.sdp,
            self._offer_timeout,
            extra={"tracks": self.tracks},
        )
        if len(answer.encode()) > MAX_SDP_BYTES:
            raise ValueError("the answer SDP is too large")
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        aiortc_internals.guard_rtcp_routing(self.pc)
        self._negotiated = True
        await self._pending_candidates.apply(self.pc)

    def _add(self, published: PublishedTrack) -> _Outbound:
        """A sendonly transceiver for the track, pinned to its codec (+ RTX), whose sender the
        SFU takes over: aiortc negotiates the m-line, `OutboundStream` sends its packets."""
        transceiver = self.pc.addTransceiver(published.kind, direction="sendonly")
        transceiver.setCodecPreferences(egress_preferences(published.kind, published.codec, published.mime_type))
        sender = transceiver.sender
        aiortc_internals.set_stream_id(sender, stream_id(published.identity))
        ssrc, rtx_ssrc = aiortc_internals.sender_ssrcs(sender)
        out = _Outbound(published, transceiver, OutboundStream(published.forwarder, ssrc, rtx_ssrc, self._stats))
        aiortc_internals.take_over_sender(sender, lambda parameters: self._start(out, parameters))
        return out

    def _start(self, out: _Outbound, parameters: RTCRtpSendParameters) -> None:
        """aiortc would start the sender now. A subscriber that refused the publisher's codec
        cannot get this track: we never transcode."""
        codec = parameters.codecs[0] if parameters.codecs else None
        if codec is None or codec.mimeType.lower() != out.published.mime_type:
            logger.info(
                "subscriber %s/%s cannot receive %s (%s): it answered %s",
                self.room,
                self.identity,
                out.published.sid,
                out.published.mime_type,
                codec.mimeType if codec else "no codec",
            )
            return
        self.media.start(out.stream, parameters, out.transceiver.sender.transport)

    def _retire(self, out: _Outbound) -> None:
        """Stop sending a track (the client gets an RTCP BYE). aiortc cannot remove an m-line,
        so the transceiver stays, `inactive`; its sender stays taken over, doing nothing (aiortc
        calls `send()` again on the next offer, before the answer makes the m-line inactive)."""
        self.media.stop(out.stream)
        out.transceiver.direction = "inactive"
        aiortc_internals.take_over_sender(out.transceiver.sender, lambda parameters: None)

    async def add_candidate(self, candidate: RTCIceCandidate | None) -> None:
        if not self._negotiated or self.pc.signalingState != "stable":
            self._pending_candidates.hold(candidate)
            return
        await self.pc.addIceCandidate(candidate)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._relay is not None:
            self._relay.remove_sink(self.identity, self.channel)
        if self._task is not asyncio.current_task():
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self.media.close()
        self._outbound.clear()
        await close_pc(self.pc)
