"""The subscriber peer connection of one participant: the SFU offers, the client answers.

It sends every track of the room the participant may receive, each as a `ForwardedTrack`
(encoded packets, no encoder), and always carries the server-created `data` channel.
Whenever the set of tracks changes, one worker task renegotiates: renegotiations of one
participant never overlap, and a burst of changes costs one new offer.
"""

from __future__ import annotations

import asyncio
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
from aiortc.rtcrtpparameters import RTCRtpCodecCapability, RTCRtpCodecParameters
from roomwire.signaling.media_backend import MediaSignaling
from roomwire.signaling.protocol import MAX_SDP_BYTES

from . import aiortc_internals
from .data_relay import DataRelay
from .forwarding import ForwardedTrack
from .publisher import PublishedTrack
from .rtc import PendingCandidates, close_pc, rtc_configuration, wait_connected

logger = logging.getLogger(__name__)


@dataclass
class _Outbound:
    published: PublishedTrack
    transceiver: RTCRtpTransceiver
    forwarded: ForwardedTrack


def egress_preferences(kind: str, codec: RTCRtpCodecParameters | None, mime_type: str) -> list[RTCRtpCodecCapability]:
    """Codec preferences that make the subscriber's sender use the publisher's codec (+ RTX)."""
    capabilities = RTCRtpSender.getCapabilities(kind).codecs
    same = [c for c in capabilities if c.mimeType.lower() == mime_type]
    if mime_type == "video/h264" and codec is not None:
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
                await self._retire(out)
                changed = True
        added: list[_Outbound] = []
        for sid, published in desired.items():
            if sid in self._outbound:
                continue
            forwarded = published.fanout.subscribe()
            transceiver = self.pc.addTransceiver(forwarded, direction="sendonly")
            transceiver.setCodecPreferences(egress_preferences(published.kind, published.codec, published.mime_type))
            aiortc_internals.on_keyframe_request(transceiver.sender, forwarded.request_keyframe)
            out = self._outbound[sid] = _Outbound(published, transceiver, forwarded)
            added.append(out)
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
        self._negotiated = True
        await self._pending_candidates.apply(self.pc)
        for out in added:
            self._check_codec(out)

    async def _retire(self, out: _Outbound) -> None:
        """Stop sending a track. aiortc cannot remove an m-line, so the transceiver stays as
        `inactive`; its sender is stopped (its RTCP task ends and the client gets an RTCP BYE)."""
        out.forwarded.stop()
        out.transceiver.direction = "inactive"
        aiortc_internals.forget_keyframe_request(out.transceiver.sender)
        await out.transceiver.sender.stop()

    def _check_codec(self, out: _Outbound) -> None:
        """A subscriber that refused the publisher's codec cannot get this track: we never
        transcode, and packets of one codec packed as another would be garbage."""
        codec = aiortc_internals.negotiated_codec(out.transceiver)
        if codec is None or codec.mimeType.lower() != out.published.mime_type:
            logger.info(
                "subscriber %s/%s cannot receive %s (%s): it answered %s",
                self.room,
                self.identity,
                out.published.sid,
                out.published.mime_type,
                codec.mimeType if codec else "no codec",
            )
            out.forwarded.stop()

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
        for out in self._outbound.values():
            out.forwarded.stop()
        self._outbound.clear()
        await close_pc(self.pc)
