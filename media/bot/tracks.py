"""The tracks a bot hands to aiortc and the tracks it hands to its user.

aiortc stops a sender's track when the sender stops (a closed peer connection), which would
end a bot's source at the first signaling drop. A bot therefore never gives its user's track
to a sender: each peer connection gets a `SenderTrack` that reads from the source and whose
`stop()` leaves the source alone, so a reconnect can publish the same source again.

On the receiving side the SFU may reuse a transceiver (a mid) for another participant's track,
and aiortc keeps one receiver track per transceiver for the connection's lifetime. A
`RemoteTrack` is one subscription: it reads from the receiver's track until the SFU's track
map says the subscription is gone, then ends, however the transceiver is used afterwards.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from aiortc.mediastreams import MediaStreamError, MediaStreamTrack


class SenderTrack(MediaStreamTrack):
    """What one peer connection's sender reads: the source's frames or packets."""

    def __init__(self, source: MediaStreamTrack) -> None:
        super().__init__()
        self.kind = source.kind
        self.source = source

    async def recv(self) -> Any:
        if self.readyState != "live":
            raise MediaStreamError
        return await self.source.recv()


@dataclass(frozen=True)
class TrackInfo:
    """One entry of the SFU's track map (`sfu.offer {tracks: [...]}`)."""

    mid: str
    sid: str
    identity: str
    kind: str
    source: str

    @classmethod
    def parse(cls, entry: Any) -> TrackInfo | None:
        if not isinstance(entry, dict):
            return None
        fields = {name: entry.get(name) for name in ("mid", "sid", "identity", "kind", "source")}
        if not all(isinstance(value, str) for value in fields.values()):
            return None
        return cls(**fields)


class RemoteTrack(MediaStreamTrack):
    """A subscribed track of another participant: `identity`, `kind`, `source`, `sid`.

    `recv()` returns decoded frames (av.VideoFrame / av.AudioFrame) and raises
    MediaStreamError once the participant unpublished, left, or the bot lost its connection.
    It has one reader: every frame goes to one `recv()` call (share it with aiortc's MediaRelay).
    """

    def __init__(self, info: TrackInfo, receiver_track: MediaStreamTrack) -> None:
        super().__init__()
        self.kind = info.kind
        self.info = info
        self._inner = receiver_track
        self._ended = asyncio.get_running_loop().create_future()
        self.frames = 0  # delivered by recv(): what a FrameCounter reads without consuming

    @property
    def sid(self) -> str:
        return self.info.sid

    @property
    def identity(self) -> str:
        return self.info.identity

    @property
    def source(self) -> str:
        return self.info.source

    @property
    def ended(self) -> bool:
        return self._ended.done()

    async def recv(self) -> Any:
        if self._ended.done():
            raise MediaStreamError
        receiving = asyncio.ensure_future(self._inner.recv())
        try:
            await asyncio.wait((receiving, self._ended), return_when=asyncio.FIRST_COMPLETED)
        finally:  # ended, or our reader was cancelled: the inner read must not outlive this call
            if not receiving.done():
                receiving.cancel()
        if not receiving.done():  # cancelled just now: the subscription ended
            raise MediaStreamError
        try:
            frame = receiving.result()
        except MediaStreamError:  # the receiver ended (RTCP BYE, closed connection): so do we
            self.stop()
            raise
        self.frames += 1
        return frame

    def stop(self) -> None:
        if not self._ended.done():
            self._ended.set_result(None)
        super().stop()

    def __repr__(self) -> str:
        return f"<RemoteTrack {self.identity}/{self.kind} {self.source} sid={self.sid}>"
