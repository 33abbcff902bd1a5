"""A test participant: a python-socketio client plus aiortc publisher/subscriber peer connections,
speaking the `sfu.*` wire protocol exactly as docs/sfu.md describes it."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from roomwire.media.sources import read_frame_counter

from tests.media.udp_relay import UdpRelay
from tests.sio_client import SioClient


async def wait_until(predicate: Callable[[], object], timeout: float = 10) -> None:
    """Poll `predicate` (a condition on state that callbacks change, or a coroutine function
    that asks a server) until it holds."""
    async with asyncio.timeout(timeout):
        while True:
            held = predicate()
            if inspect.isawaitable(held):
                held = await held
            if held:
                return
            await asyncio.sleep(0.05)


@dataclass
class ReceivedTrack:
    """What a subscriber got on one track."""

    track: MediaStreamTrack
    counters: list[int] = field(default_factory=list)  # video: frame counters, in arrival order
    counted_at: list[float] = field(default_factory=list)  # ... and when each was decoded (loop time)
    frames: int = 0
    first_frame_at: float | None = None

    @property
    def first_counter_at(self) -> float | None:
        return self.counted_at[0] if self.counted_at else None


def _through(relay: UdpRelay | None, rewrite: str) -> Callable[[str], str]:
    """An SDP rewriter: through the relay if there is one, untouched otherwise."""
    return getattr(relay, rewrite) if relay is not None else (lambda sdp: sdp)


class SfuPeer:
    """`publisher_relay` / `subscriber_relay`: a UdpRelay that the connection goes through."""

    def __init__(
        self,
        identity: str,
        *,
        answer: bool = True,
        publisher_relay: UdpRelay | None = None,
        subscriber_relay: UdpRelay | None = None,
    ) -> None:
        self.identity = identity
        self.publisher_relay = publisher_relay
        self.subscriber_relay = subscriber_relay
        self.client = SioClient()
        self.publisher: RTCPeerConnection | None = None
        self.subscriber: RTCPeerConnection | None = None
        self.publisher_channel: Any = None
        self.received: dict[str, ReceivedTrack] = {}  # by mid
        self.track_maps: list[list[dict[str, Any]]] = []
        self.data: list[Any] = []
        self.data_arrived = asyncio.Event()
        self.offers = 0
        self.offered = asyncio.Event()
        self._answer = answer
        self._readers: list[asyncio.Task[None]] = []
        self._closing = asyncio.Event()
        self.client.sio.on("sfu.offer", self._on_offer)

    async def join(self, url: str, token: str) -> dict[str, Any]:
        await self.client.connect(url, token)
        ack = await self.client.call("join")
        assert ack["ok"], ack
        return ack

    async def publish(
        self,
        tracks: list[MediaStreamTrack],
        *,
        data: bool = False,
        sources: dict[str, str] | None = None,
        video_codec: str | None = None,
    ) -> dict[str, Any]:
        if self.publisher is None:
            self.publisher = RTCPeerConnection(RTCConfiguration(iceServers=[]))
            if data:
                self.publisher_channel = self.publisher.createDataChannel("data", ordered=True)
        for track in tracks:
            transceiver = self.publisher.addTransceiver(track, direction="sendonly")
            if video_codec is not None and track.kind == "video":
                codecs = RTCRtpSender.getCapabilities("video").codecs
                transceiver.setCodecPreferences([c for c in codecs if c.mimeType in (video_codec, "video/rtx")])
        return await self.republish(sources)

    async def republish(self, sources: dict[str, str] | None = None) -> dict[str, Any]:
        """Offer the publisher connection as it is now (after changing transceiver directions)."""
        assert self.publisher is not None
        await self.publisher.setLocalDescription(await self.publisher.createOffer())
        offer = _through(self.publisher_relay, "to_server")(self.publisher.localDescription.sdp)
        payload: dict[str, Any] = {"sdp": offer}
        if sources is not None:
            payload["sources"] = sources
        ack = await self.client.call("sfu.publish", payload, timeout=10)
        if ack.get("ok"):
            answer = _through(self.publisher_relay, "to_peer")(ack["sdp"])
            await self.publisher.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        return ack

    async def subscribe(self) -> dict[str, Any]:
        if self.subscriber is None:
            self.subscriber = RTCPeerConnection(RTCConfiguration(iceServers=[]))
            self.subscriber.on("track", self._on_track)
            self.subscriber.on("datachannel", self._on_datachannel)
        return await self.client.call("sfu.subscribe", {})

    async def _on_offer(self, payload: dict[str, Any]) -> Any:
        self.offers += 1
        self.track_maps.append(payload.get("tracks", []))
        self.offered.set()
        if not self._answer:
            await self._closing.wait()  # never answers (the SFU times out); ends at close()
            return None
        assert self.subscriber is not None
        offer = _through(self.subscriber_relay, "to_peer")(payload["sdp"])
        await self.subscriber.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
        await self.subscriber.setLocalDescription(await self.subscriber.createAnswer())
        # aiortc keeps receivers of m-lines that went inactive running until close(); a
        # long-lived client stops them itself
        live = {t["mid"] for t in self.track_maps[-1]}
        for transceiver in self.subscriber.getTransceivers():
            if transceiver.mid not in live and transceiver.receiver.track is not None:
                await transceiver.receiver.stop()
        return {"sdp": _through(self.subscriber_relay, "to_server")(self.subscriber.localDescription.sdp)}

    def _on_track(self, track: MediaStreamTrack) -> None:
        mid = next(t.mid for t in self.subscriber.getTransceivers() if t.receiver.track is track)
        received = self.received[mid] = ReceivedTrack(track)
        self._readers.append(asyncio.ensure_future(self._read(received)))

    async def _read(self, received: ReceivedTrack) -> None:
        loop = asyncio.get_running_loop()
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await received.track.recv()
                received.frames += 1
                if received.first_frame_at is None:
                    received.first_frame_at = loop.time()
                if received.track.kind == "video":
                    counter = read_frame_counter(frame)
                    if counter is not None:
                        received.counters.append(counter)
                        received.counted_at.append(loop.time())

    def _on_datachannel(self, channel: Any) -> None:
        @channel.on("message")
        def on_message(message: Any) -> None:
            self.data.append(json.loads(message))
            self.data_arrived.set()

    def video(self) -> ReceivedTrack | None:
        return next((r for r in self.received.values() if r.track.kind == "video" and r.frames), None)

    async def wait_video_frames(self, count: int, timeout: float = 10) -> ReceivedTrack:
        async with asyncio.timeout(timeout):
            while True:
                video = self.video()
                if video is not None and len(video.counters) >= count:
                    return video
                await asyncio.sleep(0.05)

    async def wait_data(self, count: int, timeout: float = 10) -> list[Any]:
        async with asyncio.timeout(timeout):
            while len(self.data) < count:
                self.data_arrived.clear()
                await self.data_arrived.wait()
        return self.data

    async def close(self) -> None:
        self._closing.set()
        await asyncio.sleep(0)
        for task in self._readers:
            task.cancel()
        await asyncio.gather(*self._readers, return_exceptions=True)
        for pc in (self.publisher, self.subscriber):
            if pc is not None:
                await pc.close()
        if self.client.sio.connected:
            await self.client.close()
