"""A bot's two peer connections with the SFU, for the lifetime of one signaling connection.

The publisher PC is the bot's offer (`sfu.publish {sdp, sources}` -> `{sdp}`), renegotiated
by sending a new offer whenever a publication is added; it also carries the bot's `data`
channel. The subscriber PC is the SFU's offer (`sfu.offer {sdp, tracks}`), answered in the
event's ack; its track map says which participant each mid belongs to.

When signaling drops, the SFU drops both PCs; the bot builds a new `PeerLink` after it
rejoins and publishes the same sources again (see `SenderTrack`).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiortc import RTCConfiguration, RTCDataChannel, RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack
from roomwire.media.rtc import rtc_configuration  # always explicit ICE servers: aiortc's default is unreachable
from roomwire.signaling.protocol import TURN_SCHEMES

from .tracks import RemoteTrack, SenderTrack, TrackInfo

log = logging.getLogger("roomwire.bot")

DEFAULT_SOURCE = {"audio": "microphone", "video": "camera"}
DATA_OPEN_TIMEOUT = 10.0
SUBSCRIBE_TIMEOUT = 10.0

Call = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class Publication:
    """A source track the bot publishes, and under which source name."""

    track: MediaStreamTrack
    source: str

    @property
    def kind(self) -> str:
        return self.track.kind


def codec_preferences(kind: str, mime_type: str) -> list[Any]:
    """aiortc's capabilities for one codec (all its profiles), plus RTX for video."""
    codecs = RTCRtpSender.getCapabilities(kind).codecs
    chosen = [c for c in codecs if c.mimeType.lower() == mime_type.lower()]
    if not chosen:
        raise ValueError(f"aiortc cannot send {mime_type}")
    return chosen + [c for c in codecs if c.mimeType.lower() == "video/rtx"]


class PeerLink:
    """The publisher and subscriber PCs of one signaling connection."""

    def __init__(
        self,
        call: Call,
        ice_servers: list[dict[str, Any]],
        on_track: Callable[[RemoteTrack], None],
        on_data: Callable[[str, Any], None],
        on_failed: Callable[[str], None],
    ) -> None:
        self._call = call
        self._config = rtc_configuration(ice_servers)
        self._turn_urls = turn_urls(self._config)
        self._relay_checked = False
        self._on_track = on_track
        self._on_data = on_data
        self._on_failed = on_failed
        self._closing = False
        self._publisher: RTCPeerConnection | None = None
        self._subscriber: RTCPeerConnection | None = None
        self._channel: RTCDataChannel | None = None
        # separate locks: the server may offer on the subscriber PC while a publish is in flight
        self._publishing = asyncio.Lock()
        self._answering = asyncio.Lock()
        self._senders: dict[SenderTrack, Publication] = {}
        self.remote: dict[str, RemoteTrack] = {}  # by mid
        self._subscriber_connected = asyncio.Event()

    # -- publishing ----------------------------------------------------------------------

    async def publish(self, publications: list[Publication]) -> None:
        """Add tracks to the publisher PC (creating it with the data channel) and renegotiate."""
        async with self._publishing:
            pc = self._ensure_publisher()
            published = {p.track for p in self._senders.values()}
            for publication in publications:
                if publication.track in published:
                    continue  # a publish() that raced a reconnect: already on this connection
                sender_track = SenderTrack(publication.track)
                transceiver = pc.addTransceiver(sender_track, direction="sendonly")
                # pre-encoded packets (a file played without decoding) fix the codec
                passthrough = getattr(publication.track, "passthrough_mime_type", None)
                if passthrough:
                    transceiver.setCodecPreferences(codec_preferences(publication.kind, passthrough))
                self._senders[sender_track] = publication
            await self._negotiate(pc)

    async def unpublish(self, publications: list[Publication]) -> None:
        """Stop sending these tracks: their sections go inactive and the SFU withdraws them."""
        async with self._publishing:
            if self._publisher is None:
                return
            withdrawn = False
            for transceiver in self._publisher.getTransceivers():
                publication = self._senders.get(transceiver.sender.track)  # type: ignore[call-overload]
                if publication in publications:
                    del self._senders[transceiver.sender.track]  # type: ignore[arg-type]
                    transceiver.direction = "inactive"
                    withdrawn = True
            if withdrawn:
                await self._negotiate(self._publisher)

    async def open_data(self) -> RTCDataChannel:
        """The publisher PC's `data` channel, negotiated and open."""
        async with self._publishing:
            if self._publisher is None:
                await self._negotiate(self._ensure_publisher())
        channel = self._channel
        assert channel is not None
        if channel.readyState != "open":
            opened = asyncio.get_running_loop().create_future()
            channel.once("open", lambda: opened.done() or opened.set_result(None))
            async with asyncio.timeout(DATA_OPEN_TIMEOUT):
                await opened
        return channel

    def _ensure_publisher(self) -> RTCPeerConnection:
        if self._publisher is None:
            self._publisher = RTCPeerConnection(self._config)
            self._watch_state(self._publisher, "publisher")
            self._channel = self._publisher.createDataChannel("data")
        return self._publisher

    async def _negotiate(self, pc: RTCPeerConnection) -> None:
        offer = await pc.createOffer()
        await pc.setLocalDescription(offer)  # gathers every candidate: no trickle needed
        self._check_relay(pc)
        sources = {}
        for transceiver in pc.getTransceivers():
            publication = self._senders.get(transceiver.sender.track)  # type: ignore[call-overload]
            if transceiver.mid is not None and publication is not None:
                sources[transceiver.mid] = publication.source
        ack = await self._call("sfu.publish", {"sdp": pc.localDescription.sdp, "sources": sources})
        await pc.setRemoteDescription(RTCSessionDescription(sdp=ack["sdp"], type="answer"))

    # -- subscribing -----------------------------------------------------------------------

    async def subscribe(self, timeout: float = SUBSCRIBE_TIMEOUT) -> None:
        """Ask for the SFU's offer and wait until the subscriber PC is connected.

        Waiting makes `Bot.start()` return with its media ready: tracks already published in
        the room have arrived, and data can flow.
        """
        await self._call("sfu.subscribe", {})
        try:
            async with asyncio.timeout(timeout):
                await self._subscriber_connected.wait()
        except TimeoutError:
            log.warning("the subscriber connection did not come up within %s s", timeout)

    async def answer(self, data: Any) -> dict[str, Any]:
        """The ack of `sfu.offer`: our answer, then the track map applied."""
        if not isinstance(data, dict) or not isinstance(data.get("sdp"), str):
            return _refusal("sfu.offer needs {sdp, tracks}")
        infos = [info for info in map(TrackInfo.parse, data.get("tracks") or []) if info is not None]
        async with self._answering:
            pc = self._ensure_subscriber()
            try:
                await pc.setRemoteDescription(RTCSessionDescription(sdp=data["sdp"], type="offer"))
                await pc.setLocalDescription(await pc.createAnswer())
            except Exception as exc:  # aiortc raises whatever it trips on; tell the server
                log.warning("cannot answer the SFU's offer: %s", exc)
                return _refusal(f"{type(exc).__name__}: {exc}")
            self._check_relay(pc)
            self._apply_track_map(pc, infos)
            return {"sdp": pc.localDescription.sdp}

    def _ensure_subscriber(self) -> RTCPeerConnection:
        if self._subscriber is None:
            self._subscriber = RTCPeerConnection(self._config)
            self._subscriber.on("datachannel", self._watch_channel)
            self._watch_state(self._subscriber, "subscriber")
        return self._subscriber

    def _check_relay(self, pc: RTCPeerConnection) -> None:
        """Behind a NAT or firewall media only passes through TURN: say so when TURN gave nothing.

        aiortc drops a failed TURN allocation silently; the only trace is the missing relay
        candidate in our own description.
        """
        if self._relay_checked or not self._turn_urls:
            return
        self._relay_checked = True
        if " typ relay" not in pc.localDescription.sdp:
            log.error(
                "the TURN server (%s) gave no relay candidate: it refused the credentials from the join "
                "ack (does the server's TURN secret match the TURN server's static-auth-secret?) or it "
                "cannot be reached. Media will not pass a NAT or firewall without it.",
                " ".join(self._turn_urls),
            )

    def _watch_state(self, pc: RTCPeerConnection, role: str) -> None:
        def changed() -> None:
            state = pc.connectionState
            if state == "connected" and role == "subscriber":
                self._subscriber_connected.set()
            elif state in ("failed", "closed") and not self._closing:
                # ICE failed, or the SFU dropped this PC (aiortc closes on the remote's DTLS close)
                self._on_failed(f"the {role} connection {state}")

        pc.on("connectionstatechange", changed)

    def _watch_channel(self, channel: RTCDataChannel) -> None:
        if channel.label != "data":
            return

        def on_message(message: Any) -> None:
            try:
                envelope = json.loads(message)
            except (TypeError, ValueError):
                log.warning("ignoring a data message that is not JSON")
                return
            if isinstance(envelope, dict) and isinstance(envelope.get("from"), str):
                self._on_data(envelope["from"], envelope.get("data"))

        channel.on("message", on_message)

    def _apply_track_map(self, pc: RTCPeerConnection, infos: list[TrackInfo]) -> None:
        receivers = {t.mid: t.receiver.track for t in pc.getTransceivers() if t.mid is not None}
        wanted = {info.mid: info for info in infos}
        for mid in list(self.remote):
            current = self.remote[mid]
            info = wanted.get(mid)
            if info is None or info.sid != current.sid:
                del self.remote[mid]
                current.stop()
        for mid, info in wanted.items():
            receiver_track = receivers.get(mid)
            if mid in self.remote or receiver_track is None:
                continue
            track = self.remote[mid] = RemoteTrack(info, receiver_track)
            self._on_track(track)

    # -- teardown --------------------------------------------------------------------------

    async def close(self) -> None:
        self._closing = True
        for track in self.remote.values():
            track.stop()
        self.remote.clear()
        for sender in self._senders:
            sender.stop()
        for pc in (self._publisher, self._subscriber):
            if pc is not None:
                await pc.close()
        self._publisher = self._subscriber = None
        self._channel = None


def turn_urls(config: RTCConfiguration) -> list[str]:
    """The turn: and turns: URLs among the ICE servers of a configuration."""
    servers = config.iceServers or []
    urls = [url for server in servers for url in ([server.urls] if isinstance(server.urls, str) else server.urls)]
    return [url for url in urls if url.startswith(TURN_SCHEMES)]


def _refusal(message: str) -> dict[str, Any]:
    return {"ok": False, "error": {"code": "bad_request", "message": message}}
