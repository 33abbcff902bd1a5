"""The load side of bench/sfu.py: the pre-encoded stream, the subscribers that count or
probe it, and both servers as a client sees them (plus the MediaRelay server itself)."""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import time
from typing import Any

import aiohttp
import av
import socketio
from aiohttp import web
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.contrib.media import MediaRelay
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtp import RtpPacket
from roomwire.media import aiortc_internals
from roomwire.media.sources import PatternVideoTrack, read_frame_counter
from roomwire.signaling.tokens import TokenIssuer

FPS = 30
LOOP_FRAMES = 150  # 5 s of video, replayed; frame counters 0..149
BITRATE = 500_000
VIDEO_TIME_BASE = fractions.Fraction(1, 90000)


def config() -> RTCConfiguration:
    return RTCConfiguration(iceServers=[])


# -- the pre-encoded stream -----------------------------------------------------------------


def encode_stream() -> list[bytes]:
    """LOOP_FRAMES frames of the counter pattern as VP8, a keyframe every second."""
    source = PatternVideoTrack()
    codec = av.CodecContext.create("libvpx", "w")
    codec.width, codec.height = 640, 480
    codec.pix_fmt = "yuv420p"
    codec.bit_rate = BITRATE
    codec.framerate = fractions.Fraction(FPS, 1)
    codec.time_base = fractions.Fraction(1, FPS)
    codec.gop_size = FPS
    codec.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0", "error-resilient": "1"}
    frames: list[bytes] = []
    for n in range(LOOP_FRAMES):
        frame = source.make_frame(n)
        frame.pts = n
        frame.time_base = codec.time_base
        frames += [bytes(p) for p in codec.encode(frame)]
    frames += [bytes(p) for p in codec.encode(None)]
    assert len(frames) == LOOP_FRAMES, len(frames)
    return frames


class ReplayTrack(MediaStreamTrack):
    """Sends the pre-encoded frames at 30 fps as packets: the sender packs, never encodes."""

    kind = "video"

    def __init__(self, frames: list[bytes], sent_at: dict[int, float]) -> None:
        super().__init__()
        self._frames = frames
        self._sent_at = sent_at
        self._n = 0
        self._start: float | None = None

    async def recv(self) -> av.Packet:
        if self._start is None:
            self._start = time.monotonic()
        delay = self._start + self._n / FPS - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        index = self._n % len(self._frames)
        packet = av.Packet(self._frames[index])
        packet.pts = self._n * (90000 // FPS)
        packet.time_base = VIDEO_TIME_BASE
        self._sent_at[index] = time.monotonic()
        self._n += 1
        return packet


# -- subscribers ------------------------------------------------------------------------------


class Counter:
    """Counts the RTP packets a subscriber receives (and the video frames: marker bits), as
    aiortc parsed them, without jitter buffer or decoder."""

    def __init__(self) -> None:
        self.packets = 0
        self.frames = 0

    def attach(self, pc: RTCPeerConnection) -> None:
        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            for transceiver in pc.getTransceivers():
                if transceiver.receiver.track is track:
                    on_packet = self._on_video if track.kind == "video" else self._on_audio
                    aiortc_internals.tap_receiver(transceiver.receiver, on_packet, lambda rtcp: None, lambda: None)

    def _on_video(self, packet: RtpPacket) -> None:
        self.packets += 1
        self.frames += packet.marker

    def _on_audio(self, packet: RtpPacket) -> None:
        self.packets += 1


class Probe:
    """Decodes and reads frame counters: latency from the publisher's send time."""

    def __init__(self, sent_at: dict[int, float]) -> None:
        self.sent_at = sent_at
        self.latencies: list[float] = []
        self.frames = 0  # decoded while recording
        self.recording = False
        self._tasks: list[asyncio.Task[None]] = []
        self._pc: RTCPeerConnection | None = None

    async def packets(self) -> int:
        """RTP packets received so far (aiortc's inbound-rtp statistics)."""
        if self._pc is None:
            return 0
        report = await self._pc.getStats()
        return sum(s.packetsReceived for s in report.values() if s.type == "inbound-rtp")

    def attach(self, pc: RTCPeerConnection) -> None:
        self._pc = pc

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            if track.kind == "video":
                self._tasks.append(asyncio.ensure_future(self._read(track)))

    async def _read(self, track: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()
                now = time.monotonic()
                counter = read_frame_counter(frame)
                if self.recording:
                    self.frames += 1
                    if counter is not None and counter in self.sent_at:
                        self.latencies.append(now - self.sent_at[counter])

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


# -- the two servers, as seen by the driver ---------------------------------------------------


class RoomwireSession:
    """Participants of a `roomwire serve --media sfu` server, over Socket.IO."""

    def __init__(self, url: str, secret: str) -> None:
        self.url = url
        self.issuer = TokenIssuer(secret)
        self.clients: list[socketio.AsyncClient] = []
        self.pcs: list[RTCPeerConnection] = []

    async def _client(self, identity: str) -> socketio.AsyncClient:
        client = socketio.AsyncClient(reconnection=False)
        token = self.issuer.mint(identity=identity, room="bench")
        await client.connect(self.url, auth={"token": token}, transports=["websocket"], wait_timeout=10)
        ack = await client.call("join", {}, timeout=10)
        assert ack["ok"], ack
        self.clients.append(client)
        return client

    async def publish(self, tracks: list[MediaStreamTrack]) -> None:
        client = await self._client("publisher")
        pc = RTCPeerConnection(config())
        self.pcs.append(pc)
        for track in tracks:
            pc.addTransceiver(track, direction="sendonly")
        await pc.setLocalDescription(await pc.createOffer())
        ack = await client.call("sfu.publish", {"sdp": pc.localDescription.sdp}, timeout=15)
        assert ack["ok"], ack
        await pc.setRemoteDescription(RTCSessionDescription(ack["sdp"], "answer"))

    async def subscribe(self, identity: str, watcher: Counter | Probe) -> None:
        client = await self._client(identity)
        pc = RTCPeerConnection(config())
        self.pcs.append(pc)
        watcher.attach(pc)

        async def on_offer(payload: dict[str, Any]) -> dict[str, str]:
            await pc.setRemoteDescription(RTCSessionDescription(payload["sdp"], "offer"))
            await pc.setLocalDescription(await pc.createAnswer())
            return {"sdp": pc.localDescription.sdp}

        client.on("sfu.offer", on_offer)
        ack = await client.call("sfu.subscribe", {}, timeout=10)
        assert ack["ok"], ack

    async def close(self) -> None:
        for client in self.clients:  # first, so no renegotiation reaches a closed connection
            with contextlib.suppress(Exception):
                await client.disconnect()
        for pc in self.pcs:
            await pc.close()


class RelaySession:
    """Participants of the MediaRelay server (this file, `--relay-server`), over plain HTTP."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.http = aiohttp.ClientSession()
        self.pcs: list[RTCPeerConnection] = []

    async def _exchange(self, path: str, pc: RTCPeerConnection) -> None:
        await pc.setLocalDescription(await pc.createOffer())
        async with self.http.post(self.url + path, json={"sdp": pc.localDescription.sdp}) as response:
            response.raise_for_status()
            answer = await response.json()
        await pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))

    async def publish(self, tracks: list[MediaStreamTrack]) -> None:
        pc = RTCPeerConnection(config())
        self.pcs.append(pc)
        for track in tracks:
            pc.addTransceiver(track, direction="sendonly")
        await self._exchange("/publish", pc)

    async def subscribe(self, identity: str, watcher: Counter | Probe) -> None:
        pc = RTCPeerConnection(config())
        self.pcs.append(pc)
        watcher.attach(pc)
        pc.addTransceiver("video", direction="recvonly")
        pc.addTransceiver("audio", direction="recvonly")
        await self._exchange("/subscribe", pc)

    async def close(self) -> None:
        for pc in self.pcs:
            await pc.close()
        await self.http.close()


def relay_server(port: int) -> None:
    """aiortc's MediaRelay: the publisher's tracks are decoded once, encoded once per subscriber."""
    relay = MediaRelay()
    sources: dict[str, asyncio.Future[MediaStreamTrack]] = {}
    pcs: set[RTCPeerConnection] = set()

    async def answer(request: web.Request, pc: RTCPeerConnection) -> web.Response:
        body = await request.json()
        await pc.setRemoteDescription(RTCSessionDescription(body["sdp"], "offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        return web.json_response({"sdp": pc.localDescription.sdp})

    async def publish(request: web.Request) -> web.Response:
        loop = asyncio.get_running_loop()
        sources.update(video=loop.create_future(), audio=loop.create_future())
        pc = RTCPeerConnection(config())
        pcs.add(pc)
        pc.on("track", lambda track: sources[track.kind].set_result(track))
        return await answer(request, pc)

    async def subscribe(request: web.Request) -> web.Response:
        pc = RTCPeerConnection(config())
        pcs.add(pc)
        body = await request.json()
        await pc.setRemoteDescription(RTCSessionDescription(body["sdp"], "offer"))
        for source in sources.values():
            pc.addTrack(relay.subscribe(await source))
        await pc.setLocalDescription(await pc.createAnswer())
        return web.json_response({"sdp": pc.localDescription.sdp})

    app = web.Application()
    app.router.add_post("/publish", publish)
    app.router.add_post("/subscribe", subscribe)
    web.run_app(app, host="127.0.0.1", port=port, print=None, handler_cancellation=True)
